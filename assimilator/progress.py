"""Progress per dataset and task, as MLC@Home's status page showed it: count, target, percent.

The count is the number of finished networks stored for a task; the target is the next milestone
above it (or the last one, once all are reached). Converged and capped networks are counted
separately as well, so nobody mistakes a network stopped at the epoch cap for a learned one.
"""

import os
from dataclasses import dataclass

from assimilator.store import DatasetStore
from workgen.datasets import get_dataset


@dataclass(frozen=True)
class ProgressRow:
    dataset: str
    task: str
    count: int  # finished networks stored
    converged: int
    capped: int  # stopped at the epoch cap without converging
    target: int  # next milestone

    @property
    def percent(self):
        return 100.0 * min(self.count, self.target) / self.target if self.target else 100.0


def next_milestone(count, milestones):
    ahead = [m for m in sorted(milestones) if m > count]
    return ahead[0] if ahead else max(milestones)


def dataset_progress(store_root, dataset, tasks=None, milestones=None):
    """One ``ProgressRow`` per task of ``dataset`` (default: all its tasks and milestones)."""
    config = get_dataset(dataset)
    milestones = tuple(milestones or config.milestones)
    if tasks is None:
        tasks = config.task_names()
    _, columns = DatasetStore(store_root, dataset).columns()  # metadata only: a store can be 489 GB
    rows = []
    for task in tasks:
        task_columns = columns.get(task)
        count = len(task_columns["index"]) if task_columns is not None else 0
        converged = int(task_columns["converged"].sum()) if count else 0
        rows.append(ProgressRow(dataset, task, count, converged, count - converged, next_milestone(count, milestones)))
    return rows


def stored_datasets(store_root):
    """The datasets that have a store file or journal under ``store_root``."""
    if not os.path.isdir(store_root):
        return []
    names = {n.split(".")[0] for n in os.listdir(store_root) if n.endswith(".h5") or n.endswith(".journal")}
    return sorted(n for n in names if not n.startswith("."))


def format_table(rows):
    """The progress table as plain text (``mlds status`` and the end of ``mlds run``)."""
    lines = [f"{'dataset':<8} {'task':<22} {'count':>6} {'target':>6} {'percent':>8} {'converged':>10} {'capped':>7}"]
    for row in rows:
        lines.append(
            f"{row.dataset:<8} {row.task:<22} {row.count:>6} {row.target:>6} {row.percent:>7.1f}% {row.converged:>10} {row.capped:>7}"
        )
    return "\n".join(lines)
