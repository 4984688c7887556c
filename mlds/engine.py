"""``mlds run``: the embedded engine that plays BOINC server and client on one machine.

It follows a network's life through the same code paths BOINC uses: the work generator's specs
(``workgen.plan``), the trainer as a separate process in a slot directory (``mlds.slots``), the
validator as a process judged by its exit code, the assimilator's store, follow-up workunits for
networks that need more epochs, and releases at milestones. The work directory (``mlds.workdir``)
stands in for the BOINC database; every step is atomic and repeatable, so Ctrl-C (or a kill) and
running the same command again continues with no network lost or duplicated.

One loop in one thread: it keeps up to ``workers`` child processes busy, and does the cheap steps
(assimilation, creating follow-ups) itself between them, so the store has a single writer.
"""

import os
import select
import signal
import time
from dataclasses import dataclass, field

import h5py

from assimilator.release import build_release, reached_milestones
from assimilator.store import DatasetStore
from boinc_app.result_file import read_result
from mlds import slots
from mlds.run_state import hold_root
from mlds.workdir import ASSIMILATED, CREATED, INVALID, TRAINED, VALID, WorkDirectory
from workgen.datasets import get_dataset
from workgen.plan import WorkPlan, first_workunits, follow_up

EXIT_STOPPED_TRAINER = 75
VALIDATOR_VERDICTS = {0: VALID, 1: INVALID}  # 3 = transient: validate again later
CONSOLIDATE_EVERY = 25
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # ingests between consolidations of the store


@dataclass(frozen=True)
class RunConfig:
    root: str = "mlds-data"
    datasets: tuple = ("DS1",)
    networks: int = None  # per task; None: the dataset's local-run default (workgen.datasets)
    networks_per_workunit: int = None  # default: the dataset's
    workers: int = 0  # 0: one per core
    max_epochs: int = None  # None: the dataset's local-run default
    epoch_budget: int = None  # None: the dataset's local-run default
    seed: int = 1
    checkpoint_period: float = 60.0
    retries: int = 1  # invalid results or crashed trainers, per workunit
    tasks: tuple = None  # machine names / automaton-NNN; default: every task of each dataset

    @property
    def worker_count(self):
        return self.workers or os.cpu_count() or 1

    def plans(self):
        return [self._plan(d, get_dataset(d).local_run) for d in self.datasets]

    def _plan(self, dataset, defaults):
        return WorkPlan(
            dataset,
            self.networks or defaults.networks,
            self.networks_per_workunit,
            self.seed,
            self.max_epochs or defaults.max_epochs,
            self.epoch_budget or defaults.epoch_budget,
            self._tasks_of(dataset, defaults),
        )

    def _tasks_of(self, dataset, defaults):
        if not self.tasks:
            return defaults.tasks
        chosen = tuple(t for t in self.tasks if get_dataset(dataset).has_task(t))
        if not chosen:
            raise ValueError(f"{dataset} has none of the machines {', '.join(self.tasks)}")
        return chosen

    @property
    def store_root(self):
        return os.path.join(self.root, "store")

    @property
    def release_root(self):
        return os.path.join(self.root, "releases")


@dataclass
class RunStats:
    """Where the time went: training processes, training proper, validation, assimilation."""

    wall_seconds: float = 0.0
    train_process_seconds: float = 0.0
    training_seconds: float = 0.0  # inside the trainer (its result's wall_seconds), this run only
    validate_process_seconds: float = 0.0
    assimilate_seconds: float = 0.0
    workunits_trained: int = 0
    networks_stored: int = 0
    errors: list = field(default_factory=list)

    def to_dict(self):
        return dict(self.__dict__)


class Stopped(Exception):
    """Ctrl-C or SIGTERM: children checkpointed; running again continues."""


class Engine:
    def __init__(self, config, on_event=None):
        self.config = config
        self.work = WorkDirectory(config.root)
        self.stores = {d: DatasetStore(config.store_root, d) for d in config.datasets}
        self.stats = RunStats()
        self.running = []
        self.attempts = {}
        self.on_event = on_event or (lambda kind, name, detail: None)
        self._ingests = 0
        self._wall_at_start = {}  # workunit -> its networks' wall seconds when this run started training it
        self.releases = []
        self.stop_requested = False

    def create_work(self):
        """Create the first workunits of every plan (existing ones are kept)."""
        self.work.remove_temporaries()
        return sum(self.work.create(spec) for plan in self.config.plans() for spec in first_workunits(plan))

    def run(self):
        """Run until every workunit is assimilated; raises ``Stopped`` on Ctrl-C/SIGTERM.

        The signals only set a flag that the loop checks: a KeyboardInterrupt raised at an
        arbitrary point can be swallowed (Python ignores exceptions in fork hooks, which run
        while a child is started), and then the stop would be lost.
        """
        with hold_root(self.config.root):  # one run per root; ``mlds state pack`` waits for none
            started = time.monotonic()
            previous = {signum: signal.signal(signum, self._request_stop) for signum in STOP_SIGNALS}
            try:
                self.create_work()
                self._loop()
            finally:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
                self.stats.wall_seconds += time.monotonic() - started
                self.releases = self.finish_stores()
        return self.stats

    def _request_stop(self, signum, frame):
        self.stop_requested = True

    def _loop(self):
        while not self.stop_requested:
            self._assimilate_ready()
            self._start_jobs()
            if not self.running:
                return
            for job in self._wait_for_exits():
                self.running.remove(job)
                self._finished(job)
        slots.stop(self.running)
        self.running = []
        raise Stopped()

    def _names_in(self, *states):
        busy = {job.name for job in self.running}
        return [n for n in self.work.names() if n not in busy and self.work.state(n) in states]

    def _start_jobs(self):
        free = self.config.worker_count - len(self.running)
        validations = self._retryable(self._names_in(TRAINED))[:free]
        for name in validations:
            self.running.append(slots.start_validation(self.work, name))
        free -= len(validations)
        for name in self._retryable(self._names_in(CREATED))[: max(0, free)]:
            job = slots.start_training(self.config.root, self.work, name, 1, self.config.checkpoint_period)
            self._wall_at_start.setdefault(name, _resumed_wall_seconds(self.work, name, job.slot))
            self.running.append(job)

    def _retryable(self, names):
        return [n for n in names if self.attempts.get(n, 0) <= self.config.retries]

    def _wait_for_exits(self):
        """Block until at least one child exits (or a stop is requested); returns the finished jobs."""
        while not self.stop_requested:
            done = [job for job in self.running if job.process.poll() is not None]
            if done:
                return done
            _wait_readable([job.process.pid for job in self.running], timeout=0.5)
        return []

    def _finished(self, job):
        code = job.process.returncode
        if job.kind == "validate":
            self._validated(job, code)
        else:
            self._trained(job, code)

    def _trained(self, job, code):
        self.stats.train_process_seconds += job.elapsed()
        if code == 0:
            produced = os.path.join(job.slot, "result.h5")
            self.work.store_result(job.name, produced)
            slots.remove_slot(self.config.root, job.name)
            self.stats.workunits_trained += 1
            self.on_event("trained", job.name, "")
            return
        if code == EXIT_STOPPED_TRAINER:  # checkpointed on request (Ctrl-C reaches it too): resumes next run
            return
        self.attempts[job.name] = self.attempts.get(job.name, 0) + 1
        reason = f"trainer exited {code}: {slots.stderr_tail(job.slot)}"
        if self.attempts[job.name] > self.config.retries:
            self.stats.errors.append(f"{job.name}: {reason}")
        self.on_event("error", job.name, reason)

    def _validated(self, job, code):
        self.stats.validate_process_seconds += job.elapsed()
        reason = job.process.stderr.read().decode("utf-8", errors="replace").strip()
        job.process.stderr.close()
        verdict = VALIDATOR_VERDICTS.get(code)
        if verdict is None:  # transient (3) or a crash: validate again on the next pass
            self.attempts[job.name] = self.attempts.get(job.name, 0) + 1
            if self.attempts[job.name] > self.config.retries:
                self.stats.errors.append(f"{job.name}: validator exited {code}: {reason}")
            return
        self.work.record_verdict(job.name, verdict, reason)
        if verdict == INVALID:
            self.attempts[job.name] = self.attempts.get(job.name, 0) + 1
            if self.attempts[job.name] <= self.config.retries:
                self.work.retry(job.name)
            else:
                self.stats.errors.append(f"{job.name}: invalid result: {reason}")
            self.on_event("invalid", job.name, reason)

    def _assimilate_ready(self):
        for name in self._names_in(VALID):
            self.assimilate(name)

    def assimilate(self, name):
        """Store the finished networks of a valid result and create its follow-up (idempotent)."""
        started = time.monotonic()
        spec = self.work.spec(name)
        result = self.work.result_path(name)
        _, state, attrs = read_result(result, spec=spec)
        new = self.stores[spec.dataset].ingest(spec, state, attrs)
        follow = follow_up(spec, state)
        if follow is not None:
            self.work.create(follow, resume_source=result)
        self.work.mark_assimilated(name)
        self.stats.networks_stored += new
        if name in self._wall_at_start:  # trained in this run (only this run's share of it is counted)
            self.stats.training_seconds += state.wall_seconds - self._wall_at_start.pop(name)
        self.stats.assimilate_seconds += time.monotonic() - started
        self._ingests += 1
        if self._ingests % CONSOLIDATE_EVERY == 0:
            self.stores[spec.dataset].consolidate()
        self.on_event("assimilated", name, new)

    def finish_stores(self):
        """Consolidate every store and build the releases whose milestone is reached."""
        releases, plans = [], dict(zip(self.config.datasets, self.config.plans()))
        for dataset, store in self.stores.items():
            store.consolidate()
            header, columns = store.columns()
            if header is None:
                continue
            config = get_dataset(dataset)
            plan = plans[dataset]
            tasks = plan.task_names()
            milestones = tuple(m for m in (*config.milestones, plan.count) if m <= plan.count)
            for count in reached_milestones(columns, tasks, milestones):
                releases.append(build_release(store, tasks, count, self.config.release_root))
        return releases

    def pending(self):
        """Workunits not yet assimilated (0 when the run is complete)."""
        return [n for n in self.work.names() if self.work.state(n) != ASSIMILATED]


def _resumed_wall_seconds(work, name, slot):
    """Training time a trainer starts from: its slot checkpoint's (a stopped run resumed), else that
    of the result a follow-up resumed from, else 0."""
    checkpoint = os.path.join(slot, "result.h5.checkpoint")
    if os.path.exists(checkpoint):
        try:
            return _wall_seconds(checkpoint)
        except (OSError, KeyError):  # the trainer refuses such a checkpoint itself and says why
            pass
    spec = work.spec(name)
    return _wall_seconds(os.path.join(work.folder(name), spec.resume_from)) if spec.resume_from else 0.0


def _wall_seconds(path):
    with h5py.File(path, "r", locking=False) as f:
        return float(f.attrs["wall_seconds"])


def _wait_readable(pids, timeout):
    """Wait until one of the processes exits (pidfd where available) or ``timeout`` passes."""
    try:
        fds = [os.pidfd_open(pid) for pid in pids]
    except (AttributeError, OSError):
        time.sleep(min(timeout, 0.2))
        return
    try:
        select.select(fds, [], [], timeout)
    finally:
        for fd in fds:
            os.close(fd)
