"""The work generator daemon: keeps a BOINC app's queue between a low and a high water mark.

Each pass (``run_pass``) reads BOINC's database (``mlds.server.boinc_db``) and mlds's own records
(``mlds.server.state``) and creates, through ``bin/create_work``, in this order:

1. follow-ups the assimilator asked for (networks still training, continuing from the validated
   result the server kept), always, whatever the queue;
2. re-issues of workunits BOINC gave up on (``<name>-r<N>``, at most ``max_reissues`` times; the
   same networks, seeds and starting checkpoint);
3. when the unsent cushion is below ``low_water``, new first workunits up to ``high_water``, each
   for the task furthest from its next milestone (so all machines reach a release together).

Why nothing is lost or duplicated when the daemon is killed at any moment: the names are
deterministic (``workgen.specs``) and the set of names already in BOINC's database is read at the
start of every pass, so a name is never submitted twice; a spec is written before the workunit that
ships it and never rewritten; ``create_work --stdin`` inserts a batch in one statement; a record
(follow-up, failure) is removed only after its workunit is seen in the database.
"""

import dataclasses
import os
from dataclasses import dataclass, field

from boinc_app.workunit_spec import read_spec, write_spec
from mlds.server import boinc_db
from mlds.server.daemon import DaemonOptions
from mlds.server.state import ServerState, list_records, read_record, remove_if_present
from workgen.bounds import workunit_bounds
from workgen.datasets import get_dataset
from workgen.plan import WorkPlan
from workgen.specs import make_spec, parse_workunit_name
from workgen.templates import checkpoint_physical_name, input_template_name, output_template_name, spec_physical_name


@dataclass(frozen=True)
class GeneratorConfig:
    project: str
    app: str = "mlds_trainer"
    datasets: tuple = ("DS1",)
    networks: int = None  # per task; default: the dataset's largest milestone
    networks_per_workunit: int = None
    max_epochs: int = None
    epoch_budget: int = None
    seed: int = 1
    tasks: tuple = None  # default: every task of each dataset
    low_water: int = 20
    high_water: int = 40
    max_reissues: int = 3
    daemon: DaemonOptions = field(default_factory=DaemonOptions)

    def __post_init__(self):
        if not 0 <= self.low_water <= self.high_water:
            raise ValueError(f"water marks {self.low_water}/{self.high_water}: need 0 <= low <= high")

    def plans(self):
        return [self.plan(dataset) for dataset in self.datasets]

    def plan(self, dataset):
        config = get_dataset(dataset)
        tasks = tuple(t for t in config.task_names() if t in self.tasks) if self.tasks else None
        return WorkPlan(dataset, self.networks or max(config.milestones), self.networks_per_workunit, self.seed,
                        self.max_epochs, self.epoch_budget, tasks)  # fmt: skip


@dataclass(frozen=True)
class Job:
    """One workunit to create: its spec and the input files that ship with it."""

    name: str
    spec: object
    resume: bool
    kind: str  # "follow-up", "re-issue" or "new"
    record: str = None  # the record file to remove once the workunit exists


@dataclass
class PassReport:
    cushion: int = 0
    created: dict = field(default_factory=lambda: {"follow-up": 0, "re-issue": 0, "new": 0})
    abandoned: list = field(default_factory=list)

    def total(self):
        return sum(self.created.values())


def milestone_distance(issued, target, milestones):
    """Networks still to issue before the next milestone (the target counts as one)."""
    upcoming = [m for m in sorted(set(milestones) | {target}) if issued < m <= target]
    return upcoming[0] - issued if upcoming else 0


def issued_counts(plan, existing):
    """Per task: one past the highest network index any first workunit covers."""
    counts = {task: 0 for task in plan.task_names()}
    for name in existing:
        try:
            parts = parse_workunit_name(name)
        except ValueError:
            continue
        if parts.dataset == plan.dataset and parts.task in counts and parts.continuation == 0:
            counts[parts.task] = max(counts[parts.task], parts.first_index + parts.count)
    return counts


def new_jobs(config, existing, wanted):
    """Up to ``wanted`` new first workunits, each for the task furthest from its next milestone."""
    issued, plans = {}, {}
    for plan in config.plans():
        for task, count in issued_counts(plan, existing).items():
            if config.daemon.handles(f"{plan.dataset}-{task}"):
                issued[(plan.dataset, task)], plans[plan.dataset] = count, plan
    jobs = []
    while len(jobs) < wanted and issued:
        distances = {key: milestone_distance(count, plans[key[0]].count, get_dataset(key[0]).milestones) for key, count in issued.items()}
        key = max(distances, key=lambda k: (distances[k], -list(issued).index(k)))
        if distances[key] == 0:
            break
        plan, first = plans[key[0]], issued[key]
        spec = make_spec(plan.dataset, key[1], min(plan.workunit_size(), plan.count - first), first, plan.seed, plan.max_epochs, plan.epoch_budget)
        jobs.append(Job(spec.name, spec, False, "new"))
        issued[key] = first + len(spec.networks)
    return jobs


def followup_jobs(state, existing, config):
    """Follow-ups the assimilator recorded (``followups/<name>.json``; the spec is in ``specs/``)."""
    jobs = []
    for name in list_records(state.followups_dir):
        if not config.daemon.handles(_task_key(name)):
            continue
        record = state.followup_path(name)
        if name in existing:
            remove_if_present(record) if not config.daemon.dry_run else None
            continue
        jobs.append(Job(name, read_spec(state.spec_path(name)), True, "follow-up", record))
    return jobs


def reissue_jobs(state, existing, config, log):
    """Re-issues of failed workunits (``failed/<name>.json``), each at most ``max_reissues`` times."""
    jobs, abandoned = [], []
    for name in list_records(state.failed_dir):
        if not config.daemon.handles(_task_key(name)):
            continue
        record = state.failed_path(name)
        parts = parse_workunit_name(name)
        again = str(parts.reissued())
        if again in existing:
            remove_if_present(record) if not config.daemon.dry_run else None
            continue
        if parts.reissue >= config.max_reissues:
            abandoned.append(name)
            log.critical(f"{name}: failed {parts.reissue + 1} times ({read_record(record).get('reason', '?')}); "
                         f"not re-issued again, its networks are missing until an admin acts")  # fmt: skip
            continue
        spec = dataclasses.replace(read_spec(state.spec_path(name)), name=again)
        jobs.append(Job(again, spec, spec.resume_from is not None, "re-issue", record))
    return jobs, abandoned


def _task_key(name):
    parts = parse_workunit_name(name)
    return f"{parts.dataset}-{parts.task}"


def stage_inputs(state, job):
    """Write the job's spec (once) and link its inputs into ``staging/`` under their physical names."""
    spec_path = state.spec_path(job.name)
    if not os.path.exists(spec_path):
        write_spec(job.spec, spec_path)
    sources = {spec_physical_name(job.name): spec_path}
    if job.resume:
        sources[checkpoint_physical_name(job.name)] = state.checkpoint_path(parse_workunit_name(job.name).base)
    staged = []
    for physical, source in sources.items():
        link = os.path.join(state.staging_dir, physical)
        remove_if_present(link)
        os.link(source, link)
        staged.append(link)
    return staged


def submit(project_root, state, config, jobs, log):
    """Stage every job's inputs and create the workunits, one ``create_work`` call per set of bounds;
    returns create_work's output."""
    from workgen.boinc_tools import create_work, job_line, stage_files

    groups = {}
    for job in jobs:
        try:
            staged = stage_inputs(state, job)
        except OSError as exc:
            log.critical(f"{job.name}: cannot stage its inputs ({exc}); skipped this pass")
            continue
        stage_files(project_root, staged)
        start_epoch = parse_workunit_name(job.name).continuation * job.spec.epoch_budget
        bounds = workunit_bounds(job.spec, start_epoch)
        template = os.path.join("templates", input_template_name(config.app, job.resume))
        physical = [os.path.basename(path) for path in staged]
        groups.setdefault(tuple(sorted(bounds.items())), []).append(job_line(job.name, template, physical))
        for path in staged:
            remove_if_present(path)
    result_template = os.path.join("templates", output_template_name(config.app))
    return "".join(create_work(project_root, config.app, lines, dict(bounds), result_template) for bounds, lines in groups.items())


def run_pass(project, config, connection, log):
    """One pass of the work generator; returns a ``PassReport``."""
    state = ServerState(project.root)
    state.make_dirs()
    appid = boinc_db.app_id(connection, config.app)
    existing = set().union(*(boinc_db.workunit_names(connection, appid, f"{d}-") for d in config.datasets))
    report = PassReport(cushion=boinc_db.unsent_cushion(connection, appid))
    jobs = followup_jobs(state, existing, config)
    reissues, report.abandoned = reissue_jobs(state, existing, config, log)
    jobs += reissues
    if report.cushion < config.low_water:
        jobs += new_jobs(config, existing, max(0, config.high_water - report.cushion - len(jobs)))
    for job in jobs:
        log.debug(f"{'would create' if config.daemon.dry_run else 'creating'} {job.kind} {job.name}")
    if config.daemon.dry_run or not jobs:
        return report
    output = submit(project.root, state, config, jobs, log)
    created = boinc_db.existing_workunits(connection, appid, [job.name for job in jobs])
    for job in jobs:
        if job.name in created:
            report.created[job.kind] += 1
            if job.record:
                remove_if_present(job.record)
    missing = [job.name for job in jobs if job.name not in created]
    if missing:  # create_work --stdin can exit 0 having created nothing
        log.critical(f"create_work did not create {len(missing)} workunit(s) ({', '.join(missing[:3])}, ...): {output.strip()[-1000:]}")
    return report


def run_daemon(project, config, log, stop, connect=boinc_db.connect):
    """Passes until SIGHUP or ``stop_daemons`` (or one pass with ``--one_pass``)."""
    log.normal(f"Starting: app {config.app}, datasets {', '.join(config.datasets)}, "
               f"cushion {config.low_water}..{config.high_water}")  # fmt: skip
    from workgen.boinc_tools import BoincToolError

    connection = None
    try:
        while not stop.requested():
            try:
                connection = connection or connect(project.database)
                report = run_pass(project, config, connection, log)
            except (BoincToolError, boinc_db.DatabaseError) as exc:
                log.critical(str(exc))
                if config.daemon.one_pass:
                    raise
                connection = _close(connection) if isinstance(exc, boinc_db.DatabaseError) else connection
            else:
                made = ", ".join(f"{count} {kind}" for kind, count in report.created.items() if count) or "nothing"
                log.normal(f"cushion {report.cushion}: created {made}")
            if config.daemon.one_pass or stop.sleep(config.daemon.sleep_interval):
                break
    finally:
        _close(connection)
    log.normal("Quitting" + (" due to SIGHUP or stop_daemons" if stop.requested() else ""))


def _close(connection):
    if connection is not None:
        try:
            connection.close()
        except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is dropped either way
            pass
    return None
