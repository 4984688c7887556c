"""``mlds server publish``: the server-side consolidation, releases and status page, and the
clean-up of what a killed writer left behind."""

import os
import time

import mlds
from assimilator.boinc_script import main as assimilate
from assimilator.store import DatasetStore
from mlds.server.publish import STALE_SECONDS, PublishConfig, publish, remove_stale_temporaries
from mlds.server.state import ServerState
from tests.test_assimilator_boinc_script import project_with_upload


def test_publish_consolidates_builds_the_release_and_writes_the_status_page(tmp_path, small_result):
    state, spec, upload = project_with_upload(tmp_path, *small_result)
    assert assimilate(state.project_root, ["1", str(upload)]) == 0
    store = DatasetStore(state.store_dir, "DS1")
    assert store.journal_files() and not os.path.exists(store.path)
    releases, _ = publish(PublishConfig(state.project_root, ("DS1",), networks=2, tasks=("SingleInvertMachine",)))
    assert not store.journal_files() and os.path.exists(store.path)
    assert [os.path.basename(r) for r in releases] == ["MLDS-DS1-2.tar.gz"]
    dataset = mlds.load_dataset(releases[0])
    assert dataset["SingleInvertMachine"].weights.shape[0] == 2
    assert "SingleInvertMachine" in open(state.status_page).read()
    archive = open(releases[0], "rb").read()
    publish(PublishConfig(state.project_root, ("DS1",), networks=2, tasks=("SingleInvertMachine",)))
    assert open(releases[0], "rb").read() == archive  # idempotent


def test_no_release_before_every_task_has_its_networks(tmp_path, small_result):
    state, spec, upload = project_with_upload(tmp_path, *small_result)
    assimilate(state.project_root, ["1", str(upload)])
    releases, _ = publish(PublishConfig(state.project_root, ("DS1",), networks=2))  # all five machines
    assert releases == []
    assert "ParityMachine" in open(state.status_page).read()


def test_stale_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    state = ServerState(str(tmp_path))
    state.make_dirs()
    dead = os.path.join(state.store_dir, ".DS1.h5.tmp-999999999")
    live = os.path.join(state.store_dir, f".DS1.h5.tmp-{os.getpid()}")
    fresh = os.path.join(state.checkpoints_dir, ".x.h5.tmp-999999998")
    for path in (dead, live, fresh):
        open(path, "w").close()
    old = time.time() - STALE_SECONDS - 60
    os.utime(dead, (old, old))
    os.utime(live, (old, old))
    assert remove_stale_temporaries(state) == [dead]
    assert os.path.exists(live) and os.path.exists(fresh)
