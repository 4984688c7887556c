"""Standalone control of a training run: checkpoint period, quit on SIGTERM/SIGINT, progress.

The training loop asks a *control* object when to checkpoint, whether to quit and whether it is
suspended, and tells it about progress. Under a BOINC client those answers come from the client
(shared-memory messages); without one, this standalone control answers from a timer and from
signals, so ``mlds train`` behaves like an app in its slot: killed or stopped, it is started again
with the same command and resumes from its last checkpoint.
"""

import signal
import sys
import time


class StandaloneControl:
    """``checkpoint_period``: seconds between checkpoints (BOINC's default is 60)."""

    def __init__(self, write_checkpoint, checkpoint_period=60.0, progress_period=10.0, stream=sys.stderr):
        self._write_checkpoint = write_checkpoint
        self._period = checkpoint_period
        self._progress_period = progress_period
        self._stream = stream
        self._last_checkpoint = time.monotonic()
        self._last_progress = 0.0
        self._quit = False

    def install_signal_handlers(self):
        """SIGTERM and SIGINT ask for a checkpoint and a clean exit at the next epoch boundary."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame):
        self._quit = True

    def request_quit(self):
        self._quit = True

    def quit_requested(self):
        return self._quit

    def checkpoint_due(self):
        return time.monotonic() - self._last_checkpoint >= self._period

    def checkpoint(self, state):
        self._write_checkpoint(state)
        self._last_checkpoint = time.monotonic()

    def wait_while_suspended(self):
        """Standalone runs are never suspended (a BOINC control blocks here)."""

    def resumed(self, state, fraction):
        """The run starts from ``state`` (fresh, or resumed at ``fraction``): nothing to show yet."""

    def report_progress(self, state, fraction):
        now = time.monotonic()
        if now - self._last_progress >= self._progress_period or fraction >= 1.0:
            self._last_progress = now
            training = sum(1 for n in state.networks if n.status == "training")
            epochs = max(n.epochs for n in state.networks)
            print(f"progress {fraction:.3f}: epoch {epochs}, {training} network(s) training", file=self._stream, flush=True)


class SilentControl:
    """A control that never suspends, quits, reports or checkpoints on its own: tests and
    benchmarks that train in process (``checkpoint`` still writes when the loop asks)."""

    def __init__(self, write_checkpoint=None):
        self.write_checkpoint = write_checkpoint

    def wait_while_suspended(self):
        pass

    def resumed(self, state, fraction):
        pass

    def report_progress(self, state, fraction):
        pass

    def quit_requested(self):
        return False

    def checkpoint_due(self):
        return False

    def checkpoint(self, state):
        self.write_checkpoint(state)
