"""Spot check: redo part of a result's training on the server and compare (docs/spot-check.md).

Why: ``validator.checks`` proves that a result is well formed and that its final weights score
what it claims. It does not prove the work was done: a network copied into another with its seeds
restored, a network trained from other seeds, an invented history or tampered Adam moments all
pass. BOINC's usual answer, replicating every workunit, doubles the cost. Our training is
deterministic, and ``bench/spot_check.py`` measured how far: one epoch after a known state, honest
re-executions (alone or in any ensemble, any thread count, other CPU kernels) agree to ~1e-7 in
their losses and ~1e-6 in their weights, while networks of other seeds are >= 1.25 apart. Training
is chaotic, though: after 10 epochs honest re-executions are up to 0.08 apart, after 50 up to 0.48,
after 150 as far as another seed. So the server redoes a little of the work from inputs it already
holds (the spec; for a follow-up, the previous, validated result), within 5 epochs of them.

Checks, cheapest first (``spot_check`` runs them all):

1. follow-up: the result continues the previous result exactly (history and restarts);
2. distinct: no network is a (near) copy of another of the result or of a known stored one;
3. lineage: each network's recurrent weights still point at its own start (its seed's initial
   weights, or its previous state), which independent networks do not (cosine test);
4. Adam: step counts and the invariants Adam's moments obey with clipped gradients;
5. re-execution: networks drawn by the server's ``rng`` (after upload, so unpredictable) are
   re-trained alone from their start through ``training.run_epoch``, the volunteer's code path:
   their first epoch, or all of it for networks of at most ``FULL_EPOCHS``, as many as 2 % of the
   workunit's training affords (at least one); the claimed history must match, and for networks
   re-trained to their end, the final weights and moments (as far as ``TOLERANCES`` separates).

Not caught without a format change (docs/spot-check.md proposes snapshots every 5 epochs): the
later epochs of long networks, and moments tampered within Adam's invariants in a network that
was not re-trained to its end.
"""

import copy
import dataclasses
import math

import numpy as np
import torch

from boinc_app import training
from boinc_app.task_data import task_data
from validator.checks import InvalidResult

BUDGET_SHARE = 0.02
# a network-epoch trained alone on the server costs this many network-epochs of the volunteer's
# ensemble (bench/spot_check.py --timing: DS1 alone vs K = 32, DS3 alone vs K = 8)
ALONE_COST = {"gru": 5.0, "lstm": 1.1}
FULL_EPOCHS = 10  # networks that trained at most this many epochs are re-trained to their end
DUPLICATE_DISTANCE = 0.25  # relative L2 between two networks below which one is a copy
LINEAGE_SIGMAS = 6.0  # cosine with an independent start: N(0, 1/n); ask 6 standard deviations
FOLLOW_UP_LINEAGE_COSINE = 0.5  # cosine with a trained previous state (measured: bench)
MOVED_DISTANCE = 1e-4  # relative L2 a network that trained an epoch has moved at least (honest: 0.27 over epoch 2)
ADAM_SLACK = 1e-3  # float32 rounding of the moment updates
# (up to this many epochs since a known state: losses' relative difference, final weights' and
# final Adam moments' relative L2); None: not compared. Measured (docs/spot-check.md, worst
# network, other CPU kernels or ensemble groupings): after 2 epochs losses 3.7e-7, weights 2.1e-6,
# moments 2.7e-5; after 5: 3.2e-6, 4.1e-4, 0.024; after 10: weights 0.084 (DS1: 0.052 after 20,
# 0.48 after 50). Networks of other seeds: weights >= 1.25 apart, losses >= 6e-5 (closest pair).
TOLERANCES = (
    (2, 3e-6, 1e-4, 1e-3),
    (5, 3e-5, 1e-2, 0.1),
    (10, None, 0.3, None),
)
SHARP_EPOCHS = max(upto for upto, losses, _, _ in TOLERANCES if losses is not None)  # history compared
ACCURACY_TOLERANCE = 2e-4  # as validator.checks: a few scored bits may flip (post-trigger: 10x)


class SpotCheckFailed(InvalidResult):
    """Re-executed or cross-checked training disagrees with the result."""


def spot_check(spec, state, rng, resume_state=None, data=None, budget_share=BUDGET_SHARE, known=(), retrain=True):
    """Raise ``SpotCheckFailed`` (an ``InvalidResult``) unless ``state`` passes every check;
    ``retrain`` False: only the checks that re-train nothing (follow-up, copies, lineage, Adam).

    ``rng``: a ``numpy.random.Generator`` the server seeds from its own secret randomness after
    the upload. ``resume_state``: the previous validated ``RunState`` of a follow-up workunit.
    ``data``: the spec's ``task_data`` if the caller already has it. ``known``: ``(name,
    weights)`` of stored networks with the same seeds (other tasks share seeds: seed = base + index).
    """
    starts = start_states(spec, resume_state)
    if resume_state is not None:
        check_follow_up(state, starts)
    check_distinct(state, known)
    check_lineage(spec, state, starts)
    for network in state.networks:
        check_adam(spec, network)
    if not retrain:
        return
    plan = plan_reexecution(state, rng, budget_share, ALONE_COST[spec.architecture.cell])
    data = data if data is not None else task_data(spec)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one network's tiny kernels: more threads only add overhead (bench)
    try:
        for index, epochs in plan:
            reexecute(spec, data, state.networks[index], starts[index], epochs)
    finally:
        torch.set_num_threads(threads)


def start_states(spec, resume_state):
    """Each network as it stood before this workunit: fresh from its seeds, or its previous state."""
    if resume_state is None:
        return training.initial_state(spec).networks
    starts = copy.deepcopy(resume_state.networks)
    for network in starts:
        network.start_epoch = network.epochs
    return starts


def check_follow_up(state, starts):
    """A follow-up carries its previous result's history and restarts unchanged."""
    for network, start in zip(state.networks, starts):
        key, before = network.key, start.epochs
        if network.start_epoch != before or network.epochs < before:
            raise SpotCheckFailed(f"network {key}: starts at epoch {network.start_epoch}, the previous result ended at {before}")
        for name, values in start.history.items():
            if not np.array_equal(np.asarray(network.history[name][:before]), np.asarray(values), equal_nan=True):
                raise SpotCheckFailed(f"network {key}: history {name} before epoch {before} differs from the previous result")
        if network.restart_epochs[: len(start.restart_epochs)] != list(start.restart_epochs):
            raise SpotCheckFailed(f"network {key}: restarts before epoch {before} differ from the previous result")
        if any(not np.array_equal(network.snapshots.get(e), values) for e, values in start.snapshots.items()):
            raise SpotCheckFailed(f"network {key}: snapshots before epoch {before} differ from the previous result")
        if network.epochs == before and any(not np.array_equal(network.weights[k], start.weights[k]) for k in start.weights):
            raise SpotCheckFailed(f"network {key}: trained no epoch here, but its weights changed")


def flat(tensors, keys=None):
    return np.concatenate([np.asarray(tensors[k], dtype=np.float64).ravel() for k in (keys or tensors)])


def check_distinct(state, known=()):
    """No network is within ``DUPLICATE_DISTANCE`` of another of the result, or of a ``known``
    network (``(name, weights)``, e.g. the store's networks with the same seeds); networks of
    different seeds are >= 1.25 apart."""
    names = [n.key for n in state.networks] + [name for name, _ in known]
    weights = np.stack([flat(n.weights) for n in state.networks] + [flat(w) for _, w in known])
    squares = (weights**2).sum(1)
    distances = np.sqrt(np.maximum(squares[:, None] + squares[None, :] - 2 * weights @ weights.T, 0))
    relative = distances / np.maximum(np.sqrt((squares[:, None] + squares[None, :]) / 2), 1e-30)
    np.fill_diagonal(relative, np.inf)
    i, j = np.unravel_index(np.argmin(relative[: len(state.networks)]), (len(state.networks), len(names)))
    if relative[i, j] < DUPLICATE_DISTANCE:
        a, b = sorted((names[i], names[j]))
        raise SpotCheckFailed(f"networks {a} and {b} are copies (relative distance {relative[i, j]:.3g})")


def lineage_reference(spec, network, start):
    """The recurrent weights a network must still point at: its last full restart's initial weights
    if it had one in this workunit, else its start's."""
    kinds = [training.restart_kind(spec.recipe, n) for n in range(1, len(network.restart_epochs) + 1)]
    full = [n for n, (e, kind) in enumerate(zip(network.restart_epochs, kinds), 1) if e > start.epochs and kind == "full"]
    if full:
        seed = training.restart_seed(network.init_seed, full[-1])
        return training.initial_weights(spec.architecture, spec.recipe, seed), True
    return start.weights, start.epochs == 0


def check_lineage(spec, state, starts):
    """Each network's recurrent weights have a cosine with its reference above chance (with an
    independent random start the cosine is N(0, 1/n); with a trained previous state the threshold
    is the measured ``FOLLOW_UP_LINEAGE_COSINE``), and a network that trained has moved."""
    for network, start in zip(state.networks, starts):
        reference, independent = lineage_reference(spec, network, start)
        keys = [k for k in network.weights if k.startswith("rnn.")]
        w, r = flat(network.weights, keys), flat(reference, keys)
        cosine = float(w @ r / max(np.linalg.norm(w) * np.linalg.norm(r), 1e-30))
        threshold = LINEAGE_SIGMAS / math.sqrt(w.size) if independent else FOLLOW_UP_LINEAGE_COSINE
        if cosine < threshold:
            what = "initial weights of its seed" if independent else "state it continued from"
            raise SpotCheckFailed(
                f"network {network.key}: recurrent weights do not descend from the {what} (cosine {cosine:.3g} < {threshold:.3g})"
            )
        now, before = flat(network.weights), flat(start.weights)
        if network.epochs > start.epochs and np.linalg.norm(now - before) < MOVED_DISTANCE * np.linalg.norm(before):
            trained = network.epochs - start.epochs
            raise SpotCheckFailed(f"network {network.key}: claims {trained} epochs but has not moved from its start")


def check_adam(spec, network):
    """Adam's state is one the optimiser can reach: the step count the epochs give, and with
    gradients clipped to ``clip_norm`` (c), moments started at zero and t steps: ||m|| <= c (1 -
    b1^t), sum(v) <= c^2 (1 - b2^t), v >= 0, and m_i^2 <= C v_i with C = (1-b1)^2 / (1-b2) / (1 -
    b1^2/b2) (Cauchy-Schwarz over the two moving averages)."""
    recipe, key = spec.recipe, network.key
    steps_per_epoch = math.ceil(spec.data.train_size / recipe.batch_size)
    full = [e for n, e in enumerate(network.restart_epochs, 1) if training.restart_kind(recipe, n) == "full"]
    t = steps_per_epoch * (network.epochs - (full[-1] if full else 0))
    if network.adam_step != t:
        raise SpotCheckFailed(f"network {key}: adam_step {network.adam_step}, but its epochs give {t}")
    m, v = flat(network.exp_avg), flat(network.exp_avg_sq)
    beta1, beta2 = recipe.betas
    if (v < 0).any():
        raise SpotCheckFailed(f"network {key}: negative exp_avg_sq")
    c = recipe.clip_norm
    if c and math.isfinite(c):
        if np.linalg.norm(m) > c * (1 - beta1**t) * (1 + ADAM_SLACK) + 1e-12:
            raise SpotCheckFailed(f"network {key}: exp_avg norm {np.linalg.norm(m):.3g} exceeds what clipping to {c} allows")
        if v.sum() > c**2 * (1 - beta2**t) * (1 + ADAM_SLACK) + 1e-12:
            raise SpotCheckFailed(f"network {key}: exp_avg_sq sum {v.sum():.3g} exceeds what clipping to {c} allows")
    if beta1**2 < beta2:
        bound = (1 - beta1) ** 2 / (1 - beta2) / (1 - beta1**2 / beta2)
        worst = float(np.max(m**2 - bound * v * (1 + ADAM_SLACK)))
        if worst > 1e-30:
            raise SpotCheckFailed(f"network {key}: exp_avg too large for its exp_avg_sq (m^2 > {bound:.3g} v)")


def reexecution_flops(spec, budget_share=BUDGET_SHARE):
    """The most FLOPs ``spot_check`` re-trains for a result of ``spec`` (``plan_reexecution``'s
    budget at a full epoch budget, plus one network re-trained to its end), for the CPU bound."""
    from boinc_app.flops import network_epoch_flops

    trained = spec.epoch_budget * len(spec.networks)
    shared = max(1, budget_share * trained / ALONE_COST[spec.architecture.cell])
    epochs = min(trained, shared + min(FULL_EPOCHS, spec.epoch_budget))
    return epochs * network_epoch_flops(spec, spec.max_epochs - 1)


def plan_reexecution(state, rng, budget_share=BUDGET_SHARE, alone_cost=ALONE_COST["gru"]):
    """``[(network index, epochs)]`` within the budget (at least one epoch in all): networks in
    ``rng``'s order, each re-trained to its end if it trained at most ``FULL_EPOCHS`` (its final
    weights can then be compared) and that fits, else for its first epoch (the sharpest test,
    so the budget covers as many networks as it can)."""
    trained = [n.epochs - n.start_epoch for n in state.networks]
    left = max(1, math.floor(budget_share * sum(trained) / alone_cost))
    plan = []
    for index in rng.permutation(len(trained)):
        if left < 1:
            break
        if trained[index] >= 1:
            epochs = trained[index] if trained[index] <= min(FULL_EPOCHS, left) else 1
            plan.append((int(index), epochs))
            left -= epochs
    return plan


def tolerances(epochs):
    """``(losses, weights, moments)`` tolerances after ``epochs`` epochs of re-execution; None
    where an honest re-execution may differ as much as a forged one (past the measured range)."""
    return next((row[1:] for row in TOLERANCES if epochs <= row[0]), (None, None, None))


def reexecute(spec, data, claimed, start, epochs):
    """Re-train ``start`` alone for ``epochs`` epochs and compare with the ``claimed`` network.

    The restart rule is not re-decided: the claimed restarts (which ``validator.checks`` replays
    against the claimed history, and this history against the re-execution) are applied, so an
    accuracy on the rule's edge cannot send an honest re-execution down another path.
    """
    network = copy.deepcopy(start)
    no_rule = dataclasses.replace(spec, recipe=dataclasses.replace(spec.recipe, restart_patience=0, restart_after=0))
    for _ in range(epochs):
        training.run_epoch(no_rule, data, [network], np.zeros(1, dtype=np.int64))
        if network.epochs in claimed.restart_epochs:
            training.restart(spec.architecture, spec.recipe, network)
    compare_history(claimed, network, start.epochs, min(epochs, SHARP_EPOCHS))
    compare_snapshots(claimed, network, start.epochs)
    if network.epochs == claimed.epochs:
        compare_final(claimed, network, epochs)


def compare_history(claimed, redone, first, count):
    """The claimed history of epochs ``first+1 .. first+count`` against the re-execution's."""
    for epoch in range(first + 1, first + count + 1):
        rtol = tolerances(epoch - first)[0]
        for name in ("train_loss", "validation_loss"):
            a, b = claimed.history[name][epoch - 1], redone.history[name][epoch - 1]
            if not abs(a - b) <= rtol * abs(b):
                raise SpotCheckFailed(f"network {claimed.key}: epoch {epoch} {name} {a:.8g}, re-executed {b:.8g}")
        for name, tolerance in (("validation_accuracy", ACCURACY_TOLERANCE), ("post_trigger_accuracy", 10 * ACCURACY_TOLERANCE)):
            a, b = claimed.history[name][epoch - 1], redone.history[name][epoch - 1]
            if not (abs(a - b) <= tolerance or (math.isnan(a) and math.isnan(b))):
                raise SpotCheckFailed(f"network {claimed.key}: epoch {epoch} {name} {a:.6f}, re-executed {b:.6f}")


def compare_snapshots(claimed, redone, first):
    """The claimed weights at each snapshot epoch the re-execution reached, as far as
    ``tolerances`` separates honest from forged (``redone`` began after epoch ``first``)."""
    for epoch, values in redone.snapshots.items():
        limit = tolerances(epoch - first)[1]
        if epoch <= first or limit is None:
            continue
        a, b = np.asarray(claimed.snapshots[epoch], dtype=np.float64), np.asarray(values, dtype=np.float64)
        distance = np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)
        if not distance <= limit:
            raise SpotCheckFailed(f"network {claimed.key}: weights after epoch {epoch} {distance:.3g} (relative L2) from the re-executed")


def compare_final(claimed, redone, epochs):
    """Final weights and Adam moments of a network re-trained to its end, as far as ``tolerances``
    separates honest from forged."""
    _, weights, moments = tolerances(epochs)
    checks = (("weights", weights), ("exp_avg", moments), ("exp_avg_sq", moments))
    for name, limit in [(name, limit) for name, limit in checks if limit is not None]:
        a, b = flat(getattr(claimed, name)), flat(getattr(redone, name))
        distance = np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)
        if not distance <= limit:
            raise SpotCheckFailed(f"network {claimed.key}: final {name} {distance:.3g} (relative L2) from the re-executed")
    if claimed.adam_step != redone.adam_step:
        raise SpotCheckFailed(f"network {claimed.key}: adam_step {claimed.adam_step}, re-executed {redone.adam_step}")
