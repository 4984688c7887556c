"""``plan_class_spec.xml`` fragments for the trainer's app versions (BOINC's ``sched/plan_class_spec.cpp``).

A plan class names an app version's resource needs; the scheduler sends an app version of plan
class C only to hosts that pass C's checks, and tells the client how many CPUs (``avg_ncpus``)
and GPUs the task uses. The client passes ``avg_ncpus`` to the app as ``ncpus`` in
``init_data.xml``; the trainer runs ``int(ncpus)`` torch threads (``boinc_app.init_data``), so a
multi-threaded CPU class (``max_threads`` > 1) is real parallelism, not a label.

- **CPU, multi-threaded** (``mt``): ``min_ncpus`` and ``max_threads`` (avg_ncpus is the host's
  usable CPUs capped at max_threads); ``mem_usage_base_mb`` + ``mem_usage_per_cpu_mb`` make
  the scheduler reserve memory per thread. An app version with no plan class is the 1-thread
  CPU version; keep one, for hosts where ``mt`` does not fit.
- **CUDA** (``gpu_type nvidia`` + ``cuda``): ``min_cuda_version`` is the *driver's* CUDA
  version as BOINC reports it (major * 1000 + minor * 10: 12060 is CUDA 12.6), which must be at
  least the version the torch wheel was built for; ``min_nvidia_compcap`` is major * 100 +
  minor (705: compute capability 7.5; ``cuda_prop.major * 100 + cuda_prop.minor``), the oldest architecture in the wheel's list
  (``torch.cuda.get_arch_list()``); ``min_gpu_ram_mb``/``gpu_ram_used_mb`` what a task needs.
- **AMD**: BOINC has no ROCm (HIP) detection. The client detects AMD GPUs through CAL/OpenCL
  only, so an AMD class is ``gpu_type amd`` + ``opencl`` (+ ``min_opencl_version``); a ROCm
  build of torch runs on hosts that pass that check, and the trainer must itself exit
  temporarily (``boinc_temporary_exit``) when torch sees no ROCm device.
"""

from dataclasses import dataclass, fields

from lxml import etree


@dataclass(frozen=True)
class PlanClass:
    """One ``<plan_class>``; fields left at None are not written (BOINC's defaults apply).
    Field names are the tags of ``PLAN_CLASS_SPEC::parse``; True writes ``<tag/>``-style 1."""

    name: str
    gpu_type: str = None
    cuda: bool = None
    opencl: bool = None
    min_ncpus: float = None
    max_threads: int = None
    mem_usage_base_mb: float = None
    mem_usage_per_cpu_mb: float = None
    min_cuda_version: int = None
    min_nvidia_compcap: int = None
    min_opencl_version: int = None
    min_gpu_ram_mb: float = None
    gpu_ram_used_mb: float = None
    ngpus: float = None
    cpu_frac: float = None
    projected_flops_scale: float = None

    def element(self):
        element = etree.Element("plan_class")
        for field in fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            child = etree.SubElement(element, field.name)
            child.text = "1" if value is True else "0" if value is False else _number(value)
        return element


def _number(value):
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# Measured on 2 cores (docs/packaging.md, "Threads"); the memory numbers from workgen/bounds.py's
# PEAK_RSS_BYTES (684 MB for a 32-network DS1 workunit), one thread adding little.
def cpu_mt(name="mt", max_threads=2, min_ncpus=2, mem_usage_base_mb=700, mem_usage_per_cpu_mb=50):
    return PlanClass(name, min_ncpus=min_ncpus, max_threads=max_threads, mem_usage_base_mb=mem_usage_base_mb,
                     mem_usage_per_cpu_mb=mem_usage_per_cpu_mb)  # fmt: skip


def cuda(name="cuda", min_cuda_version=12060, min_nvidia_compcap=705, min_gpu_ram_mb=1024, gpu_ram_used_mb=1024, cpu_frac=1.0):
    """Defaults for a torch cu126 wheel (driver >= CUDA 12.6; sm_75 and newer): set them from the
    wheel actually frozen (``torch.version.cuda``, ``torch.cuda.get_arch_list()``)."""
    return PlanClass(name, gpu_type="nvidia", cuda=True, min_cuda_version=min_cuda_version, min_nvidia_compcap=min_nvidia_compcap,
                     min_gpu_ram_mb=min_gpu_ram_mb, gpu_ram_used_mb=gpu_ram_used_mb, ngpus=1, cpu_frac=cpu_frac)  # fmt: skip


def amd_opencl(name="amd_rocm", min_opencl_version=200, min_gpu_ram_mb=1024, gpu_ram_used_mb=1024, cpu_frac=1.0):
    """AMD GPUs as BOINC sees them: through OpenCL (there is no ROCm detection)."""
    return PlanClass(name, gpu_type="amd", opencl=True, min_opencl_version=min_opencl_version, min_gpu_ram_mb=min_gpu_ram_mb,
                     gpu_ram_used_mb=gpu_ram_used_mb, ngpus=1, cpu_frac=cpu_frac)  # fmt: skip


KINDS = {"mt": cpu_mt, "cuda": cuda, "amd": amd_opencl}


def plan_classes_xml(classes):
    """A ``plan_class_spec.xml`` (``<plan_classes>`` root) with ``classes``; merge its
    ``<plan_class>`` elements into the project's file if it has one."""
    root = etree.Element("plan_classes")
    for plan_class in classes:
        root.append(plan_class.element())
    return etree.tostring(root, pretty_print=True, encoding="unicode")
