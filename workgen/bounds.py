"""A workunit's resource estimates and bounds for ``create_work``, from the spec and measurements.

BOINC's client plans its work queue from ``rsc_fpops_est`` divided by the host's benchmarked speed
(Whetstone ``p_fpops``), and aborts a task that passes ``rsc_fpops_bound``, ``rsc_memory_bound``
(working set) or ``rsc_disk_bound`` (slot size). BOINC's defaults (3.6e12, 1e9 bytes) are wrong for
every mlds workunit, so each is derived here:

- ``rsc_fpops_est``: the analytic count of the workunit's budget (``boinc_app.flops``), scaled by
  how many Whetstone operations the host does in the time the trainer does one useful operation
  (``WHETSTONE_PER_USEFUL_FLOP``, measured), so that est / p_fpops is the runtime from the first
  task on, before BOINC's own runtime statistics have any history;
- ``rsc_fpops_bound``: ``FPOPS_BOUND_FACTOR`` times the estimate: a slow or busy host must not be
  aborted, a runaway task must;
- ``rsc_memory_bound``: twice the trainer's measured peak resident set for the dataset's kind;
- ``rsc_disk_bound``: what a slot holds at most: the spec, the checkpoint input, the trainer's own
  checkpoint and the result, each at most ``validator.checks.max_result_bytes``, plus the
  temporary copy of an atomic write, plus a margin.

The measurements (2-core VM, AMD EPYC, torch 2.13.0 CPU, 2026-12-01):
``mlds spec --dataset DS1 --machine EightBitMachine --networks 32 --max-epochs 2`` then
``/usr/bin/time -v mlds train``: peak RSS 684 MB, 370.7 GFLOP (``workunit_flops``) in 21.7 CPU-s,
17 useful GFLOP/s; the same for DS3 automaton 0, 8 networks, 1 epoch: 727 MB, 52 GFLOP/s.
``WHETSTONE_PER_USEFUL_FLOP`` is 0.3: BOINC's Whetstone benchmark of a current x86 core is about
5 GFLOPS (the client here would not run its benchmark unattached, so this is not measured on this
machine) over the 17 GFLOP/s above. BOINC corrects a wrong estimate itself once a host has
returned about ten results of an app version; this constant only sets the first tasks' estimate.
"""

from boinc_app.flops import workunit_flops
from validator.checks import max_result_bytes

PEAK_RSS_BYTES = {"device": 684e6, "automaton": 727e6}
MEMORY_BOUND_FACTOR = 2.0
FPOPS_BOUND_FACTOR = 20.0
DISK_MARGIN_BYTES = 64 << 20
# p_fpops (Whetstone, per core) / the trainer's useful FLOP/s per core; see the module docstring
WHETSTONE_PER_USEFUL_FLOP = 0.3


def workunit_bounds(spec, start_epoch=0):
    """``{create_work option: value}`` for one workunit."""
    estimate = workunit_flops(spec, start_epoch) * WHETSTONE_PER_USEFUL_FLOP
    kind = spec.task["kind"]
    return {
        "rsc_fpops_est": float(f"{estimate:.4g}"),
        "rsc_fpops_bound": float(f"{estimate * FPOPS_BOUND_FACTOR:.4g}"),
        "rsc_memory_bound": float(f"{PEAK_RSS_BYTES[kind] * MEMORY_BOUND_FACTOR:.4g}"),
        "rsc_disk_bound": float(5 * max_result_bytes(spec) + DISK_MARGIN_BYTES),
    }
