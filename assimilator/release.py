"""Dataset releases, as MLC@Home published them: ``MLDS-<dataset>-<N>.tar.gz`` plus ``.md5``.

A milestone N is reached when networks ``0 .. N-1`` of every task of the dataset are stored
(converged, or stopped at the epoch cap: the metadata says which). The release holds exactly those
networks, so ``MLDS-DS1-100`` has the same content whichever order results arrived in, and the
archive is byte-for-byte reproducible (fixed timestamps and owners in the tar and gzip headers, no
HDF5 object timestamps). Inside: ``MLDS-<dataset>-<N>/MLDS-<dataset>-<N>.h5`` (the store layout,
see ``assimilator.store``) and a ``README.md``. The ``.md5`` file is in ``md5sum`` format.
"""

import gzip
import hashlib
import io
import os
import tarfile
import tempfile

import numpy as np

import mlds
from assimilator.store import StoreError, copy_rows
from boinc_app.atomic_file import write_atomically

LICENSE = "CC BY-SA 4.0"


def release_name(dataset, count):
    return f"MLDS-{dataset}-{count}"


def reached_milestones(columns, tasks, milestones):
    """The milestones N for which every task in ``tasks`` has networks ``0 .. N-1`` stored;
    ``columns``: ``{task: {"index": ...}}`` (``DatasetStore.columns``)."""
    reached = []
    for count in sorted(set(milestones)):
        needed = set(range(count))
        if all(task in columns and needed <= set(columns[task]["index"].tolist()) for task in tasks):
            reached.append(count)
    return reached


def build_release(store, tasks, count, directory):
    """Write the release archive and its ``.md5`` (skipped when both exist); returns the archive path.

    Streams: the store is consolidated, networks ``0 .. count-1`` (its first ``count`` rows, the
    store being sorted by index) are copied in blocks into a temporary HDF5 file, which is then
    tarred and gzipped to disk; memory stays bounded by the store's ``block_bytes``."""
    name = release_name(store.dataset, count)
    archive = os.path.join(os.fspath(directory), f"{name}.tar.gz")
    checksum = f"{archive}.md5"
    if os.path.exists(archive) and os.path.exists(checksum):
        return archive
    store.consolidate()
    header, columns = store.columns()
    for task in tasks:
        if task not in columns or columns[task]["index"][:count].tolist() != list(range(count)):
            raise StoreError(f"{store.path}: {task} lacks some of networks 0..{count - 1}; no {name}")
    os.makedirs(directory, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=directory) as work:
        member = os.path.join(work, f"{name}.h5")
        copy_rows(member, header, {task: [(store.path, row) for row in range(count)] for task in tasks}, store.block_bytes)
        subset = {task: {k: v[:count] for k, v in columns[task].items()} for task in tasks}
        readme = release_readme(header, subset, count).encode()
        packed = os.path.join(work, f"{name}.tar.gz")
        _reproducible_tar_gz(packed, {f"{name}/{name}.h5": member, f"{name}/README.md": readme})
        digest = _md5_of(packed)
        os.replace(packed, archive)
    write_atomically(checksum, f"{digest}  {os.path.basename(archive)}\n".encode())
    return archive


def _reproducible_tar_gz(path, members):
    """A tar.gz at ``path`` of ``{name: bytes or file path}``: fixed mtime, owners and modes."""
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for member_name in sorted(members):
                content = members[member_name]
                info = tarfile.TarInfo(member_name)
                info.size = len(content) if isinstance(content, bytes) else os.path.getsize(content)
                info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = 0, 0o644, 0, 0, "", ""
                if isinstance(content, bytes):
                    tar.addfile(info, io.BytesIO(content))
                else:
                    with open(content, "rb") as handle:
                        tar.addfile(info, handle)
        gz.flush()
        raw.flush()
        os.fsync(raw.fileno())


def _md5_of(path):
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()


def release_readme(header, columns, count):
    """The release's README.md: contents, how to load, spec version, license, citation;
    ``columns``: ``{task: metadata columns}`` of the released networks."""
    name = release_name(header.dataset, count)
    rows = []
    for task, task_columns in sorted(columns.items()):
        networks, converged = len(task_columns["index"]), int(task_columns["converged"].sum())
        rows.append(f"| {task} | {networks} | {converged} | {networks - converged} | {int(np.median(task_columns['epochs']))} |")
    first = sorted(columns)[0]
    return "\n".join(
        [
            f"# {name}",
            "",
            f"{count} trained networks per task of the MLDS dataset {header.dataset} (networks 0 to {count - 1}),",
            f"built with mlds {mlds.__version__} under SPEC_VERSION {header.spec_version}. Each network was trained",
            "on its task's shared training set until it met the convergence rule or reached the epoch cap;",
            "the `converged` column says which. Only converged networks learned their task.",
            "",
            "| task | networks | converged | stopped at the cap | median epochs |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "## Contents",
            "",
            f"`{name}.h5` (HDF5): per task a group with `weights`, a float32 matrix [N, {header.n_params}] (one row",
            "per network: its `state_dict` tensors flattened in the order of the root attribute",
            "`parameter_layout` and concatenated), and `networks/<column>`, one metadata column per dataset",
            "(index, seeds, epochs, losses, accuracies, converged, status, workunit, provenance).",
            "`restarts` counts how often a stalled network was re-initialised (spec §4a, restart rule): all",
            "of it, or only its linear head, as the recipe's `restart_kinds` says; after a full restart its",
            "weights grew from a restart seed over the epochs after `last_restart_epoch`.",
            f"Network architecture (root attribute `architecture`): {header.architecture.to_dict()}.",
            "",
            "## Loading",
            "",
            "```python",
            "import mlds  # pip install mlds",
            f'dataset = mlds.load_dataset("{name}.tar.gz")  # reads the archive directly',
            f'table = dataset["{first}"]',
            "table.weights               # numpy [N, n_params]",
            'table.metadata["converged"]  # numpy [N]',
            "net = table.module(0)       # torch.nn.Module with network 0's weights",
            "```",
            "",
            "Without mlds: `h5py.File(...)[task]['weights'][()]` gives the same matrix.",
            "",
            "## Specification",
            "",
            "The machines, training data, networks, training recipe and convergence rule are those of",
            f"SPEC_VERSION {header.spec_version} in mlds's `docs/spec.md`; every training sequence can be",
            "regenerated from it bit for bit.",
            "",
            "## License",
            "",
            f"{LICENSE} (https://creativecommons.org/licenses/by-sa/4.0/).",
            "",
            "## How to cite",
            "",
            f"MLC@Home Machine Learning Dataset Generator, dataset {name} (mlds {mlds.__version__},",
            f"SPEC_VERSION {header.spec_version}). When using these datasets please cite: J. Clemens, \"MLDS: A",
            'Dataset for Weight-Space Analysis of Neural Networks\". The DS1/DS2 machines come from "Learning Device',
            'Models with Recurrent Neural Networks" (arXiv:1805.07869).',
            "",
        ]
    )
