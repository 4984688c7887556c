"""Run one workunit: read the spec, resume or start, train, write the result.

This is what the frozen trainer executes in a BOINC slot and what ``mlds train`` runs standalone.
The checkpoint is a result-format file (``boinc_app.result_file``) beside the output; when it
exists and belongs to the same spec, training resumes from it, so running the same command again
after a kill continues where the last checkpoint left off and ends bitwise identical to an
uninterrupted run.
"""

import glob
import os
from dataclasses import dataclass

import torch

from boinc_app import training
from boinc_app.result_file import ResultFileError, read_result, write_result
from boinc_app.task_data import task_data
from boinc_app.workunit_spec import SpecError, read_spec


@dataclass(frozen=True)
class TrainerConfig:
    spec_path: str
    output_path: str
    checkpoint_path: str = None  # default: <output>.checkpoint
    checkpoint_period: float = 60.0
    threads: int = 1
    device: str = "cpu"
    # logical input name (the spec's ``resume_from``) -> path; default: beside the spec file.
    # In a BOINC slot: ``boinc_app.filenames.resolve``.
    resolve_input: object = None

    @property
    def checkpoint(self):
        return self.checkpoint_path or f"{self.output_path}.checkpoint"


def remove_stale_temporaries(path):
    """Temporaries a killed writer left beside ``path`` (see ``atomic_file``)."""
    directory, name = os.path.split(os.path.abspath(path))
    for stale in glob.glob(os.path.join(glob.escape(directory), f".{glob.escape(name)}.tmp-*")):
        os.unlink(stale)


def load_start_state(spec, config):
    """The checkpoint of this spec if there is one, else the spec's ``resume_from``, else fresh."""
    remove_stale_temporaries(config.checkpoint)
    remove_stale_temporaries(config.output_path)
    if os.path.exists(config.checkpoint):
        _, state, _ = read_result(config.checkpoint, spec=spec)
        return state
    if spec.resume_from:
        if config.resolve_input is not None:
            path = config.resolve_input(spec.resume_from)
        else:
            path = os.path.join(os.path.dirname(os.path.abspath(config.spec_path)), spec.resume_from)
        _, previous, _ = read_result(path)
        if [n.key for n in previous.networks] != [n.key for n in spec.networks]:
            raise SpecError(f"checkpoint {spec.resume_from} holds other networks than the spec lists")
        return training.continue_state(spec, previous)
    return training.initial_state(spec)


def run_trainer(config, control_factory):
    """Train the workunit of ``config``; returns the final ``RunState``.

    ``control_factory(write_checkpoint)`` makes the control object (standalone or BOINC).
    Raises ``SpecError``/``ResultFileError`` for bad input, ``training.QuitRequested`` on quit.
    """
    torch.set_num_threads(config.threads)
    spec = read_spec(config.spec_path)
    state = load_start_state(spec, config)
    control = control_factory(lambda s: write_result(config.checkpoint, spec, s, complete=False, device=config.device))
    control.resumed(state, state.fraction_done(spec.epoch_budget))  # a restarted task shows its progress at once
    if not state.finished(spec.epoch_budget):
        training.train(spec, task_data(spec), state, control, device=config.device)
    write_result(config.output_path, spec, state, complete=True, device=config.device)
    if os.path.exists(config.checkpoint):
        os.unlink(config.checkpoint)
    return state


__all__ = ["TrainerConfig", "run_trainer", "ResultFileError", "SpecError"]
