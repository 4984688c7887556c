"""The training loop: all networks of a workunit, one epoch at a time, resumable at every epoch.

State lives in plain data (``RunState``: per network its weights, Adam moments, step count, epoch
count, history and status). Each epoch stacks the still-training networks into one ensemble
(``boinc_app.ensemble``), trains them one pass over the shared training set, scores them on the
validation set, and writes their state back. Because the epoch is the unit of work and a network's
batch order at epoch ``e`` is a pure function of ``(order_seed, e)``, a run restarted from a
checkpoint taken after any epoch computes exactly what the uninterrupted run computes: resume is
exact by construction, not by saving random-generator states.

A network stops when it meets the convergence rule (``converged``), when it reaches the spec's
``max_epochs`` (``capped``: a result, never counted as learned), or, for this workunit only, when
it has trained ``epoch_budget`` epochs (still ``training``: a follow-up workunit continues it).
A network still training that has stalled (the recipe's restart rule, spec §4a step 5) is
re-initialised, wholly or only its linear head (``restart_kinds``), from a seed derived from its
init seed and trains on; ``restart_epochs`` records when, and the rule is a pure function of the
accuracy history (the kind, of the restart's number), so resume stays exact and the validator can
replay it (``replay_restarts``).
"""

import itertools
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from boinc_app import ensemble
from boinc_app.ensemble_size import ensemble_size
from boinc_app.networks import build_network, flatten_tensors, is_head_parameter, parameter_layout
from boinc_app.task_data import per_network_loss, score_counts, scores_from_counts
from machines.random_stream import RawStream, derive_seed

CLIP_SUM_DTYPES = {"float32": torch.float32, "float64": torch.float64}  # recipe.clip_norm_sum
HISTORY_FIELDS = ("train_loss", "validation_loss", "validation_accuracy", "post_trigger_accuracy", "learning_rate")
TRAINING, CONVERGED, CAPPED = "training", "converged", "capped"
EVALUATION_ROWS = 400_000  # networks x sequences x steps per validation chunk


class QuitRequested(Exception):
    """Training stopped on request after writing a checkpoint (BOINC ``<quit/>``, SIGTERM)."""


@dataclass
class NetworkState:
    key: str
    init_seed: int
    order_seed: int
    weights: dict
    exp_avg: dict
    exp_avg_sq: dict
    adam_step: int = 0
    epochs: int = 0
    start_epoch: int = 0
    status: str = TRAINING
    cpu_seconds: float = 0.0
    history: dict = field(default_factory=lambda: {name: [] for name in HISTORY_FIELDS})
    restart_epochs: list = field(default_factory=list)  # epochs after which it was re-initialised
    # epoch -> float32 [P]: the weights scored in that epoch (before a restart after it), for the
    # spec's snapshot_epochs, in parameter_layout order
    snapshots: dict = field(default_factory=dict)


@dataclass
class RunState:
    spec_fingerprint: str
    networks: list
    wall_seconds: float = 0.0

    def fraction_done(self, epoch_budget):
        """Share of this workunit's work done, counting stopped networks as finished."""
        done = [
            1.0 if n.status != TRAINING else min(1.0, (n.epochs - n.start_epoch) / epoch_budget) for n in self.networks
        ]
        return float(np.mean(done))

    def finished(self, epoch_budget):
        return all(n.status != TRAINING or n.epochs - n.start_epoch >= epoch_budget for n in self.networks)


def initial_state(spec):
    """Fresh networks, initialised from each network's ``init_seed`` (``initial_weights``)."""
    networks = []
    for seeds in spec.networks:
        weights = initial_weights(spec.architecture, spec.recipe, seeds.init_seed)
        zeros = {k: np.zeros_like(v) for k, v in weights.items()}
        networks.append(
            NetworkState(seeds.key, seeds.init_seed, seeds.order_seed, weights, zeros, {k: v.copy() for k, v in zeros.items()})
        )
    return RunState(spec_fingerprint=spec.fingerprint(), networks=networks)


def initial_weights(arch, recipe, init_seed):
    """PyTorch's default initialisation drawn from ``init_seed``, then the recipe's changes."""
    module = build_network(arch, init_seed)
    weights = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
    _add_gate_bias(arch, weights, recipe.gate_bias)
    _orthogonal_recurrent(arch, weights, recipe.recurrent_orthogonal_gain, init_seed)
    return weights


def restart_seed(init_seed, restart):
    """The initialisation seed of a network's ``restart``-th re-initialisation (1, 2, ...)."""
    return derive_seed("mlds", "restart", init_seed, restart) >> 2  # room for the orthogonal offset


def restart_due(recipe, network):
    """The restart rule (spec §4a step 5), asked after an epoch that neither converged nor capped
    the network: since its last (re)initialisation, either its best validation accuracy rose by
    less than ``required_gain`` over the last ``restart_patience`` epochs (stalled), or it has
    trained ``restart_after`` epochs (its attempt ran out)."""
    since = network.restart_epochs[-1] if network.restart_epochs else 0
    accuracy = network.history["validation_accuracy"][since:]
    return _restart_due_given_best(recipe, list(itertools.accumulate(accuracy, max)))


def _restart_due_given_best(recipe, best):
    """The rule on ``best``, the running maximum of the accuracy since the last (re)initialisation
    (one entry per epoch); shared by the live rule and the validator's replay."""
    if recipe.restart_after and len(best) >= recipe.restart_after:
        return True
    patience = recipe.restart_patience
    if not patience or len(best) <= patience:
        return False
    return best[-1] - best[-1 - patience] < required_gain(recipe, best[-1 - patience])


def required_gain(recipe, best_before):
    """The rise of the best accuracy over ``restart_patience`` epochs that counts as progress."""
    return max(recipe.restart_min_gain, recipe.restart_min_share * (1 - best_before))


def replay_restarts(recipe, accuracy, asked_after_last):
    """The restart epochs the rule gives a network with this validation ``accuracy`` history (the
    validator's check of a claim). The rule is asked after every epoch but the last of a network
    that stopped there (converged or capped): ``asked_after_last`` is false for those."""
    restarts, best = [], []  # best: running max since the last (re)initialisation
    for epoch in range(1, len(accuracy) + (1 if asked_after_last else 0)):
        best.append(max(best[-1], accuracy[epoch - 1]) if best else accuracy[epoch - 1])
        if _restart_due_given_best(recipe, best):
            restarts.append(epoch)
            best = []
    return restarts


def restart_kind(recipe, restart):
    """What the ``restart``-th re-initialisation (1, 2, ...) renews: "full" or "head"."""
    kinds = recipe.restart_kinds.split(",")
    return kinds[(restart - 1) % len(kinds)]


def restart(arch, recipe, network):
    """Re-initialise a network (all of it, or its head: ``restart_kind``) from its next restart
    seed; epochs and history go on."""
    network.restart_epochs.append(network.epochs)
    count = len(network.restart_epochs)
    fresh = initial_weights(arch, recipe, restart_seed(network.init_seed, count))
    full = restart_kind(recipe, count) == "full"
    renewed = [key for key in fresh if full or is_head_parameter(key)]
    network.weights = {**network.weights, **{key: fresh[key] for key in renewed}}
    zeros = {key: np.zeros_like(fresh[key]) for key in renewed}
    network.exp_avg = {**network.exp_avg, **zeros}
    network.exp_avg_sq = {**network.exp_avg_sq, **{key: value.copy() for key, value in zeros.items()}}
    if full:
        network.adam_step = 0


def _add_gate_bias(arch, weights, amount):
    """Shift the update gate (GRU ``z``) or forget gate (LSTM ``f``) biases: rows ``H..2H``."""
    if amount:
        H = arch.hidden_size
        for layer in range(arch.num_layers):
            weights[f"rnn.bias_hh_l{layer}"][H : 2 * H] += amount


def _orthogonal_recurrent(arch, weights, gain, init_seed):
    """Replace each ``[H, H]`` gate block of ``weight_hh`` by ``gain`` x a random orthogonal matrix."""
    if not gain:
        return
    generator = torch.Generator().manual_seed(int(init_seed) + 0x5EED)
    H = arch.hidden_size
    for layer in range(arch.num_layers):
        block_rows = weights[f"rnn.weight_hh_l{layer}"]
        for start in range(0, block_rows.shape[0], H):
            block = torch.empty(H, H)
            torch.nn.init.orthogonal_(block, gain=gain, generator=generator)
            block_rows[start : start + H] = block.numpy()


def continue_state(spec, previous):
    """A previous workunit's state, continued by this spec: budgets restart at current epochs."""
    for network in previous.networks:
        network.start_epoch = network.epochs
        if network.status == TRAINING and network.epochs >= spec.max_epochs:
            network.status = CAPPED
    previous.spec_fingerprint = spec.fingerprint()
    return previous


def batch_order(order_seed, epoch, size):
    """The permutation of the training set network ``order_seed`` uses in ``epoch``."""
    return RawStream(derive_seed("mlds", "batch-order", order_seed, epoch)).permutation(size)


def curriculum_length(recipe, epoch, length):
    """Training sequence length at ``epoch``: prefixes growing linearly from
    ``curriculum_start_length`` to the full length over ``curriculum_epochs`` epochs (0: off)."""
    if epoch >= recipe.curriculum_epochs:
        return length
    start = min(recipe.curriculum_start_length, length)
    return start + (length - start) * epoch // recipe.curriculum_epochs


def learning_rate(recipe, network):
    best = max(network.history["validation_accuracy"], default=0.0)
    factor = recipe.anneal_factor if best >= recipe.anneal_accuracy else 1.0
    return recipe.learning_rate * factor


def train(spec, data, state, control, device="cpu", group_size=None):
    """Train until every network stops or this workunit's budget is spent; returns ``state``.

    ``control`` decides about checkpoints, quitting and suspension (standalone or BOINC).
    Raises ``QuitRequested`` after checkpointing when asked to quit.

    ``control.wait_while_suspended`` also runs between optimizer steps, so a suspended run stops
    within one batch. It may raise ``QuitRequested`` there to abandon the epoch in progress: the
    networks' states are written back only when an epoch completes, so ``state`` still holds the
    last completed epoch, which is what gets checkpointed (resume stays exact).

    Networks are trained in fixed groups of ``group_size`` (default: ``ensemble_size`` for the
    device), one ensemble per group and epoch.
    """
    started = time.monotonic()
    size = group_size or ensemble_size(device, spec.architecture, spec.data.length)
    # fixed groups, so a network's ensemble companions never depend on when a run was resumed
    groups = [state.networks[i : i + size] for i in range(0, len(state.networks), size)]
    while True:
        chunks = [[n for n in group if n.status == TRAINING and n.epochs - n.start_epoch < spec.epoch_budget] for group in groups]
        if not any(chunks):
            break
        try:
            control.wait_while_suspended()
            for chunk in filter(None, chunks):
                index = np.zeros(len(chunk), dtype=np.int64)
                run_epoch(spec, data, chunk, index, device, between_steps=control.wait_while_suspended)
        except QuitRequested:
            control.checkpoint(state)
            raise
        state.wall_seconds += time.monotonic() - started
        started = time.monotonic()
        control.report_progress(state, state.fraction_done(spec.epoch_budget))
        if control.quit_requested():
            control.checkpoint(state)
            raise QuitRequested()
        if control.checkpoint_due():
            control.checkpoint(state)
    return state


def run_epoch(spec, data, networks, data_index, device="cpu", rules=None, between_steps=None):
    """One epoch for ``networks`` (training then scoring); updates their states in place.

    ``data_index[k]`` is the stacked task network k learns; ``rules[k]`` its convergence rule
    (default: the spec's rule for all). ``between_steps()``, if given, runs before each batch
    (it may block, or raise to abandon the epoch: the states are then left as they were).
    """
    rules = rules or [spec.convergence] * len(networks)
    cpu_started = time.process_time()
    params = ensemble.stack_state_dicts([n.weights for n in networks], device)
    optimizer = ensemble.StackedAdam(
        params,
        lr=[learning_rate(spec.recipe, n) for n in networks],
        betas=spec.recipe.betas,
        eps=spec.recipe.eps,
        exp_avg=_stack_plain([n.exp_avg for n in networks], device),
        exp_avg_sq=_stack_plain([n.exp_avg_sq for n in networks], device),
        step=torch.tensor([n.adam_step for n in networks]),
    )
    index = torch.as_tensor(data_index, device=device)
    train_loss = _train_one_epoch(spec, data, networks, params, optimizer, index, device, between_steps)
    scores = evaluate(spec.architecture, data, params, index, device)
    cpu_each = (time.process_time() - cpu_started) / len(networks)
    stored = _on_cpu(params, optimizer)  # one transfer per tensor, not per network
    for k, network in enumerate(networks):
        _store(network, stored, k)
        network.epochs += 1
        if network.epochs in spec.snapshot_epochs:
            network.snapshots[network.epochs] = flatten_tensors(network.weights, parameter_layout(spec.architecture))
        network.cpu_seconds += cpu_each
        values = (train_loss[k], scores.loss[k], scores.accuracy[k], scores.post_trigger_accuracy[k], float(optimizer.lr[k]))
        for name, value in zip(HISTORY_FIELDS, values):
            network.history[name].append(float(value))
        if rules[k].met(scores.accuracy[k], scores.post_trigger_accuracy[k]):
            network.status = CONVERGED
        elif network.epochs >= spec.max_epochs:
            network.status = CAPPED
        elif restart_due(spec.recipe, network):
            restart(spec.architecture, spec.recipe, network)


def _stack_plain(dicts, device):
    return {key: torch.stack([torch.from_numpy(d[key]) for d in dicts]).to(device) for key in dicts[0]}


def _on_cpu(params, optimizer):
    """Weights, Adam moments and steps of all networks as CPU tensors."""
    on_cpu = lambda tensors: {key: v.detach().cpu() for key, v in tensors.items()}  # noqa: E731
    return on_cpu(params), on_cpu(optimizer.exp_avg), on_cpu(optimizer.exp_avg_sq), optimizer.step_count.cpu()


def _store(network, stored, k):
    weights, exp_avg, exp_avg_sq, steps = stored
    copy = lambda tensors: {key: v[k].numpy().copy() for key, v in tensors.items()}  # noqa: E731
    network.weights, network.exp_avg, network.exp_avg_sq = copy(weights), copy(exp_avg), copy(exp_avg_sq)
    network.adam_step = int(steps[k])


def _train_one_epoch(spec, data, networks, params, optimizer, index, device, between_steps=None):
    size = data.train.inputs.shape[1]
    batch = spec.recipe.batch_size
    orders = torch.from_numpy(np.stack([batch_order(n.order_seed, n.epochs, size) for n in networks])).to(device)
    train = data.train
    lengths = [curriculum_length(spec.recipe, n.epochs, train.inputs.shape[2]) for n in networks]
    steps = slice(0, max(lengths))
    inputs, targets, weights = (t[:, :, steps].to(device) for t in (train.inputs, train.targets, data.loss_weights))
    losses = torch.zeros(len(networks), dtype=torch.float64, device=device)
    # no loss beyond a network's own curriculum length (a [K, 1, L, 1...] mask, None if all full)
    within = None
    if min(lengths) < steps.stop:
        within = torch.arange(steps.stop) < torch.tensor(lengths)[:, None]
        within = within.view(len(lengths), 1, steps.stop, *([1] * (weights.dim() - 3))).to(device, weights.dtype)
    batches = 0
    for start in range(0, size, batch):
        if between_steps is not None:
            between_steps()
        rows = orders[:, start : start + batch]
        which = (index[:, None], rows)
        logits = ensemble.forward(spec.architecture, params, inputs[which])
        batch_weights = weights[which] if within is None else weights[which] * within
        loss = per_network_loss(data.kind, logits, targets[which], batch_weights)
        for p in params.values():
            p.grad = None
        loss.sum().backward()
        ensemble.clip_grad_norms(params, spec.recipe.clip_norm, CLIP_SUM_DTYPES[spec.recipe.clip_norm_sum])
        optimizer.step()
        losses += loss.detach().to(torch.float64)
        batches += 1
    return (losses / batches).cpu().numpy()


@torch.no_grad()
def evaluate(arch, data, params, index, device="cpu"):
    """Validation ``Scores`` of stacked networks; network k is scored on task ``index[k]``."""
    validation = data.validation
    K = index.shape[0]
    size, length = validation.inputs.shape[1:3]
    chunk = max(1, EVALUATION_ROWS // (K * length))
    counts = 0
    for start in range(0, size, chunk):
        part = slice(start, start + chunk)
        pick = lambda tensor: tensor[:, part].to(device)[index]  # noqa: E731
        logits = ensemble.forward(arch, params, pick(validation.inputs))
        counts = counts + score_counts(
            data.kind, logits, pick(validation.targets), pick(validation.scored), pick(validation.post_trigger)
        )
    return scores_from_counts(counts.cpu())
