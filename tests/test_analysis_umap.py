"""``mlds analyze umap`` writes a PNG of the expected size per feature set (mlds.analysis.projection)."""

import struct

import numpy as np
import pytest
from click.testing import CliRunner

from mlds.analysis.projection import DPI, FIGURE_INCHES, load_points, machine_of
from mlds.analysis.synthetic import SyntheticConfig, write_synthetic


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def test_the_caption_names_each_file_and_its_md5(tmp_path):
    paths = write_synthetic(tmp_path, SyntheticConfig(machines=("SingleDirect", "Parity"), networks=5))
    points = load_points(paths)
    assert len(points.weights) == 20 and sorted(set(points.datasets)) == ["DS1", "DS2"]
    assert "DS1.h5 (md5 " in points.caption and "DS2.h5 (md5 " in points.caption
    assert {machine_of(t) for t in points.tasks} == {"SingleDirect", "Parity"}


@pytest.mark.slow  # umap-learn's first call compiles with numba: ~30 s
def test_umap_writes_one_png_per_feature_set_of_the_figure_size(tmp_path):
    from mlds.cli import main

    paths = write_synthetic(tmp_path, SyntheticConfig(machines=("SingleDirect", "Parity"), networks=15, shift=0.5))
    out = tmp_path / "figures"
    result = CliRunner().invoke(main, ["analyze", "umap", *paths, "--out", str(out), "--features", "raw,invariant"])
    assert result.exit_code == 0, result.output
    expected = (round(FIGURE_INCHES[0] * DPI), round(FIGURE_INCHES[1] * DPI))
    for name in ("umap-raw.png", "umap-invariant.png"):
        assert png_size(out / name) == expected
        assert str(out / name) in result.output


def test_at_an_epoch_the_points_are_the_snapshots_of_the_networks_that_trained_that_long(tmp_path):
    import mlds

    paths = write_synthetic(tmp_path, SyntheticConfig(machines=("SingleDirect",), networks=20, snapshot_epochs=(1, 4), seed=3))
    points = load_points(paths, epoch=4)
    expected = []
    for path, task in zip(paths, ("SingleDirectMachine", "SingleDirectModified")):
        table = mlds.load_dataset(path)[task]
        keep = table.metadata["converged"] & (table.metadata["epochs"] >= 4)
        expected.append(table.weights_at(4)[keep])
    assert (points.weights == np.concatenate(expected)).all() and len(points.weights) < 40
    with pytest.raises(KeyError, match="not 3"):
        load_points(paths, epoch=3)
