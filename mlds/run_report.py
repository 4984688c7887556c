"""What ``mlds run`` shows: live progress while it works, and the summary when it ends.

Progress is a tqdm bar over the networks stored when stderr is a terminal, and one line per event
otherwise (logs, CI). The summary says per task how many networks converged and how many stopped
at the epoch cap, where the dataset and releases are, how to load them, and where the time went.
"""

import json
import os
import sys

from tqdm import tqdm

from assimilator.progress import dataset_progress
from boinc_app.atomic_file import write_atomically


class ProgressDisplay:
    """Receives the engine's events (``on_event``) and shows them."""

    def __init__(self, total, already_stored, stream=None):
        self.stream = stream or sys.stderr
        self.bar = None
        if self.stream.isatty():
            self.bar = tqdm(total=total, initial=already_stored, unit="net", file=self.stream, desc="networks stored")

    def __call__(self, kind, name, detail):
        if self.bar is not None:
            if kind == "assimilated":
                self.bar.update(detail)
            elif kind in ("error", "invalid"):
                self.bar.write(f"{name}: {kind}: {detail}")
            return
        message = f"{detail} networks stored" if kind == "assimilated" else f"{kind} {detail}".strip()
        print(f"{name}: {message}", file=self.stream, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def summary_rows(config):
    """Progress rows of this run's tasks, with the run's network count as the target."""
    rows = []
    for plan in config.plans():
        rows += dataset_progress(config.store_root, plan.dataset, plan.task_names(), milestones=(plan.count,))
    return rows


def summary_text(config, stats, rows, releases, pending):
    lines = [f"{'dataset':<8} {'task':<22} {'stored':>7} {'converged':>10} {'at cap':>7}"]
    for row in rows:
        lines.append(f"{row.dataset:<8} {row.task:<22} {row.count:>4}/{row.target:<3} {row.converged:>9} {row.capped:>7}")
    lines.append("'at cap': stopped at the epoch cap without converging; they did not learn their machine.")
    lines += [f"error: {e}" for e in stats.errors]
    if pending:
        lines.append(f"{len(pending)} workunits unfinished; run the same command again to continue.")
    stores = ", ".join(os.path.join(config.store_root, f"{d}.h5") for d in config.datasets)
    lines.append(f"dataset: {stores}")
    lines += [f"release: {path}" for path in releases]
    first = releases[0] if releases else os.path.join(config.store_root, f"{config.datasets[0]}.h5")
    lines.append(f'load it: python -c \'import mlds; d = mlds.load_dataset("{first}"); print({{t: d[t].weights.shape for t in d}})\'')
    lines.append(time_share_text(stats))
    return "\n".join(lines)


def time_share_text(stats):
    wall = stats.wall_seconds or 1e-9
    trained = stats.training_seconds
    overhead = stats.train_process_seconds - trained
    per_hour = 3600.0 * stats.networks_stored / wall
    return (
        f"time: {stats.wall_seconds:.0f} s wall, {stats.networks_stored} networks stored ({per_hour:.0f} per hour); "
        f"trainer processes {stats.train_process_seconds:.0f} s, of which training {trained:.0f} s and start/load/write "
        f"{overhead:.0f} s; validation {stats.validate_process_seconds:.0f} s; assimilation {stats.assimilate_seconds:.1f} s"
    )


def write_run_stats(config, stats):
    """``ROOT/run-stats.json``: this run's time accounting (benchmarks and reports read it)."""
    path = os.path.join(config.root, "run-stats.json")
    write_atomically(path, json.dumps(stats.to_dict(), indent=1).encode())
    return path
