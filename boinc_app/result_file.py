"""The result file (and checkpoint): HDF5, one group per network, never pickle.

Layout (``format_version`` 4; versions 1 to 3 are still read)::

    /                       attrs: format, format_version, spec_version, app_version,
                                   torch_version, python_version, platform, device, wu_name,
                                   dataset, task, spec (the workunit spec JSON), spec_sha256,
                                   complete, wall_seconds
    /networks/<key>/        attrs: init_seed, order_seed, epochs, start_epoch, status,
                                   converged, cpu_seconds, adam_step,
                                   restart_epochs (int64 [n]: epochs after which the
                                   restart rule re-initialised it; empty if never),
                                   snapshot_epochs (int64 [S]: the spec's snapshot_epochs
                                   the network has reached)
        weights             float32 [P]: the network's tensors, each flattened and concatenated in
                            the reference module's state_dict order
                            (``boinc_app.networks.parameter_layout`` of the spec's architecture)
        exp_avg, exp_avg_sq float32 [P]: Adam's moments in the same order, so training can continue
        history             float64 [5, epochs]: rows train_loss, validation_loss,
                            validation_accuracy, post_trigger_accuracy, learning_rate
        snapshots           float32 [S, P]: the weights after each of snapshot_epochs

Versions 1 and 2 stored each tensor as its own dataset (``<key>/<tensor>``,
``adam/exp_avg/<tensor>``, ``history/<field>``): 77 datasets per DS1 network, 2,464 for a
32-network result, and reading them cost the validator 0.8 s per result in HDF5's per-object
overhead alone. Version 3 stores four datasets per network (the same layout a dataset store's
weight rows already use); version 4 adds ``snapshots``; version 1 lacks ``restart_epochs``.

The same format serves as the trainer's checkpoint (``complete`` false) and as the uploaded result
(``complete`` true): one writer, one reader, one set of checks, and a result can seed a follow-up
workunit directly. Files are written atomically (temporary file, fsync, rename).

Reading treats the file as hostile: it must be an HDF5 file of a known format and version, every
object must be of the expected kind, every tensor must have the spec's name, shape and dtype, and
nothing may be missing or extra. Soft and external links, external raw storage and virtual datasets
are refused (they would read other files on the server), and the embedded spec must match
``spec_sha256``. Anything else raises ``ResultFileError`` with the reason.

The cost of reading is bounded by the file's size, because nothing is read before its layout is
checked (``_HostileReader``): every object's header and attribute and link storage must be of an
honest size (listing attribute names reads their values), every attribute must have the one HDF5
type and dataspace the writer gives it (``ROOT_ATTRIBUTES``, ``NETWORK_ATTRIBUTES``), no other
attributes exist, every group links exactly the expected names by hard links, no object is linked
twice, and every dataset is contiguous, unfiltered, not resizable, of the exact dtype, with storage
of exactly its bytes inside the file. That refuses compression bombs (a 4 GiB gzip chunk fits in
4 MB), declared shapes with unallocated storage (read as fill values of any size), attribute bombs,
and nested or extra objects without descending into them. Variable-length strings are the one
thing whose size is known only on reading; their bytes live in the file (HDF5 refuses a file
shorter than its stored end of allocation), so they too are bounded by its size, then by
``MAX_STRING_CHARS``. A writer that adds an object or attribute must add it to the reader's
expected sets (and bump ``RESULT_FORMAT_VERSION``).
"""

import json
import os
import platform
import sys

import h5py
import numpy as np
import torch

from boinc_app.atomic_file import replace_atomically
from boinc_app.networks import flatten_tensors, parameter_layout, unflatten_tensors
from boinc_app.training import CAPPED, CONVERGED, HISTORY_FIELDS, TRAINING, NetworkState, RunState
from boinc_app.version import __version__
from boinc_app.workunit_spec import SpecError, spec_from_dict

RESULT_FORMAT = "mlds-result"
RESULT_FORMAT_VERSION = 4
READABLE_FORMAT_VERSIONS = (1, 2, 3, 4)  # 1: before restart_epochs; 1 and 2: a dataset per tensor; 4: snapshots
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
                _write_network(networks.create_group(network.key, track_order=True), network, spec.architecture)


def _write_root(f, spec, state, complete, device):
    f.attrs.update(
        {
            "format": RESULT_FORMAT,
            "format_version": RESULT_FORMAT_VERSION,
            "spec_version": spec.spec_version,
            "app_version": __version__,
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


def _write_network(group, network, spec_architecture):
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
            "snapshot_epochs": np.asarray(sorted(network.snapshots), dtype=np.int64),
        }
    )
    layout = parameter_layout(spec_architecture)
    for name in FLAT_TENSORS:
        group.create_dataset(name, data=flatten_tensors(getattr(network, name), layout))
    history = np.array([network.history[name] for name in HISTORY_FIELDS], dtype=np.float64)
    group.create_dataset("history", data=history.reshape(len(HISTORY_FIELDS), network.epochs))
    snapshots = [network.snapshots[epoch] for epoch in sorted(network.snapshots)]
    size = sum(int(np.prod(shape)) for _, shape in layout)
    group.create_dataset("snapshots", data=np.asarray(snapshots, dtype=np.float32).reshape(len(snapshots), size))


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


# -- reading: what an honest writer puts in a file, checked before any value is read -------------

# Attribute kinds: "str" a scalar variable-length UTF-8 string (h5py's ``str``), "int" a scalar
# little-endian int64, "float" a scalar little-endian float64, "bool" h5py's scalar boolean (enum
# FALSE/TRUE of int8), "int64[]" a 1-D little-endian int64 array (at most max_epochs long).
ROOT_ATTRIBUTES = {
    "format": "str", "format_version": "int", "spec_version": "int", "app_version": "str",
    "torch_version": "str", "python_version": "str", "platform": "str", "device": "str",
    "wu_name": "str", "dataset": "str", "task": "str", "spec": "str", "spec_sha256": "str",
    "complete": "bool", "wall_seconds": "float",
}  # fmt: skip
NETWORK_ATTRIBUTES = {
    1: {
        "init_seed": "int", "order_seed": "int", "epochs": "int", "start_epoch": "int", "status": "str",
        "converged": "bool", "cpu_seconds": "float", "adam_step": "int",
    },
}  # fmt: skip
NETWORK_ATTRIBUTES[2] = {**NETWORK_ATTRIBUTES[1], "restart_epochs": "int64[]"}
NETWORK_ATTRIBUTES[3] = NETWORK_ATTRIBUTES[2]
NETWORK_ATTRIBUTES[4] = {**NETWORK_ATTRIBUTES[3], "snapshot_epochs": "int64[]"}
MAX_SPEC_CHARS = 1 << 20  # the embedded spec JSON
MAX_STRING_CHARS = 1024  # every other string attribute (the validator bounds each more tightly)
SPARE_NAMES = 32  # a group or attribute set with more members than expected + this is not listed
# Bound on an object's header + attribute heap + link heap, checked before its attributes or links
# are listed: listing attribute names makes HDF5 read every attribute's value (twice, measured).
# Honest objects take at most 3.3 kB (a network group of the 32-network DS1 result).
METADATA_BASE_BYTES, METADATA_BYTES_PER_NAME = 64 << 10, 256
_LAYOUTS = {h5py.h5d.COMPACT: "compact", h5py.h5d.CONTIGUOUS: "contiguous", h5py.h5d.CHUNKED: "chunked",
            h5py.h5d.VIRTUAL: "virtual"}  # fmt: skip
MOMENTS = ("exp_avg", "exp_avg_sq")
FLAT_TENSORS = ("weights", *MOMENTS)  # format 3: one float32 [P] dataset each per network
_FIXED_TYPES = {"int": h5py.h5t.STD_I64LE, "float": h5py.h5t.IEEE_F64LE, "bool": h5py.h5t.py_create(np.dtype(bool))}


def _read(path, spec, max_bytes):
    size = os.path.getsize(path)
    if max_bytes is not None and size > max_bytes:
        raise ResultFileError(f"result file is {size} bytes, more than the limit of {max_bytes}")
    if not h5py.is_hdf5(path):
        raise ResultFileError("not an HDF5 file")
    with h5py.File(path, "r", locking=False) as f:
        reader = _HostileReader(size)
        attrs = reader.root_attributes(f)
        file_spec = _check_root(attrs)
        if spec is not None and attrs["spec_sha256"] != spec.fingerprint():
            raise ResultFileError(f"result was written for a different spec (workunit {attrs.get('wu_name')!r})")
        spec = spec or file_spec
        reader.members(f, {"networks"}, "the file's top level")
        networks = reader.group(f, "networks", [n.key for n in spec.networks], "/networks")
        states = [reader.network(networks, n.key, spec, attrs["format_version"]) for n in spec.networks]
    state = RunState(spec_fingerprint=attrs["spec_sha256"], networks=states, wall_seconds=attrs["wall_seconds"])
    return spec, state, attrs


def _check_root(attrs):
    try:
        file_spec = spec_from_dict(json.loads(attrs["spec"]))
    except (json.JSONDecodeError, SpecError) as exc:
        raise ResultFileError(f"the embedded spec is invalid: {exc}") from None
    if file_spec.fingerprint() != attrs["spec_sha256"]:
        raise ResultFileError("the embedded spec does not match the file's spec_sha256")
    return file_spec


def _attribute_kind(obj, name):
    """The kind of attribute ``name`` (as in ``ROOT_ATTRIBUTES``) from its type and dataspace
    alone, or a description of what it is instead; reads no value."""
    attr = h5py.h5a.open(obj.id, name.encode())
    htype, space = attr.get_type(), attr.get_space()
    extent = space.get_simple_extent_type()
    if htype.committed():
        return "a committed datatype"
    if extent == h5py.h5s.SCALAR:
        if isinstance(htype, h5py.h5t.TypeStringID) and htype.is_variable_str():
            return "str" if htype.get_cset() == h5py.h5t.CSET_UTF8 else "an ASCII string"
        kinds = [kind for kind, fixed in _FIXED_TYPES.items() if htype.equal(fixed)]
        return kinds[0] if kinds else f"a {_type_name(htype)} scalar"
    if extent == h5py.h5s.SIMPLE:
        dims = space.get_simple_extent_dims()
        if len(dims) == 1 and htype.equal(h5py.h5t.STD_I64LE):
            return "int64[]"
        return f"a {_type_name(htype)} array of shape {dims}"
    return "empty (a null dataspace)"


def _type_name(htype):
    try:
        return str(htype.dtype)
    except (TypeError, ValueError):
        return f"HDF5 class {htype.get_class()}"


class _OtherKind(str):
    """An attribute of another kind than expected, for a message: shown as what it is."""

    def __repr__(self):
        return f"<{self}>"


def _kind_words(kind):
    return {"str": "a UTF-8 string", "int": "an int64 scalar", "float": "a float64 scalar", "bool": "a boolean",
            "int64[]": "a 1-D int64 array"}.get(kind, kind)  # fmt: skip


class _HostileReader:
    """Opens each expected object of one file once, checking links, kinds, attributes and storage
    before reading a value, so that what is read is bounded by the file's size."""

    def __init__(self, file_size):
        self.file_size = file_size
        self.seen = {}  # object address -> where it was first met: an object is linked once

    def root_attributes(self, f):
        self.metadata(f, "the file", len(ROOT_ATTRIBUTES) + 1)
        names = self.attribute_names(f, ROOT_ATTRIBUTES, "the file")
        found = self.attribute(f, "format", "str", "the file", exact=False) if "format" in names else None
        if found != RESULT_FORMAT:
            raise ResultFileError(f"not an mlds result file (format attribute {found!r})")
        version = self.attribute(f, "format_version", "int", "the file", exact=False) if "format_version" in names else None
        if version not in READABLE_FORMAT_VERSIONS:
            known = READABLE_FORMAT_VERSIONS
            raise ResultFileError(f"unknown result format_version {version!r}; this reader knows {known}")
        _expect_names(names, ROOT_ATTRIBUTES, "the file", "attribute")
        return {name: self.attribute(f, name, kind, "the file") for name, kind in ROOT_ATTRIBUTES.items()}

    def metadata(self, obj, where, names):
        """Refuse an object whose header, attributes and links take more than honest ones with
        ``names`` links and attributes could, before anything lists or opens them."""
        info = h5py.h5o.get_info(obj.id)
        size = info.hdr.space.total + info.meta_size.attr.heap_size + info.meta_size.obj.heap_size
        limit = METADATA_BASE_BYTES + METADATA_BYTES_PER_NAME * names
        if size > limit:
            raise ResultFileError(f"{where} has {size} bytes of object header, attributes and links, more than {limit}")

    def attribute_names(self, obj, expected, where):
        count = h5py.h5o.get_info(obj.id).num_attrs
        if count > len(expected) + SPARE_NAMES:
            raise ResultFileError(f"{where} has {count} attributes, expected {len(expected)}")
        return set(obj.attrs.keys())

    def attribute(self, obj, name, kind, where, max_elements=0, exact=True):
        """The value of attribute ``name``, which must be of ``kind`` (``exact`` false: a value of
        another kind is returned as its kind's description, for a caller's own message)."""
        found = _attribute_kind(obj, name)
        if found != kind:
            if not exact:
                return _OtherKind(_kind_words(found))
            raise ResultFileError(f"{where}: attribute {name!r} must be {_kind_words(kind)}, not {_kind_words(found)}")
        if kind == "int64[]":
            length = h5py.h5a.open(obj.id, name.encode()).get_space().get_simple_extent_npoints()
            if length > max_elements:
                raise ResultFileError(f"{where}: attribute {name!r} holds {length} values, more than {max_elements}")
        value = obj.attrs[name]
        if kind == "str" and len(value) > (MAX_SPEC_CHARS if name == "spec" else MAX_STRING_CHARS):
            raise ResultFileError(f"{where}: attribute {name!r} is {len(value)} characters long")
        return {"int": int, "float": float, "bool": bool, "str": str}.get(kind, np.asarray)(value)

    def attributes(self, obj, expected, where, max_elements=0):
        _expect_names(self.attribute_names(obj, expected, where), expected, where, "attribute")
        return {name: self.attribute(obj, name, kind, where, max_elements) for name, kind in expected.items()}

    def members(self, group, expected, where):
        """``group`` links exactly the names ``expected``, each a hard link."""
        count = len(group)
        if count > len(expected) + SPARE_NAMES:
            raise ResultFileError(f"{where} holds {count} objects, expected {len(expected)}")
        _expect_names(set(group.keys()), expected, where, "object")
        for name in expected:
            link = group.get(name, getlink=True)
            if not isinstance(link, h5py.HardLink):
                raise ResultFileError(f"{where}: {name} is a link ({type(link).__name__}), not a stored object")

    def open(self, parent, name, kind, where, names=0):
        """The object ``name`` of ``parent`` (a member ``members`` checked), of type ``kind``, with
        metadata for at most ``names`` links and attributes, met once."""
        obj = parent.get(name)
        if not isinstance(obj, kind):
            raise ResultFileError(f"{where} is missing or not a {'group' if kind is h5py.Group else 'dataset'}")
        self.metadata(obj, where, names)
        address = h5py.h5o.get_info(obj.id).addr
        if address in self.seen:
            raise ResultFileError(f"{where} is the same stored object as {self.seen[address]}")
        self.seen[address] = where
        return obj

    def group(self, parent, name, members, where):
        """An attribute-less group linking exactly ``members``."""
        obj = self.open(parent, name, h5py.Group, where, names=len(members))
        self.no_attributes(obj, where)
        self.members(obj, set(members), where)
        return obj

    def no_attributes(self, obj, where):
        if h5py.h5o.get_info(obj.id).num_attrs:
            raise ResultFileError(f"{where} has attributes {sorted(obj.attrs.keys())[:SPARE_NAMES]}, expected none")

    def network(self, networks, key, spec, version):
        where = f"network {key}"
        layout = parameter_layout(spec.architecture)
        members = FLAT_TENSORS + ("history",) if version >= 3 else (*(k for k, _ in layout), "history", "adam")
        members += ("snapshots",) if version >= 4 else ()
        group = self.open(networks, key, h5py.Group, where, names=len(members) + len(NETWORK_ATTRIBUTES[version]))
        attrs = self.network_attributes(group, spec, version, where)
        self.members(group, set(members), where)
        read = self.flat_tensors if version >= 3 else self.tensors_per_dataset
        tensors, history = read(group, layout, attrs["epochs"], where)
        if version < 4 and any(e <= attrs["epochs"] for e in spec.snapshot_epochs):
            raise ResultFileError(f"{where}: format {version} holds no snapshots, but the spec asks for them")
        snapshots = self.snapshots(group, spec, attrs, layout, where) if version >= 4 else {}
        return NetworkState(
            key=key,
            init_seed=attrs["init_seed"],
            order_seed=attrs["order_seed"],
            weights=tensors["weights"],
            exp_avg=tensors["exp_avg"],
            exp_avg_sq=tensors["exp_avg_sq"],
            adam_step=attrs["adam_step"],
            epochs=attrs["epochs"],
            start_epoch=attrs["start_epoch"],
            status=attrs["status"],
            cpu_seconds=attrs["cpu_seconds"],
            history=history,
            restart_epochs=_restart_epochs(attrs, key) if version >= 2 else [],
            snapshots=snapshots,
        )

    def snapshots(self, group, spec, attrs, layout, where):
        """Format 4: the weights after each of the spec's snapshot epochs the network reached."""
        epochs = [int(e) for e in attrs["snapshot_epochs"]]
        expected = [e for e in spec.snapshot_epochs if e <= attrs["epochs"]]
        if epochs != expected:
            raise ResultFileError(f"{where}: snapshot_epochs {epochs[:SPARE_NAMES]}, expected {expected} (the spec's, up to its epochs)")
        size = sum(int(np.prod(shape)) for _, shape in layout)
        rows = self.tensor(group, "snapshots", (len(epochs), size), np.float32, f"{where}: snapshots")
        return dict(zip(epochs, rows))

    def flat_tensors(self, group, layout, epochs, where):
        """Format 3: weights and moments as flat vectors, split into views per tensor."""
        size = sum(int(np.prod(shape)) for _, shape in layout)
        flat = {name: self.tensor(group, name, (size,), np.float32, f"{where}: {name}") for name in FLAT_TENSORS}
        rows = self.tensor(group, "history", (len(HISTORY_FIELDS), epochs), np.float64, f"{where}: history")
        history = {name: rows[i].tolist() for i, name in enumerate(HISTORY_FIELDS)}
        return {name: unflatten_tensors(values, layout) for name, values in flat.items()}, history

    def tensors_per_dataset(self, group, layout, epochs, where):
        """Formats 1 and 2: a dataset per tensor, moment and history field."""
        shapes = dict(layout)
        history_group = self.group(group, "history", HISTORY_FIELDS, f"{where}: history")
        history_shapes = {name: (epochs,) for name in HISTORY_FIELDS}
        history = self.tensors(history_group, history_shapes, np.float64, f"{where}: history/")
        tensors = {"weights": self.tensors(group, shapes, np.float32, f"{where}: ")}
        adam = self.group(group, "adam", MOMENTS, f"{where}: adam")
        for moment in MOMENTS:
            moment_group = self.group(adam, moment, shapes, f"{where}: adam/{moment}")
            tensors[moment] = self.tensors(moment_group, shapes, np.float32, f"{where}: adam/{moment}/")
        return tensors, {name: values.tolist() for name, values in history.items()}

    def network_attributes(self, group, spec, version, where):
        """A network's attributes: integers non-negative, status known and epochs within the cap."""
        attrs = self.attributes(group, NETWORK_ATTRIBUTES[version], where, max_elements=spec.max_epochs)
        for name, kind in NETWORK_ATTRIBUTES[version].items():
            if kind == "int" and attrs[name] < 0:
                raise ResultFileError(f"{where}: attribute {name!r} must be a non-negative integer, not {attrs[name]!r}")
        status = attrs["status"]
        if status not in STATUSES:
            raise ResultFileError(f"{where}: unknown status {status!r}")
        if attrs["converged"] is not (status == CONVERGED):
            raise ResultFileError(f"{where}: converged flag {attrs['converged']!r} contradicts status {status!r}")
        if attrs["epochs"] > spec.max_epochs:
            raise ResultFileError(f"{where}: {attrs['epochs']} epochs, more than the spec's max_epochs {spec.max_epochs}")
        return attrs

    def tensors(self, group, shapes, dtype, prefix):
        return {name: self.tensor(group, name, shape, dtype, f"{prefix}{name}") for name, shape in shapes.items()}

    def tensor(self, group, name, shape, dtype, where):
        """The dataset ``name`` of ``group`` as a numpy array, after ``_check_storage``."""
        obj = self.open(group, name, h5py.Dataset, where)
        self.no_attributes(obj, where)
        _check_storage(obj, tuple(shape), np.dtype(dtype), where, self.file_size)
        values = np.empty(shape, dtype=dtype)
        if values.size:
            obj.read_direct(values)
        return values


def _expect_names(names, expected, where, what):
    missing, extra = sorted(set(expected) - names), sorted(names - set(expected))
    if what == "attribute" and missing:
        raise ResultFileError(f"{where} lacks the {missing[0]!r} attribute")
    if what == "attribute" and extra:
        raise ResultFileError(f"{where} has unexpected attributes {extra[:SPARE_NAMES]}")
    if missing or extra:
        parts = [f"missing {missing[:SPARE_NAMES]}" if missing else "", f"unexpected {extra[:SPARE_NAMES]}" if extra else ""]
        raise ResultFileError(f"{where}: {', '.join(p for p in parts if p)}")


def _check_storage(obj, shape, dtype, where, file_size):
    """Refuse, before reading, what the trainer never writes: data outside the file, any layout
    but contiguous, filters (a compressed chunk can inflate a small file a thousandfold),
    resizable or other shapes and dtypes, committed types, and storage that does not hold exactly
    the tensor's bytes inside the file (unallocated storage reads as fill values of any size)."""
    plist = obj.id.get_create_plist()
    if plist.get_external_count() or obj.is_virtual:
        raise ResultFileError(f"{where} keeps its data outside the file")
    filters = [_filter_name(plist.get_filter(i)) for i in range(plist.get_nfilters())]
    layout = plist.get_layout()
    if filters or layout != h5py.h5d.CONTIGUOUS:
        with_filters = f" with filters {filters}" if filters else ""
        stored = f"{_LAYOUTS.get(layout, layout)}{with_filters}"
        raise ResultFileError(f"{where} is stored {stored}; results are contiguous and unfiltered")
    if tuple(obj.shape) != shape:
        raise ResultFileError(f"{where} has shape {tuple(obj.shape)}, expected {shape}")
    if obj.maxshape != obj.shape:
        raise ResultFileError(f"{where} is resizable (maxshape {obj.maxshape})")
    if obj.id.get_type().committed():
        raise ResultFileError(f"{where} has a committed (named, shared) datatype; results store plain {dtype}")
    if obj.dtype != dtype:
        raise ResultFileError(f"{where} has dtype {obj.dtype}, expected {dtype}")
    nbytes = int(np.prod(shape)) * dtype.itemsize
    stored, offset = obj.id.get_storage_size(), obj.id.get_offset()
    if stored != nbytes or (nbytes and (offset is None or offset + nbytes > file_size)):
        raise ResultFileError(
            f"{where} stores {stored} bytes at offset {offset} for {nbytes} bytes of data in a {file_size}-byte file"
        )


def _filter_name(info):
    code, _flags, _values, name = info
    return name.decode("ascii", "replace") if isinstance(name, bytes) and name else str(code)


def _restart_epochs(attrs, key):
    """A strictly increasing list of epochs in ``1..epochs``."""
    epochs = attrs["epochs"]
    restarts = [int(v) for v in attrs["restart_epochs"]]
    if any(not 1 <= v <= epochs for v in restarts) or any(b <= a for a, b in zip(restarts, restarts[1:])):
        raise ResultFileError(f"network {key}: restart_epochs {restarts} are not increasing epochs within 1..{epochs}")
    return restarts
