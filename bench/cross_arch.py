"""The same training on two CPU architectures: how far apart do the results land?

Nobody has published this for MLDS, and the validator's spot check must allow it: a volunteer's
aarch64 result is re-executed on the server's amd64 CPU. ``packaging/aarch64-qemu.sh`` trains a
small spec with the frozen aarch64 trainer under qemu-user; this script writes that spec, trains
the same spec on this machine from source, validates the aarch64 result with ``mlds validate``
(spot check included) and prints per network the relative L2 difference of the weights and the
largest differences of the per-epoch history.

    python bench/cross_arch.py spec smoke-spec.json
    python bench/cross_arch.py compare smoke-spec.json result-aarch64.h5 --amd64-result result-amd64.h5
    python bench/cross_arch.py follow-up DIR      # DIR/first.h5 trained here, DIR/second.json resumes it
    python bench/cross_arch.py compare DIR/second.json aarch64-second.h5 --amd64-result DIR/second.h5 --resume DIR/first.h5

The follow-up pair separates the two sources of difference: ``torch.manual_seed`` and PyTorch's
initialisers give other initial weights on aarch64 than on amd64, so a fresh spec differs from
its first step; a follow-up workunit resumes both architectures from the same state (one epoch
trained here), so what differs after it is the training kernels alone.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from boinc_app.result_file import read_result  # noqa: E402
from boinc_app.training import HISTORY_FIELDS  # noqa: E402
from boinc_app.workunit_spec import write_spec  # noqa: E402
from workgen.plan import RESUME_NAME, follow_up  # noqa: E402
from workgen.specs import make_spec, with_data  # noqa: E402

# small enough for an emulated CPU (qemu-user runs numeric code tens of times slower)
SMOKE_SPEC = dict(dataset="DS1", task_name="SingleInvertMachine", networks=2, seed=5, max_epochs=2)
SMOKE_TRAIN_SIZE = 1000


def smoke_spec(**changes):
    return with_data(make_spec(**{**SMOKE_SPEC, **changes}), train_size=SMOKE_TRAIN_SIZE)


def relative_l2(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def differences(first, second):
    """Per network: weights relative L2, and per history field the largest absolute difference."""
    rows = []
    for x, y in zip(first.networks, second.networks):
        weights = relative_l2(np.concatenate([x.weights[k].ravel() for k in sorted(x.weights)]),
                              np.concatenate([y.weights[k].ravel() for k in sorted(y.weights)]))  # fmt: skip
        history = {f: float(np.max(np.abs(np.subtract(x.history[f], y.history[f])))) for f in HISTORY_FIELDS}
        bitwise = all(np.array_equal(x.weights[k], y.weights[k]) for k in x.weights)
        rows.append({"network": x.key, "epochs": (x.epochs, y.epochs), "weights_rel_l2": weights, "bitwise": bitwise, **history})
    return rows


@click.group()
def main():
    pass


@main.command()
@click.argument("path", type=click.Path(dir_okay=False))
def spec(path):
    """Write the smoke spec (DS1 SingleInvert, 2 networks, 2 epochs, 1,000 sequences)."""
    write_spec(smoke_spec(), path)
    click.echo(f"wrote {path}")


@main.command("follow-up")
@click.argument("directory", type=click.Path(file_okay=False))
def follow_up_pair(directory):
    """Train the smoke spec's first epoch here (DIR/first.json -> first.h5), write the follow-up
    that resumes it (DIR/second.json, with DIR/checkpoint.h5 its input) and train it here too
    (DIR/second.h5)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    first = smoke_spec(max_epochs=3, epoch_budget=1)
    write_spec(first, out / "first.json")
    subprocess.run([sys.executable, "-m", "boinc_app.main", "first.json", "-o", "first.h5"], cwd=out, check=True)
    write_spec(follow_up(first, read_result(out / "first.h5")[1]), out / "second.json")
    shutil.copy(out / "first.h5", out / RESUME_NAME)
    subprocess.run([sys.executable, "-m", "boinc_app.main", "second.json", "-o", "second.h5"], cwd=out, check=True)
    click.echo(f"wrote {out}/first.h5, second.json, {RESUME_NAME}, second.h5")


@main.command()
@click.argument("spec_path", type=click.Path(exists=True, dir_okay=False))
@click.argument("other_result", type=click.Path(exists=True, dir_okay=False))
@click.option("--amd64-result", required=True, type=click.Path(dir_okay=False), help="trained here from source if missing")
@click.option("--resume", "resume_path", type=click.Path(exists=True, dir_okay=False), help="a follow-up's previous result")
def compare(spec_path, other_result, amd64_result, resume_path):
    """Validate OTHER_RESULT here and print how far it lies from this machine's training."""
    if not Path(amd64_result).exists():
        subprocess.run([sys.executable, "-m", "boinc_app.main", spec_path, "-o", amd64_result], check=True)
    resume = ["--resume", resume_path] if resume_path else []
    verdict = subprocess.run([sys.executable, "-m", "mlds.cli", "validate", spec_path, other_result, *resume], capture_output=True, text=True)
    click.echo(f"mlds validate (exit {verdict.returncode}): {verdict.stderr.strip()}")
    (_, other, attrs), (_, here, _) = read_result(other_result), read_result(amd64_result)
    click.echo(f"other result: torch {attrs.get('torch_version')}, {attrs.get('platform')}, {attrs.get('device')}")
    for row in differences(other, here):
        click.echo(" ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
