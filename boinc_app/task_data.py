"""Training and validation data of a workunit's task, as tensors, and how networks are scored.

A *task* is what a network learns: a DS1/DS2 machine (bits on READ steps, binary cross-entropy on
the READ steps' mask bits) or a DS3 automaton (one output symbol per step, cross-entropy). Several
tasks of one kind can be stacked (``stack_tasks``) so one ensemble trains networks of different
machines at once (the convergence benchmark does); a workunit has one task.

Scoring (spec §4a): *bitwise accuracy* is the share of READ-step mask bits where ``logit > 0``
equals the target; *post-trigger accuracy* the same over the READs a trigger inverts. For
automata, accuracy is the share of steps whose arg-max symbol is right.
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

import machines
from machines.sequences import generate as generate_sequences


@dataclass(frozen=True)
class SetTensors:
    """One data set: inputs ``[N, L, in]``; the rest depends on the kind (see ``TaskData``)."""

    inputs: torch.Tensor
    targets: torch.Tensor  # device: float [N, L, 8]; automaton: int64 [N, L]
    scored: torch.Tensor  # device: bool [N, L, 8] READ & mask; automaton: bool [N, L]
    post_trigger: torch.Tensor  # device: bool [N, L, 8]; automaton: all False


@dataclass(frozen=True)
class TaskData:
    kind: str  # "device" or "automaton"
    names: tuple  # one per stacked task
    train: SetTensors  # tensors have a leading task dimension [T, N, ...]
    validation: SetTensors
    loss_weights: torch.Tensor  # [T, N, L, 8] (device) or [T, N, L] (automaton)


def _device_set(machine, size, length, seed, near_miss_probability):
    sequences = generate_sequences(machine, size, length, seed, near_miss_probability)
    bits = torch.tensor([(machine.mask >> b) & 1 for b in range(8)], dtype=torch.bool)
    reads = torch.from_numpy(sequences.reads)[..., None] & bits
    post = torch.from_numpy(sequences.post_trigger)[..., None] & bits
    return SetTensors(
        inputs=torch.from_numpy(sequences.inputs),
        targets=torch.from_numpy(sequences.targets),
        scored=reads,
        post_trigger=post,
    )


def _automaton_set(automaton, size, length, seed):
    symbols, outputs = automaton.generate(size, length, seed)
    symbols = torch.from_numpy(np.asarray(symbols, dtype=np.int64))
    inputs = F.one_hot(symbols, automaton.transitions.shape[1]).to(torch.float32)
    targets = torch.from_numpy(np.asarray(outputs, dtype=np.int64))
    scored = torch.ones_like(targets, dtype=torch.bool)
    return SetTensors(inputs=inputs, targets=targets, scored=scored, post_trigger=torch.zeros_like(scored))


def task_data(spec):
    """The tensors of the task a workunit spec names."""
    data = spec.data
    if spec.task["kind"] == "device":
        machine = machines.get_machine(spec.task["machine"])
        near = data.near_miss_probability
        train = _device_set(machine, data.train_size, data.length, data.train_seed, near)
        validation = _device_set(machine, data.validation_size, data.length, data.validation_seed, near)
    else:
        task = spec.task
        automaton = machines.automaton(int(task["index"]), task["states"], task["inputs"], task["outputs"])
        train = _automaton_set(automaton, data.train_size, data.length, data.train_seed)
        validation = _automaton_set(automaton, data.validation_size, data.length, data.validation_seed)
    return _stack(spec.task["kind"], [spec.task_name], [train], [validation], spec.recipe)


def stack_tasks(specs):
    """One ``TaskData`` for several specs of one kind with equal set shapes (benchmarks)."""
    parts = [task_data(spec) for spec in specs]
    kinds = {p.kind for p in parts}
    if len(kinds) != 1:
        raise ValueError("cannot stack device and automaton tasks")
    return TaskData(
        kind=parts[0].kind,
        names=tuple(name for p in parts for name in p.names),
        train=_cat([p.train for p in parts]),
        validation=_cat([p.validation for p in parts]),
        loss_weights=torch.cat([p.loss_weights for p in parts]),
    )


def _cat(sets):
    return SetTensors(*(torch.cat(tensors) for tensors in zip(*(s.__dict__.values() for s in sets))))


def _stack(kind, names, trains, validations, recipe):
    train = SetTensors(*(torch.stack(t) for t in zip(*(s.__dict__.values() for s in trains))))
    validation = SetTensors(*(torch.stack(t) for t in zip(*(s.__dict__.values() for s in validations))))
    weights = train.scored.to(torch.float32)
    if kind == "device" and recipe.post_trigger_weight != 1.0:
        weights = torch.where(train.post_trigger, weights * recipe.post_trigger_weight, weights)
    return TaskData(kind=kind, names=tuple(names), train=train, validation=validation, loss_weights=weights)


def per_network_loss(kind, logits, targets, weights):
    """Weighted mean loss of each network: ``[K]`` from logits ``[K, B, L, out]``."""
    if kind == "device":
        elementwise = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    else:
        elementwise = F.cross_entropy(logits.permute(0, 3, 1, 2), targets, reduction="none")
    total = (elementwise * weights).flatten(1).sum(1)
    return total / weights.flatten(1).sum(1).clamp(min=1e-12)


@dataclass
class Scores:
    """Validation scores, one value per network."""

    loss: np.ndarray
    accuracy: np.ndarray
    post_trigger_accuracy: np.ndarray  # NaN where a task has no post-trigger READs


def score_counts(kind, logits, targets, scored, post_trigger):
    """Summable counts for ``Scores``: loss sum, scored count, correct, post count, post correct."""
    if kind == "device":
        loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        correct = (logits > 0) == (targets > 0.5)
    else:
        loss = F.cross_entropy(logits.permute(0, 3, 1, 2), targets, reduction="none")
        correct = logits.argmax(-1) == targets

    def total(values, where):
        # summed in float64: a float32 sum's rounding depends on the thread count (SPEC_VERSION 7)
        return (values * where).flatten(1).to(torch.float64).sum(1)

    return torch.stack(
        [
            total(loss, scored),
            total(torch.ones_like(loss), scored),
            total(correct, scored),
            total(torch.ones_like(loss), post_trigger),
            total(correct, post_trigger),
        ]
    )


def scores_from_counts(counts):
    counts = counts.numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        post = np.where(counts[3] > 0, counts[4] / counts[3], np.nan)
    return Scores(loss=counts[0] / counts[1], accuracy=counts[2] / counts[1], post_trigger_accuracy=post)
