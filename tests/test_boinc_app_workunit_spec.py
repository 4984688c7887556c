import dataclasses
import json

import pytest

from boinc_app.workunit_spec import SpecError, read_spec, spec_from_dict, write_spec
from workgen.specs import make_spec, network_seeds, workunit_name


def test_spec_round_trips_through_its_file(tmp_path):
    spec = make_spec("DS2", "EightBitModified", networks=3, first_index=10, seed=4, max_epochs=50)
    write_spec(spec, tmp_path / "s.json")
    again = read_spec(tmp_path / "s.json")
    assert again == spec
    assert again.fingerprint() == spec.fingerprint()
    assert [n.init_seed for n in again.networks] == [network_seeds("DS2", "EightBitModified", 4, i).init_seed for i in (10, 11, 12)]
    assert again.name == "DS2-EightBitModified-n000010-k3-c0"


def test_spec_records_generator_seeds_sizes_and_recipe(tmp_path):
    document = make_spec("DS1", "ParityMachine").to_dict()
    assert document["format_version"] == 1 and document["spec_version"] >= 1
    assert document["data"]["generator"].startswith("pcg64")
    assert document["data"]["train_size"] == 4000 and document["data"]["validation_size"] == 1000 and document["data"]["length"] == 50
    assert document["recipe"]["learning_rate"] > 0
    assert document["convergence"]["accuracy"] == 0.999


def test_a_spec_written_before_the_restart_fields_keeps_its_fingerprint():
    spec = make_spec("DS3", "automaton-007")  # a recipe with the restart rule off
    document = spec.to_dict()
    assert "restart_patience" not in document["recipe"] and "restart_min_gain" not in document["recipe"]
    old = spec_from_dict(json.loads(json.dumps(document)))
    assert old.recipe.restart_patience == 0 and old.fingerprint() == spec.fingerprint()
    on = dataclasses.replace(spec, recipe=dataclasses.replace(spec.recipe, restart_patience=50, restart_min_gain=0.002))
    assert spec_from_dict(on.to_dict()).recipe == on.recipe


def test_ds1_and_ds2_share_training_data_seeds():
    ds1, ds2 = make_spec("DS1", "SimpleXORMachine"), make_spec("DS2", "SimpleXORModified")
    assert ds1.data == ds2.data
    assert make_spec("DS1", "ParityMachine").data != ds1.data


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format_version": 2}, "unknown spec format_version 2"),
        ({"spec_version": 99}, "unknown spec_version 99"),
        ({"format": "something-else"}, "not an mlds workunit spec"),
        ({"networks": []}, "no networks"),
        ({"epoch_budget": 0}, "at least 1"),
        ({"task": {"kind": "telepathy"}}, "unknown task kind"),
        ({"recipe": {"learning_rate": 0.1, "momentum": 0.9}}, "unknown recipe fields: momentum"),
    ],
)
def test_bad_specs_are_refused_with_the_reason(change, message):
    document = {**make_spec("DS1", "ParityMachine").to_dict(), **change}
    with pytest.raises(SpecError, match=message):
        spec_from_dict(document)


@pytest.mark.parametrize("payload, message", [(b"", "not JSON"), (b"\xff\xfe", "not JSON"), (b"[1, 2]", "not an mlds")])
def test_unreadable_spec_files_are_refused(tmp_path, payload, message):
    (tmp_path / "s.json").write_bytes(payload)
    with pytest.raises(SpecError, match=message):
        read_spec(tmp_path / "s.json")


def test_oversized_spec_is_refused_before_parsing(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"pad": "x" * (2 << 20)}))
    with pytest.raises(SpecError, match="larger than"):
        read_spec(tmp_path / "s.json")


def test_unknown_machine_names_the_known_ones():
    with pytest.raises(KeyError, match="SingleDirectMachine"):
        make_spec("DS1", "SingleDirectModified")


def test_workunit_names_are_deterministic_and_distinct():
    names = {workunit_name("DS1", "ParityMachine", i, 4, c) for i in (0, 4) for c in (0, 1)}
    assert len(names) == 4
    assert workunit_name("DS1", "ParityMachine", 4, 4, 1) == "DS1-ParityMachine-n000004-k4-c1"
