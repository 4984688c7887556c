"""The researcher's loader: a dataset file or release in, weight matrices and metadata out.

    import mlds
    dataset = mlds.load_dataset("MLDS-DS1-100.tar.gz")     # or a store's DS1.h5
    parity = dataset["ParityMachine"]
    parity.weights            # float32 [N, 4364], one row per network
    parity.metadata["converged"], parity.metadata["epochs"]   # numpy columns, one row per network
    net = parity.module(0)    # a torch.nn.Module with row 0's weights, ready to run
    parity.snapshot_epochs    # e.g. (1, 2, 5, 10, ...): epochs after which weights were kept
    parity.weights_at(2)      # float32 [N, 4364]: every network after epoch 2 (NaN rows: it had stopped)
    parity.history_at(2)["validation_loss"]   # float64 [N]: the losses after epoch 2 (NaN likewise)

A release is read straight from its ``.tar.gz`` (the HDF5 member is opened in memory, nothing is
extracted). Files are opened read-only and checked as the store checks them; unknown format
versions are refused.
"""

import io
import os
import tarfile
from dataclasses import dataclass

import numpy as np

from assimilator.store import StoreError, read_store_file
from boinc_app.networks import unflatten_tensors
from boinc_app.training import HISTORY_FIELDS


@dataclass
class TaskNetworks:
    """All networks of one machine (or automaton) in a dataset."""

    name: str
    weights: np.ndarray  # float32 [N, n_params]
    metadata: dict  # column name -> numpy array [N]
    layout: list  # [(state_dict key, shape)], the order of a row's parameters
    architecture: object
    snapshots: np.ndarray  # float32 [N, S, n_params]; NaN where a network stopped before the epoch
    snapshot_epochs: tuple  # the S epochs
    snapshot_history: np.ndarray = None  # float64 [N, S, len(HISTORY_FIELDS)]; NaN likewise (and in files before store format 4)

    def weights_at(self, epoch):
        """``[N, n_params]``: each network's weights after ``epoch`` (a snapshot epoch), NaN rows
        for networks that stopped training before it. Compare networks at equal training with
        the rows that are not NaN."""
        return self.snapshots[:, self._snapshot_position(epoch)]

    def history_at(self, epoch):
        """``{field: [N]}`` for each of ``HISTORY_FIELDS`` (losses, accuracies, learning rate)
        after ``epoch`` (a snapshot epoch); NaN for networks that stopped before it, and for every
        network of a file written before store format 4, which did not keep it."""
        rows = self.snapshot_history[:, self._snapshot_position(epoch)]
        return {name: rows[:, i] for i, name in enumerate(HISTORY_FIELDS)}

    def _snapshot_position(self, epoch):
        if epoch not in self.snapshot_epochs:
            raise KeyError(f"{self.name} keeps weights after epochs {list(self.snapshot_epochs)}, not {epoch}")
        return self.snapshot_epochs.index(epoch)

    def __len__(self):
        return self.weights.shape[0]

    def state_dict(self, row):
        """Row ``row`` as ``{state_dict key: torch tensor}``."""
        import torch

        return {key: torch.from_numpy(value) for key, value in unflatten_tensors(self.weights[row], self.layout).items()}

    def module(self, row):
        """A ``boinc_app.networks.RecurrentNet`` holding row ``row``'s weights (eval mode)."""
        from boinc_app.networks import RecurrentNet

        net = RecurrentNet(self.architecture)
        net.load_state_dict(self.state_dict(row))
        return net.eval()


@dataclass
class Dataset:
    name: str
    spec_version: int
    tasks: dict  # task name -> TaskNetworks

    def __getitem__(self, task):
        try:
            return self.tasks[task]
        except KeyError:
            raise KeyError(f"{self.name} has no {task!r}; it has {', '.join(self.tasks)}") from None

    def __iter__(self):
        return iter(self.tasks)

    def __len__(self):
        return len(self.tasks)


def load_dataset(path):
    """A ``Dataset`` from a store file (``.h5``) or a release (``.tar.gz``)."""
    path = os.fspath(path)
    if tarfile.is_tarfile(path):
        source = io.BytesIO(_release_member(path))
    else:
        source = path
    header, tables = read_store_file(source)
    tasks = {
        task: TaskNetworks(
            task, table.weights, table.columns, header.layout, header.architecture, table.snapshots, header.snapshot_epochs,
            table.snapshot_history,
        )
        for task, table in tables.items()
    }
    return Dataset(header.dataset, header.spec_version, tasks)


def _release_member(path):
    with tarfile.open(path, "r:*") as archive:
        members = [m for m in archive.getmembers() if m.isfile() and m.name.endswith(".h5")]
        if len(members) != 1:
            raise StoreError(f"{path}: a release holds exactly one .h5 file, this one has {len(members)}")
        return archive.extractfile(members[0]).read()
