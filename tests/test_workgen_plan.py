"""Planning workunits: deterministic unique names, packing, follow-ups, no duplicates."""

from boinc_app.training import CAPPED, CONVERGED, TRAINING, initial_state
from mlds.workdir import CREATED, WorkDirectory
from workgen.datasets import DATASETS
from workgen.plan import RESUME_NAME, WorkPlan, first_workunits, follow_up
from workgen.specs import network_seeds


def test_datasets_declare_milestones_budgets_and_rules_as_data():
    for name, config in DATASETS.items():
        assert config.milestones == (100, 500, 1000, 5000, 10000)
        assert 0 < config.epoch_budget <= config.max_epochs
        assert config.recipe.learning_rate > 0 and config.convergence.accuracy >= 0.99
    assert DATASETS["DS2"].convergence.require_post_trigger and not DATASETS["DS1"].convergence.require_post_trigger
    assert len(DATASETS["DS3"].tasks) == 100


def test_first_workunits_cover_every_network_once_with_unique_names():
    plan = WorkPlan("DS1", count=10, networks_per_workunit=4)
    specs = first_workunits(plan)
    assert len(specs) == 5 * 3  # five machines, 4 + 4 + 2 networks each
    names = [s.name for s in specs]
    assert len(set(names)) == len(names)
    assert names[:3] == ["DS1-SingleDirectMachine-n000000-k4-c0", "DS1-SingleDirectMachine-n000004-k4-c0",
                         "DS1-SingleDirectMachine-n000008-k2-c0"]  # fmt: skip
    parity = [s for s in specs if s.task["machine"] == "ParityMachine"]
    keys = [n.key for s in parity for n in s.networks]
    assert keys == [f"net-{i:06d}" for i in range(10)]
    assert [n.init_seed for s in parity for n in s.networks] == [network_seeds("DS1", "ParityMachine", 1, i).init_seed for i in range(10)]
    assert [s.name for s in first_workunits(plan)] == names  # deterministic


def test_ds3_tasks_are_named_by_automaton():
    specs = first_workunits(WorkPlan("DS3", count=1, tasks=("automaton-007",)))
    assert [s.name for s in specs] == ["DS3-automaton-007-n000000-k1-c0"]
    assert specs[0].task["index"] == 7


def test_follow_up_carries_the_unfinished_networks_forward():
    spec = first_workunits(WorkPlan("DS1", count=3, networks_per_workunit=3, max_epochs=30, epoch_budget=10))[0]
    state = initial_state(spec)
    state.networks[0].status = CONVERGED
    nxt = follow_up(spec, state)
    assert nxt.name == "DS1-SingleDirectMachine-n000000-k3-c1"
    assert nxt.resume_from == RESUME_NAME
    assert nxt.networks == spec.networks and nxt.recipe == spec.recipe and nxt.data == spec.data
    assert follow_up(nxt, state).name.endswith("-c2")
    for network in state.networks:
        network.status = CAPPED
    assert follow_up(spec, state) is None
    assert TRAINING not in {n.status for n in state.networks}


def test_creating_a_workunit_twice_keeps_one(tmp_path):
    work = WorkDirectory(tmp_path)
    spec = first_workunits(WorkPlan("DS1", count=1))[0]
    assert work.create(spec) is True
    assert work.create(spec) is False
    assert work.names() == [spec.name]
    assert work.state(spec.name) == CREATED
    assert work.spec(spec.name) == spec


def test_a_follow_up_folder_holds_its_checkpoint_before_it_appears(tmp_path, small_result):
    _, result_path = small_result
    work = WorkDirectory(tmp_path)
    spec = first_workunits(WorkPlan("DS1", count=2, networks_per_workunit=2))[0]
    state = initial_state(spec)
    nxt = follow_up(spec, state)
    assert work.create(nxt, resume_source=result_path)
    assert [p.rsplit("/", 1)[1] for p in work.input_paths(nxt.name)] == ["spec.json", RESUME_NAME]
    assert open(work.input_paths(nxt.name)[1], "rb").read() == open(result_path, "rb").read()
    (tmp_path / "work" / ".leftover.tmp-1").mkdir()
    work.remove_temporaries()
    assert work.names() == [nxt.name]
