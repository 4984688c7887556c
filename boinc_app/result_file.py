"""The result file (and checkpoint): HDF5, one group per network, never pickle.

Layout (``format_version`` 2; version 1 files, which lack ``restart_epochs``, are still read)::

    /                       attrs: format, format_version, spec_version, app_version,
                                   torch_version, platform, device, wu_name, dataset, task,
                                   spec (the workunit spec JSON), spec_sha256, complete,
                                   wall_seconds
    /networks/<key>/        attrs: init_seed, order_seed, epochs, start_epoch, status,
                                   converged, cpu_seconds, adam_step,
                                   restart_epochs (int64 [n]: epochs after which the
                                   restart rule re-initialised it; empty if never)
        <state_dict key>    float32 tensor, named exactly as in the reference module
        history/<field>     float64 [epochs]: train_loss, validation_loss, validation_accuracy,
                            post_trigger_accuracy, learning_rate
        adam/exp_avg/<key>, adam/exp_avg_sq/<key>   Adam moments, so training can continue

The same format serves as the trainer's checkpoint (``complete`` false) and as the uploaded result
(``complete`` true): one writer, one reader, one set of checks, and a result can seed a follow-up
workunit directly. Files are written atomically (temporary file, fsync, rename).

Reading treats the file as hostile: it must be an HDF5 file of a known format and version, every
object must be of the expected kind, every tensor must have the spec's name, shape and dtype, and
nothing may be missing or extra. Soft and external links, external raw storage and virtual datasets
are refused (they would read other files on the server), and the embedded spec must match
``spec_sha256``. Anything else raises ``ResultFileError`` with the reason.
"""

import json
import os
import platform
import sys

import h5py
import numpy as np
import torch

import mlds
from boinc_app.atomic_file import replace_atomically
from boinc_app.networks import expected_shapes
from boinc_app.training import CAPPED, CONVERGED, HISTORY_FIELDS, TRAINING, NetworkState, RunState
from boinc_app.workunit_spec import SpecError, spec_from_dict

RESULT_FORMAT = "mlds-result"
RESULT_FORMAT_VERSION = 2
READABLE_FORMAT_VERSIONS = (1, 2)  # 1: before restart_epochs
STATUSES = (TRAINING, CONVERGED, CAPPED)


class ResultFileError(ValueError):
    """A result or checkpoint file that cannot be used; the message says why."""


def device_name(device):
    """The GPU's name, or the CPU model (``/proc/cpuinfo`` on Linux)."""
    if str(device).startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_result(path, spec, state, complete, device="cpu"):
    """Write ``state`` of ``spec``'s networks to ``path`` atomically."""
    with replace_atomically(path) as temporary:
        with h5py.File(temporary, "w", track_order=True) as f:
            _write_root(f, spec, state, complete, device)
            networks = f.create_group("networks", track_order=True)
            for network in state.networks:
                _write_network(networks.create_group(network.key, track_order=True), network)


def _write_root(f, spec, state, complete, device):
    f.attrs.update(
        {
            "format": RESULT_FORMAT,
            "format_version": RESULT_FORMAT_VERSION,
            "spec_version": spec.spec_version,
            "app_version": mlds.__version__,
            "torch_version": str(torch.__version__),
            "python_version": sys.version.split()[0],
            "platform": f"{platform.system()}-{platform.machine()}",
            "device": device_name(device),
            "wu_name": spec.name,
            "dataset": spec.dataset,
            "task": spec.task_name,
            "spec": spec.to_json(),
            "spec_sha256": spec.fingerprint(),
            "complete": bool(complete),
            "wall_seconds": float(state.wall_seconds),
        }
    )


def _write_network(group, network):
    group.attrs.update(
        {
            "init_seed": network.init_seed,
            "order_seed": network.order_seed,
            "epochs": network.epochs,
            "start_epoch": network.start_epoch,
            "status": network.status,
            "converged": network.status == CONVERGED,
            "cpu_seconds": float(network.cpu_seconds),
            "adam_step": network.adam_step,
            "restart_epochs": np.asarray(network.restart_epochs, dtype=np.int64),
        }
    )
    for key, value in network.weights.items():
        group.create_dataset(key, data=np.asarray(value, dtype=np.float32))
    history = group.create_group("history", track_order=True)
    for name in HISTORY_FIELDS:
        history.create_dataset(name, data=np.asarray(network.history[name], dtype=np.float64))
    for moment in ("exp_avg", "exp_avg_sq"):
        moments = group.create_group(f"adam/{moment}", track_order=True)
        for key, value in getattr(network, moment).items():
            moments.create_dataset(key, data=np.asarray(value, dtype=np.float32))


def read_result(path, spec=None, max_bytes=None):
    """``(spec, RunState, attrs)`` from a result or checkpoint file.

    ``spec``: when given, the file must have been written for exactly this spec.
    ``max_bytes``: refuse larger files before opening them.
    Raises ``ResultFileError`` naming the first problem found.
    """
    try:
        return _read(path, spec, max_bytes)
    except ResultFileError:
        raise
    except (OSError, KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise ResultFileError(f"unreadable result file: {type(exc).__name__}: {exc}") from None


def _read(path, spec, max_bytes):
    size = os.path.getsize(path)
    if max_bytes is not None and size > max_bytes:
        raise ResultFileError(f"result file is {size} bytes, more than the limit of {max_bytes}")
    if not h5py.is_hdf5(path):
        raise ResultFileError("not an HDF5 file")
    with h5py.File(path, "r", locking=False) as f:
        attrs = {key: _plain(value) for key, value in f.attrs.items()}
        file_spec = _check_root(attrs)
        if spec is not None and attrs["spec_sha256"] != spec.fingerprint():
            raise ResultFileError(f"result was written for a different spec (workunit {attrs.get('wu_name')!r})")
        spec = spec or file_spec
        networks = _group(f, "networks")
        expected_keys = [n.key for n in spec.networks]
        if set(networks.keys()) != set(expected_keys):
            raise ResultFileError(f"the file's networks do not match the spec's {len(expected_keys)} networks")
        if set(f.keys()) != {"networks"}:
            raise ResultFileError(f"unexpected objects at the top level: {sorted(set(f.keys()) - {'networks'})}")
        shapes = expected_shapes(spec.architecture)
        version = attrs["format_version"]
        states = [_read_network(_group(networks, key), key, shapes, version) for key in expected_keys]
    state = RunState(spec_fingerprint=attrs["spec_sha256"], networks=states, wall_seconds=float(attrs["wall_seconds"]))
    return spec, state, attrs


def _plain(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check_root(attrs):
    if attrs.get("format") != RESULT_FORMAT:
        raise ResultFileError(f"not an mlds result file (format attribute {attrs.get('format')!r})")
    version = attrs.get("format_version")
    if isinstance(version, bool) or version not in READABLE_FORMAT_VERSIONS:
        raise ResultFileError(
            f"unknown result format_version {version!r}; this reader knows {READABLE_FORMAT_VERSIONS}"
        )
    for name in ("spec", "spec_sha256", "wall_seconds", "complete"):
        if name not in attrs:
            raise ResultFileError(f"result file lacks the {name!r} attribute")
    if not isinstance(attrs["spec"], str) or len(attrs["spec"]) > 1 << 20:
        raise ResultFileError("the embedded spec is not a JSON string of reasonable size")
    try:
        file_spec = spec_from_dict(json.loads(attrs["spec"]))
    except (json.JSONDecodeError, SpecError) as exc:
        raise ResultFileError(f"the embedded spec is invalid: {exc}") from None
    if file_spec.fingerprint() != attrs["spec_sha256"]:
        raise ResultFileError("the embedded spec does not match the file's spec_sha256")
    return file_spec


def _hard_link(parent, name, where):
    """Refuse soft and external links: following them would read other files on the server."""
    link = parent.get(name, getlink=True)
    if link is not None and not isinstance(link, h5py.HardLink):
        raise ResultFileError(f"{where} is a link ({type(link).__name__}), not a stored object")


def _group(parent, name):
    where = f"{parent.name.rstrip('/')}/{name}"
    _hard_link(parent, name, where)
    obj = parent.get(name)
    if not isinstance(obj, h5py.Group):
        raise ResultFileError(f"{where} is missing or not a group")
    return obj


def _read_network(group, key, shapes, version):
    expected = set(shapes) | {"history", "adam"}
    if set(group.keys()) != expected:
        missing, extra = sorted(expected - set(group.keys())), sorted(set(group.keys()) - expected)
        raise ResultFileError(f"network {key}: missing {missing}, unexpected {extra}")
    attrs = {name: _plain(value) for name, value in group.attrs.items()}
    status = attrs.get("status")
    if status not in STATUSES:
        raise ResultFileError(f"network {key}: unknown status {status!r}")
    if attrs.get("converged") is not (status == CONVERGED):
        raise ResultFileError(f"network {key}: converged flag {attrs.get('converged')!r} contradicts status {status!r}")
    epochs = _integer(attrs, "epochs", key)
    history_group = _group(group, "history")
    if set(history_group.keys()) != set(HISTORY_FIELDS):
        raise ResultFileError(f"network {key}: history must hold exactly {HISTORY_FIELDS}")
    history = {name: _tensor(history_group, name, (epochs,), np.float64, key).tolist() for name in HISTORY_FIELDS}
    adam = _group(group, "adam")
    if set(adam.keys()) != {"exp_avg", "exp_avg_sq"}:
        raise ResultFileError(f"network {key}: adam must hold exactly exp_avg and exp_avg_sq")
    moments = {}
    for moment in ("exp_avg", "exp_avg_sq"):
        moment_group = _group(adam, moment)
        if set(moment_group.keys()) != set(shapes):
            raise ResultFileError(f"network {key}: adam/{moment} does not hold the network's tensors")
        moments[moment] = {name: _tensor(moment_group, name, shape, np.float32, key) for name, shape in shapes.items()}
    return NetworkState(
        key=key,
        init_seed=_integer(attrs, "init_seed", key),
        order_seed=_integer(attrs, "order_seed", key),
        weights={name: _tensor(group, name, shape, np.float32, key) for name, shape in shapes.items()},
        exp_avg=moments["exp_avg"],
        exp_avg_sq=moments["exp_avg_sq"],
        adam_step=_integer(attrs, "adam_step", key),
        epochs=epochs,
        start_epoch=_integer(attrs, "start_epoch", key),
        status=status,
        cpu_seconds=float(attrs.get("cpu_seconds", 0.0)),
        history=history,
        restart_epochs=_restart_epochs(attrs, epochs, key) if version >= 2 else [],
    )


def _restart_epochs(attrs, epochs, key):
    """A strictly increasing list of epochs in ``1..epochs``."""
    value = attrs.get("restart_epochs")
    if not isinstance(value, np.ndarray) or value.ndim != 1 or value.dtype.kind not in "iu":
        raise ResultFileError(f"network {key}: attribute 'restart_epochs' must be a 1-D integer array")
    restarts = [int(v) for v in value]
    if any(not 1 <= v <= epochs for v in restarts) or any(b <= a for a, b in zip(restarts, restarts[1:])):
        raise ResultFileError(f"network {key}: restart_epochs {restarts} are not increasing epochs within 1..{epochs}")
    return restarts


def _integer(attrs, name, key):
    value = attrs.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ResultFileError(f"network {key}: attribute {name!r} must be a non-negative integer, not {value!r}")
    return value


def _tensor(group, name, shape, dtype, key):
    _hard_link(group, name, f"network {key}: {name}")
    obj = group.get(name)
    if not isinstance(obj, h5py.Dataset):
        raise ResultFileError(f"network {key}: {name} is missing or not a dataset")
    if obj.external or obj.is_virtual:
        raise ResultFileError(f"network {key}: {name} keeps its data outside the file")
    if tuple(obj.shape) != tuple(shape):
        raise ResultFileError(f"network {key}: {name} has shape {tuple(obj.shape)}, expected {tuple(shape)}")
    if obj.dtype != np.dtype(dtype):
        raise ResultFileError(f"network {key}: {name} has dtype {obj.dtype}, expected {np.dtype(dtype)}")
    return np.asarray(obj[()], dtype=dtype)
