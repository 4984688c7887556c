"""Checks of one returned result against its workunit spec.

An uploaded result is hostile until proven otherwise. The checks, in order:

1. the spec is readable (a spec the server cannot read now is a *transient* error, exit 3);
2. the result is a file we can read now (missing or unreadable: transient), not larger than the
   spec's limit, an HDF5 file of a known format and version, written for exactly this spec, with
   exactly the expected networks, tensor names, shapes and dtypes (``boinc_app.result_file``);
3. its bookkeeping is consistent: complete, each network's seeds equal the spec's, epochs within
   the budget and the cap, a history entry per epoch, a status that follows from them;
4. every weight, Adam moment and history value is finite;
5. every network is re-evaluated with the *reference* ``torch.nn`` module (not the trainer's
   ensemble code) on the validation set regenerated from the spec: its claimed validation loss
   and accuracies must match, and its ``converged`` flag must follow from the re-evaluated scores.

Anything unexpected inside the validator is transient (exit 3), never "valid".
"""

import dataclasses
import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from boinc_app.networks import expected_shapes, module_with_weights
from boinc_app.result_file import ResultFileError, read_result
from boinc_app.task_data import score_counts, scores_from_counts, task_data
from boinc_app.training import CAPPED, CONVERGED, HISTORY_FIELDS, TRAINING, replay_restarts
from boinc_app.workunit_spec import SpecError, read_spec

VALID, INVALID, TRANSIENT = "valid", "invalid", "transient"
EXIT_CODES = {VALID: 0, INVALID: 1, TRANSIENT: 3}
ACCURACY_TOLERANCE = 2e-4  # a few scored bits of 20,000 may flip between platforms
LOSS_TOLERANCE = 1e-3  # relative


class InvalidResult(Exception):
    """The result is wrong; the message says why."""


@dataclass(frozen=True)
class Outcome:
    verdict: str
    reason: str = ""
    summary: str = ""


def max_result_bytes(spec):
    """Upper bound on an honest result file's size for ``spec``: per network its weights and two
    Adam moments (float32), its history (float64 per epoch and field) and HDF5 overhead."""
    parameters = sum(int(np.prod(shape)) for shape in expected_shapes(spec.architecture).values())
    per_network = 3 * 4 * parameters + len(HISTORY_FIELDS) * 8 * spec.max_epochs + (128 << 10)
    return (1 << 20) + len(spec.networks) * per_network


def validate_files(spec_path, result_path):
    """Validate ``result_path`` against the spec at ``spec_path``; never raises."""
    try:
        spec = read_spec(spec_path)
    except SpecError as exc:
        return Outcome(TRANSIENT, f"cannot use the workunit spec: {exc}")
    except Exception as exc:  # noqa: BLE001 - e.g. RecursionError, or a mistyped field reaching SpecError's checks
        return Outcome(TRANSIENT, f"cannot use the workunit spec: {type(exc).__name__}: {exc}")
    if not os.path.isfile(result_path) or not os.access(result_path, os.R_OK):
        return Outcome(TRANSIENT, f"result file {result_path} is missing or unreadable now")
    try:
        return Outcome(VALID, summary=validate_result(spec, result_path))
    except InvalidResult as exc:
        return Outcome(INVALID, str(exc))
    except ResultFileError as exc:
        return Outcome(INVALID, str(exc))
    except Exception as exc:  # noqa: BLE001 - a validator bug must not pass or fail a result
        return Outcome(TRANSIENT, f"internal error while validating: {type(exc).__name__}: {exc}")


def validate_result(spec, result_path):
    """Raise ``InvalidResult``/``ResultFileError`` unless the result is valid; returns a summary."""
    _, state, attrs = read_result(result_path, spec=spec, max_bytes=max_result_bytes(spec))
    if attrs.get("complete") is not True:
        raise InvalidResult("the file is a checkpoint, not a completed result")
    for seeds, network in zip(spec.networks, state.networks):
        check_bookkeeping(spec, seeds, network)
        check_finite(spec, network)
    scores = reevaluate(spec, state.networks)
    for network, (loss, accuracy, post) in zip(state.networks, scores):
        check_claims(spec, network, loss, accuracy, post)
    converged = sum(n.status == CONVERGED for n in state.networks)
    return f"{len(state.networks)} networks, {converged} converged"


def check_bookkeeping(spec, seeds, network):
    key = network.key
    if (network.init_seed, network.order_seed) != (seeds.init_seed, seeds.order_seed):
        raise InvalidResult(f"network {key}: seeds {network.init_seed}/{network.order_seed} are not the spec's")
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


def check_finite(spec, network):
    key = network.key
    for group in ("weights", "exp_avg", "exp_avg_sq"):
        for name, value in getattr(network, group).items():
            if not np.isfinite(value).all():
                raise InvalidResult(f"network {key}: {group} {name} holds NaN or Inf")
    for name, values in network.history.items():
        allowed_nan = name == "post_trigger_accuracy" and spec.task["kind"] == "automaton"
        if not allowed_nan and not np.isfinite(values).all():
            raise InvalidResult(f"network {key}: history {name} holds NaN or Inf")


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
