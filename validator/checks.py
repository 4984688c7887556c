"""Checks of one returned result against its workunit spec.

An uploaded result is hostile until proven otherwise, and **what the validator accepts, the
assimilator must be able to store**: a valid result that then fails in ``mlds assimilate`` stops
BOINC's assimilator daemon for good. So every value the store, a release or a status page reads
from a result is checked here, for type, range and size. The verdicts, in the order they are given:

1. the spec cannot be read now: *transient* (exit 3; the server's problem, BOINC asks again later);
2. ``bound_resources``: the process's memory and CPU time are bounded from the spec
   (``validator.limits``); a validation that runs past them is invalid;
3. the result file is missing while its upload directory exists: *invalid* ("result file
   missing"). BOINC's upload handler writes the file before the client reports the result, so a
   file missing at validation time is lost for good; transient would have BOINC retry it forever.
   A missing upload directory (an unmounted file system) or a file that cannot be read (its
   permissions) is the server's problem: transient;
4. the file is refused before its data is read unless it is laid out exactly as the trainer writes
   it, no larger than ``max_result_bytes``, of a known format and version, written for exactly
   this spec, with exactly the expected networks, tensors, attributes, shapes and dtypes
   (``boinc_app.result_file``);
5. then ``validate_result``'s checks, one after another, each raising ``InvalidResult`` with its
   reason: complete; provenance strings of bounded length and characters, naming this workunit;
   per network, bookkeeping (seeds are the spec's, epochs within the budget and the cap, a
   status that follows from them, restart epochs the rule gives, CPU seconds a finite
   non-negative number), finite weights, Adam moments and history, history values in range; no
   two networks with (nearly) the same weights; and a random sample of the networks
   (``REEVALUATED_NETWORKS``, all of a small result) re-evaluated with the
   *reference* ``torch.nn`` module (not the trainer's ensemble code) on the validation set
   regenerated from the spec: its claimed validation loss and accuracies must match, and its
   ``converged`` flag must follow from the re-evaluated scores; last, the re-execution spot check
   (``validator.spot_check``, docs/spot-check.md), from the spec or, for a follow-up, from the
   previous validated result.

Anything unexpected inside the validator is transient, never "valid", and never a traceback.
"""

import dataclasses
import math
import os
import random
import re
import stat
from dataclasses import dataclass

import numpy as np
import torch

from boinc_app.networks import expected_shapes, module_with_weights
from boinc_app.result_file import ResultFileError, read_result
from boinc_app.task_data import score_counts, scores_from_counts, task_data
from boinc_app.training import CAPPED, CONVERGED, HISTORY_FIELDS, TRAINING, replay_restarts
from boinc_app.workunit_spec import SpecError, read_spec
from validator.limits import ResourceLimitExceeded, apply_limits, disarm_cpu_signal

VALID, INVALID, TRANSIENT = "valid", "invalid", "transient"
EXIT_CODES = {VALID: 0, INVALID: 1, TRANSIENT: 3}
ACCURACY_TOLERANCE = 2e-4  # a few scored bits of 20,000 may flip between platforms
LOSS_TOLERANCE = 1e-3  # relative
# Two networks whose flattened weights are closer than this (cosine similarity) are one network
# copied. Honest networks from different seeds are nowhere near: the largest similarity over the
# 496 pairs of an honest 32-network DS1 result (3 epochs) is 0.090, of 8 networks (2 epochs) 0.048.
DUPLICATE_SIMILARITY = 0.9999
MAX_SECONDS = 1e9  # CPU or wall seconds: 30 years, far above any honest workunit
# Root attributes that the store, releases and status pages copy: (pattern, what it must be).
VERSION = r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}"
PROVENANCE_PATTERNS = {
    "app_version": (VERSION, "a version of at most 64 letters, digits and . + _ -"),
    "torch_version": (VERSION, "a version of at most 64 letters, digits and . + _ -"),
    "python_version": (r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}[0-9A-Za-z.+_-]{0,24}", "a Python version"),
    "platform": (r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}", "a system-machine name of at most 64 characters"),
    "spec_sha256": (r"[0-9a-f]{64}", "64 lowercase hex digits"),
}
MAX_DEVICE_CHARS = 128  # a CPU model or GPU name: any printable characters


class InvalidResult(Exception):
    """The result is wrong; the message says why."""


@dataclass(frozen=True)
class Outcome:
    verdict: str
    reason: str = ""
    summary: str = ""


def max_result_bytes(spec):
    """Upper bound on an honest result file's size for ``spec``: per network its weights, two
    Adam moments and the snapshots it can reach (float32), its history (float64 per epoch and
    field) and HDF5 overhead."""
    parameters = sum(int(np.prod(shape)) for shape in expected_shapes(spec.architecture).values())
    snapshots = sum(1 for e in spec.snapshot_epochs if e <= spec.max_epochs)
    per_network = (3 + snapshots) * 4 * parameters + len(HISTORY_FIELDS) * 8 * spec.max_epochs + (128 << 10)
    return (1 << 20) + len(spec.networks) * per_network


def validate_files(spec_path, result_path, bound_resources=False, chooser=None, resume_path=None):
    """Validate ``result_path`` against the spec at ``spec_path``; never raises.

    ``bound_resources``: first bound this process's memory and CPU time (``validator.limits``);
    only for a process that validates one result and exits (what ``mlds validate`` and the
    script_validator script run), never in a test runner or a daemon. ``chooser``: which networks
    to re-evaluate and re-train (``NetworkSample``; default: ``REEVALUATED_NETWORKS`` drawn from
    the OS's randomness). ``resume_path``: a follow-up's previous, validated result, which the spot
    check continues from (without it a follow-up's spot check is skipped).
    """
    try:
        spec = read_spec(spec_path)
    except SpecError as exc:
        return Outcome(TRANSIENT, f"cannot use the workunit spec: {exc}")
    except Exception as exc:  # noqa: BLE001 - e.g. RecursionError, or a mistyped field reaching SpecError's checks
        return Outcome(TRANSIENT, f"cannot use the workunit spec: {type(exc).__name__}: {exc}")
    limits = None
    try:
        limits = apply_limits(spec) if bound_resources else None
        problem = result_file_problem(result_path)
        if problem is not None:
            return problem
        return Outcome(VALID, summary=validate_result(spec, result_path, chooser, resume_path))
    except (InvalidResult, ResultFileError, ResourceLimitExceeded) as exc:
        return Outcome(INVALID, str(exc))
    except Exception as exc:  # noqa: BLE001 - a validator bug must not pass or fail a result
        if limits is not None and _out_of_memory(exc):
            return Outcome(INVALID, f"validating it needed more memory than the validator's bound ({limits.describe()})")
        return Outcome(TRANSIENT, f"internal error while validating: {type(exc).__name__}: {exc}")
    finally:
        if limits is not None:
            disarm_cpu_signal()


def _out_of_memory(exc):
    """A failed allocation: numpy/h5py raise MemoryError, torch a RuntimeError saying so."""
    return isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))


def result_file_problem(path):
    """The outcome for a result path that is not a regular file we can read now, or None."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            return Outcome(TRANSIENT, f"the upload directory {directory} is missing: is its file system mounted?")
        return Outcome(INVALID, f"result file missing: {path} (BOINC reports a result after its upload is written)")
    except OSError as exc:
        return Outcome(TRANSIENT, f"result file {path} cannot be examined now: {exc}")
    if not stat.S_ISREG(mode):
        return Outcome(INVALID, f"result file {path} is not a regular file")
    if not os.access(path, os.R_OK):
        return Outcome(TRANSIENT, f"result file {path} is unreadable now (permissions)")
    return None


@dataclass(frozen=True)
class NetworkSample:
    """Which networks of a result are re-evaluated: ``size`` of them, drawn by ``rng`` (default the
    OS's randomness, so a volunteer cannot know which), or all of them when ``size`` is None."""

    size: int = None
    rng: object = None

    def choose(self, count):
        if self.size is None or self.size >= count:
            return list(range(count))
        return sorted((self.rng or random.SystemRandom()).sample(range(count), self.size))

    def generator(self):
        """A numpy generator for the spot check's own draws, from the same source."""
        return np.random.default_rng((self.rng or random.SystemRandom()).getrandbits(64))


# Re-evaluating one DS1 network on its regenerated validation set costs about 0.07 s on one core;
# all 32 of a workunit would take 2.2 s, and a server core must validate at least one result per
# second. So the server re-evaluates a sample drawn after upload. A result whose f of n networks
# carry forged weights or claims is caught with probability 1 - C(n-f, k) / C(n, k): every result
# whose networks are all forged; with k = 4 of n = 32, one forged network 12.5 %, 8 of them 69 %.
# Everything else (layout, fields, seeds, bookkeeping, finiteness, copies) is checked for every
# network; the re-execution spot check adds its own sample.
REEVALUATED_NETWORKS = 4


def validate_result(spec, result_path, chooser=None, resume_path=None):
    """Raise ``InvalidResult``/``ResultFileError`` unless the result is valid; returns a summary."""
    chooser = chooser or NetworkSample(REEVALUATED_NETWORKS)
    _, state, attrs = read_result(result_path, spec=spec, max_bytes=max_result_bytes(spec))
    check_complete(attrs)
    check_provenance(spec, attrs)
    for seeds, network in zip(spec.networks, state.networks):
        check_bookkeeping(spec, seeds, network)
        check_finite(spec, network)
        check_history_ranges(spec, network)
    check_distinct(state.networks)
    chosen = chooser.choose(len(state.networks))
    check_reevaluated(spec, [state.networks[i] for i in chosen])
    spot = check_training(spec, state, chooser, resume_path)
    converged = sum(n.status == CONVERGED for n in state.networks)
    return f"{len(state.networks)} networks, {converged} converged, {len(chosen)} re-evaluated, {spot}"


# The spot check re-trains (docs/spot-check.md §7): under SPEC_VERSION 7 a network trains bitwise
# alike alone and in an ensemble; specs before it summed the clip norm in float32, whose rounding
# followed the ensemble size (their honest results were rejected through the real client), so
# they get every check but the re-training.
REEXECUTE = True


def check_training(spec, state, chooser, resume_path):
    """The spot check (``validator.spot_check``); returns what it did, for the log."""
    from validator.spot_check import spot_check

    resume_state = None
    if spec.resume_from:
        if resume_path is None:
            return "spot check skipped (no previous result)"
        _, resume_state, _ = read_result(resume_path)
    retrain = REEXECUTE and spec.recipe.clip_norm_sum == "float64"
    spot_check(spec, state, chooser.generator(), resume_state=resume_state, retrain=retrain)
    return "spot-checked" if retrain else "spot-checked without re-training"


def check_complete(attrs):
    if attrs.get("complete") is not True:
        raise InvalidResult("the file is a checkpoint, not a completed result")


def check_provenance(spec, attrs):
    """The root attributes that name this workunit name it, and the provenance strings the store
    copies have bounded lengths and characters (they reach HTML pages and READMEs)."""
    for name, expected in (("wu_name", spec.name), ("dataset", spec.dataset), ("task", spec.task_name),
                           ("spec_version", spec.spec_version)):  # fmt: skip
        if attrs[name] != expected:
            raise InvalidResult(f"attribute {name!r} is {_shown(attrs[name])}, expected {expected!r}")
    for name, (pattern, what) in PROVENANCE_PATTERNS.items():
        if not re.fullmatch(pattern, attrs[name], flags=re.ASCII):
            raise InvalidResult(f"attribute {name!r} is {_shown(attrs[name])}, not {what}")
    device = attrs["device"]
    if len(device) > MAX_DEVICE_CHARS or not device.isprintable():
        raise InvalidResult(f"attribute 'device' is {_shown(device)}, not at most {MAX_DEVICE_CHARS} printable characters")
    _check_seconds(attrs["wall_seconds"], "attribute 'wall_seconds'")


def _shown(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(value)} characters)"


def _check_seconds(value, what):
    if not (math.isfinite(value) and 0 <= value <= MAX_SECONDS):
        raise InvalidResult(f"{what} is {value!r}, not a number of seconds in 0..{MAX_SECONDS:g}")


def check_bookkeeping(spec, seeds, network):
    key = network.key
    if (network.init_seed, network.order_seed) != (seeds.init_seed, seeds.order_seed):
        claimed, expected = f"{network.init_seed}/{network.order_seed}", f"{seeds.init_seed}/{seeds.order_seed}"
        raise InvalidResult(f"network {key}: init_seed/order_seed {claimed} are not the spec's {expected}")
    if spec.resume_from is None and network.start_epoch != 0:
        raise InvalidResult(f"network {key}: starts at epoch {network.start_epoch}, expected 0")
    trained = network.epochs - network.start_epoch
    if network.epochs > spec.max_epochs or not 0 <= trained <= spec.epoch_budget:
        raise InvalidResult(f"network {key}: {network.epochs} epochs exceeds the cap or this workunit's budget")
    if network.status == TRAINING and trained != spec.epoch_budget:
        raise InvalidResult(f"network {key}: still training after {trained} of {spec.epoch_budget} epochs")
    if network.status == TRAINING and network.epochs >= spec.max_epochs:
        raise InvalidResult(f"network {key}: still training at the cap of {spec.max_epochs} epochs, not capped")
    if network.status == CAPPED and network.epochs != spec.max_epochs:
        raise InvalidResult(f"network {key}: marked capped at {network.epochs} epochs, cap is {spec.max_epochs}")
    if network.epochs == 0:
        raise InvalidResult(f"network {key}: was never trained")
    replayed = replay_restarts(spec.recipe, network.history["validation_accuracy"], network.status == TRAINING)
    if network.restart_epochs != replayed:
        raise InvalidResult(f"network {key}: restart_epochs {network.restart_epochs} are not the rule's {replayed}")
    _check_seconds(network.cpu_seconds, f"network {key}: attribute 'cpu_seconds'")


def check_finite(spec, network):
    key = network.key
    for group in ("weights", "exp_avg", "exp_avg_sq"):
        for name, value in getattr(network, group).items():
            if not np.isfinite(value).all():
                raise InvalidResult(f"network {key}: {group} {name} holds NaN or Inf")
    for epoch, values in network.snapshots.items():
        if not np.isfinite(values).all():
            raise InvalidResult(f"network {key}: the snapshot after epoch {epoch} holds NaN or Inf")
    for name, values in network.history.items():
        allowed_nan = name == "post_trigger_accuracy" and spec.task["kind"] == "automaton"
        if not allowed_nan and not np.isfinite(values).all():
            raise InvalidResult(f"network {key}: history {name} holds NaN or Inf")


# A mean cross-entropy per scored bit or symbol: an honest network starts near ln 2 (ln 6 for an
# automaton) and would need logits of a million to reach this.
MAX_LOSS = 1e6
# history field -> the closed range its (non-NaN) values lie in
HISTORY_RANGES = {
    "train_loss": (0.0, MAX_LOSS),
    "validation_loss": (0.0, MAX_LOSS),
    "validation_accuracy": (0.0, 1.0),
    "post_trigger_accuracy": (0.0, 1.0),
    "learning_rate": (0.0, math.inf),
}


def check_history_ranges(spec, network):
    """Losses and learning rates are non-negative, accuracies shares in [0, 1]."""
    for name, (low, high) in HISTORY_RANGES.items():
        values = np.asarray(network.history[name], dtype=np.float64)
        outside = values[~np.isnan(values) & ((values < low) | (values > high))]
        if outside.size:
            raise InvalidResult(f"network {network.key}: history {name} holds {outside[0]!r}, outside [{low}, {high}]")


def check_distinct(networks):
    """No two networks carry (nearly) the same weights: a copied network, with its seeds restored,
    would otherwise pass every other check. Networks given the same init seed (never by workgen)
    may be alike and are not compared."""
    flat = np.stack([_flat_weights(n) for n in networks])
    norms = np.linalg.norm(flat, axis=1)
    unit = flat / np.where(norms > 0, norms, 1.0)[:, None]
    similarity = unit @ unit.T
    similarity[(norms == 0)[:, None] & (norms == 0)[None, :]] = 1.0  # two all-zero networks are alike
    seeds = np.array([n.init_seed for n in networks])
    close = np.triu(similarity > DUPLICATE_SIMILARITY, k=1) & (seeds[:, None] != seeds[None, :])
    for i, j in np.argwhere(close)[:1]:
        a, b = networks[i].key, networks[j].key
        raise InvalidResult(f"networks {a} and {b} carry the same weights (cosine similarity {similarity[i, j]:.6f})")


def _flat_weights(network):
    return np.concatenate([np.ravel(value) for _, value in sorted(network.weights.items())]).astype(np.float64)


def check_reevaluated(spec, networks):
    for network, (loss, accuracy, post) in zip(networks, reevaluate(spec, networks)):
        check_claims(spec, network, loss, accuracy, post)


@torch.no_grad()
def reevaluate(spec, networks):
    """``[(loss, accuracy, post_trigger_accuracy)]`` per network, with the reference module."""
    data = task_data(spec)
    validation = data.validation
    results = []
    for network in networks:
        module = module_with_weights(spec.architecture, network.weights)
        module.eval()
        logits = module(validation.inputs[0])[None]
        counts = score_counts(data.kind, logits, validation.targets, validation.scored, validation.post_trigger)
        scores = scores_from_counts(counts)
        results.append((scores.loss[0], scores.accuracy[0], scores.post_trigger_accuracy[0]))
    return results


def _shifted_rule(rule, sign):
    """The convergence rule with thresholds moved by the tolerance (``sign`` -1: lenient)."""
    return dataclasses.replace(
        rule,
        accuracy=rule.accuracy + sign * ACCURACY_TOLERANCE,
        post_trigger_accuracy=rule.post_trigger_accuracy + sign * 10 * ACCURACY_TOLERANCE,
    )


def check_claims(spec, network, loss, accuracy, post):
    key = network.key
    history = network.history
    claimed_accuracy = history["validation_accuracy"][-1]
    claimed_loss = history["validation_loss"][-1]
    claimed_post = history["post_trigger_accuracy"][-1]
    if abs(claimed_accuracy - accuracy) > ACCURACY_TOLERANCE:
        raise InvalidResult(f"network {key}: claims accuracy {claimed_accuracy:.6f}, re-evaluated {accuracy:.6f}")
    if not math.isclose(claimed_loss, loss, rel_tol=LOSS_TOLERANCE, abs_tol=1e-6):
        raise InvalidResult(f"network {key}: claims validation loss {claimed_loss:.6g}, re-evaluated {loss:.6g}")
    if not (math.isnan(post) and math.isnan(claimed_post)) and abs(claimed_post - post) > 10 * ACCURACY_TOLERANCE:
        raise InvalidResult(f"network {key}: claims post-trigger accuracy {claimed_post:.6f}, re-evaluated {post:.6f}")
    rule = spec.convergence
    relaxed, strict = (_shifted_rule(rule, sign) for sign in (-1, +1))
    if network.status == CONVERGED and not relaxed.met(accuracy, post):
        raise InvalidResult(f"network {key}: marked converged but re-evaluated accuracy is {accuracy:.6f}")
    if network.status != CONVERGED and strict.met(accuracy, post):
        raise InvalidResult(f"network {key}: meets the convergence rule but is not marked converged")
