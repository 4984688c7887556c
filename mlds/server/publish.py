"""``mlds server publish``: the server-side step that turns the journal into releases.

In a BOINC project the assimilator only journals (one small file per workunit, atomically); nothing
else would ever consolidate the store or cut a release. This step, run by ``bin/start --cron`` as a
``<task>`` (or by hand), for each dataset served: consolidates the journal into ``<dataset>.h5``,
builds every milestone release reached (``MLDS-<dataset>-<N>.tar.gz`` + ``.md5``, reproducible,
skipped when present), and rewrites the status page. It also removes the temporary files
(``.<name>.tmp-<pid>``, see ``boinc_app.atomic_file``) that a killed writer left behind, once their
writer is gone. Every step is idempotent, so a killed run is simply run again.
"""

import os
import re
import time
from dataclasses import dataclass

from assimilator.progress import dataset_progress
from assimilator.release import build_release, reached_milestones
from assimilator.status_page import write_status_page
from assimilator.store import DatasetStore
from mlds.server.state import ServerState
from workgen.datasets import get_dataset

TEMPORARY = re.compile(r"^\..+\.tmp-(\d+)$")
STALE_SECONDS = 600


@dataclass(frozen=True)
class PublishConfig:
    project: str
    datasets: tuple = ("DS1",)
    networks: int = None  # the target per task, a milestone too; default: the dataset's largest
    tasks: tuple = None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(state, now=None):
    """Delete ``.*.tmp-<pid>`` files whose writer is gone and that are older than ``STALE_SECONDS``."""
    now = time.time() if now is None else now
    removed = []
    for folder, _, names in os.walk(state.root):
        for name in names:
            match = TEMPORARY.match(name)
            path = os.path.join(folder, name)
            if match and not _alive(int(match.group(1))) and now - os.path.getmtime(path) > STALE_SECONDS:
                os.unlink(path)
                removed.append(path)
    return removed


def publish(config):
    """Consolidate, release, write the status page; returns ``(releases, removed temporaries)``."""
    state = ServerState(os.path.abspath(config.project))
    removed = remove_stale_temporaries(state)
    releases, rows = [], []
    for name in config.datasets:
        dataset = get_dataset(name)
        tasks = tuple(t for t in dataset.task_names() if not config.tasks or t in config.tasks)
        target = config.networks or max(dataset.milestones)
        milestones = tuple(m for m in (*dataset.milestones, target) if m <= target)
        store = DatasetStore(state.store_dir, name)
        store.consolidate()
        header, columns = store.columns()
        if header is not None:
            for count in reached_milestones(columns, tasks, milestones):
                releases.append(build_release(store, tasks, count, state.releases_dir))
        rows += dataset_progress(state.store_dir, name, tasks, milestones)
    write_status_page(state.status_page, rows)
    return releases, removed
