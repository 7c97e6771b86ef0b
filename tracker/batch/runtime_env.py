"""The Ray `runtime_env` with which nodes that lack facetrack run its clips (`--runtime-env`).

The facetrack the driver runs (a development checkout included) goes to the nodes as a
`py_modules` package: Ray uploads it once per content, and each node unpacks it and puts
it on its workers' path, so a node runs exactly this version, with no package index
that has to carry it. Its dependencies go as `pip` requirements pinned to the versions
installed here; Ray installs them once per node into a virtualenv it caches (nothing to
download where they are installed already). The nodes need what Ray itself needs: the
driver's Python and Ray versions, and `virtualenv` for a `pip` runtime_env.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

SUBPACKAGES = ("tracker", "engines", "adapters", "training")
"""facetrack's top-level packages (pyproject's `packages`; tests/test_batch_cluster_units.py keeps them in step)."""
WORKER_EXTRAS = ("cloud",)
"""The extras the workers use when installed here: object storage for URL inputs and outputs."""


def pinned_requirements() -> list[str]:
    """facetrack's dependencies (and its installed WORKER_EXTRAS'), each pinned to the version installed here."""
    from packaging.requirements import Requirement  # Ray's own dependency

    pinned = set()
    for text in metadata.requires("facetrack") or []:
        requirement = Requirement(text)
        marker = requirement.marker
        if marker is not None and not any(marker.evaluate({"extra": extra}) for extra in WORKER_EXTRAS):
            continue
        with contextlib.suppress(metadata.PackageNotFoundError):  # an extra that is not installed here
            pinned.add(f"{requirement.name}=={metadata.version(requirement.name)}")
    return sorted(pinned)


def _copy_package(target: Path) -> None:
    """This facetrack's source tree (wherever it is installed from) into `target`, without byte code."""
    target.mkdir()
    for name in SUBPACKAGES:
        spec = importlib.util.find_spec(f"facetrack.{name}")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(f"facetrack.{name} is not importable here: reinstall facetrack")
        source = Path(next(iter(spec.submodule_search_locations)))
        shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


@contextlib.contextmanager
def facetrack_runtime_env() -> Iterator[dict[str, object]]:
    """The runtime_env (see the module docstring), valid until exit; Ray uploads it in `ray.init`."""
    with tempfile.TemporaryDirectory(prefix="facetrack-py-modules-") as root:
        package = Path(root) / "facetrack"
        _copy_package(package)
        yield {"py_modules": [str(package)], "pip": pinned_requirements()}
