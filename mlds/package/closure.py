"""Which installed packages the frozen trainer may carry: the closure of its runtime requirements.

Why: PyInstaller follows every import it can resolve, optional ones included, and the torch hook
collects every torch submodule, many of which import optional packages (``sympy`` reaches lxml
for MathML, ``torch.utils.tensorboard`` PIL and matplotlib, others scipy and numba). Frozen from an
environment that also holds the analysis extra, as CI's and a developer's do, the bundle grew from
652 to 979 MB unpacked, 217 to 350 MB zipped (llvmlite 171 MB, scipy 48, matplotlib, PIL), though the trainer imports none
of them. A volunteer's download must not depend on what else the builder installed, so every
top-level module of a distribution outside the closure of the trainer's requirements is excluded:
any environment freezes like a clean one with CPU torch.

The project's own distribution is never excluded: ``boinc_app`` and ``machines`` are the trainer,
and server packages must stay merely unreached, so that ``mlds.package.contents`` can catch an
import of them (an exclusion would hide it and break the app at run time instead).
"""

import importlib.metadata
import re

from packaging.requirements import Requirement

# what the trainer (boinc_app, machines) imports outside the standard library
TRAINER_REQUIREMENTS = ("torch", "numpy", "h5py", "click")
PROJECT_DISTRIBUTION = "mlds"


def canonical(name):
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_closure(roots=TRAINER_REQUIREMENTS):
    """Canonical names of ``roots`` and every installed distribution they require (no extras),
    on this platform."""
    seen, frontier = set(), [canonical(r) for r in roots]
    while frontier:
        name = frontier.pop()
        if name in seen:
            continue
        try:
            requires = importlib.metadata.distribution(name).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue  # an optional platform dependency that is not installed
        seen.add(name)
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                frontier.append(canonical(requirement.name))
    return seen


def foreign_modules(roots=TRAINER_REQUIREMENTS):
    """Sorted top-level module names of installed distributions outside the closure of ``roots``
    (the project's own excepted): what ``mlds package build`` excludes."""
    keep = requirement_closure(roots) | {PROJECT_DISTRIBUTION}
    foreign = set()
    for module, distributions in importlib.metadata.packages_distributions().items():
        if not any(canonical(d) in keep for d in distributions) and module.isidentifier():
            foreign.add(module)
    return tuple(sorted(foreign))
