"""The layout rules of docs/architecture.md, read from the source with `ast` (no import-linter needed).

Every `import` counts, also those inside functions and under `if TYPE_CHECKING:`: a lazy import is
still a dependency. The nodes are the top-level folders, with tracker/core (the shared vocabulary)
and tracker/cli (the composition root) apart from the rest of tracker/.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("tracker", "engines", "adapters", "training")
NOT_PACKAGED = ("adapters/clients", "adapters/blender")  # client code and a Blender add-on, shipped apart
MAX_LINES = 400


def _modules() -> Iterator[tuple[str, Path]]:
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if not rel.startswith(NOT_PACKAGED):
                yield "facetrack." + rel[:-3].replace("/", ".").removesuffix(".__init__"), path


@cache
def _imports() -> dict[str, set[str]]:
    """module -> the facetrack modules it imports anywhere in its body."""
    found: dict[str, set[str]] = {}
    for name, path in _modules():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.update(f"{node.module}.{a.name}" for a in node.names)
        found[name] = {t for t in targets if t.startswith("facetrack.")}
    return found


def node_of(module: str) -> str:
    """The layout node a dotted name belongs to."""
    parts = module.split(".")
    if parts[1] == "tracker" and len(parts) > 2 and parts[2] in ("core", "cli"):
        return f"tracker.{parts[2]}"
    return parts[1]


def _edges() -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = {}
    for module, targets in _imports().items():
        for target in targets:
            a, b = node_of(module), node_of(target)
            if a != b:
                edges.setdefault((a, b), []).append(f"{module} -> {target}")
    return edges


def test_the_import_walk_sees_the_known_edges() -> None:
    edges = _edges()
    assert ("tracker", "engines") in edges  # the pipeline runs the landmark engines
    assert ("adapters", "tracker.core") in edges  # sinks speak the schema
    assert ("tracker.cli", "adapters") in edges  # the CLI wires the sinks


def test_engines_import_only_tracker_core() -> None:
    bad = [e for (a, b), found in _edges().items() if a == "engines" and b != "tracker.core" for e in found]
    assert not bad, "engines/ may import only tracker/core of facetrack:\n" + "\n".join(sorted(bad))


def test_core_imports_nothing_of_ours() -> None:
    bad = [e for (a, _b), found in _edges().items() if a == "tracker.core" for e in found]
    assert not bad, "tracker/core imports nothing outside itself:\n" + "\n".join(sorted(bad))


def test_only_the_cli_imports_adapters_and_training() -> None:
    bad = [e for (a, b), found in _edges().items()
           if a in ("tracker", "tracker.core", "engines") and b in ("adapters", "training") for e in found]
    assert not bad, "only tracker/cli wires adapters/ and training/:\n" + "\n".join(sorted(bad))


def test_nothing_imports_the_cli() -> None:
    bad = [e for (a, b), found in _edges().items() if b == "tracker.cli" for e in found]
    assert not bad, "tracker/cli is the top of the graph:\n" + "\n".join(sorted(bad))


def test_no_cycles_between_folders() -> None:
    edges = _edges()
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = [f"{a} <-> {b}: {edges[(a, b)][0]}" for a, b in edges if reaches(b, a, {b})]
    assert not cycles, "cycles between folders:\n" + "\n".join(sorted(cycles))


def test_no_module_in_tracker_over_the_limit() -> None:
    long = {path.relative_to(ROOT).as_posix(): n for _name, path in _modules()
            if path.is_relative_to(ROOT / "tracker") and (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules in tracker/ over {MAX_LINES} lines: {long}"


def test_every_package_folder_is_in_the_wheel() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    folders = {"facetrack." + init.parent.relative_to(ROOT).as_posix().replace("/", ".")
               for folder in FOLDERS for init in (ROOT / folder).rglob("__init__.py")
               if not init.relative_to(ROOT).as_posix().startswith(NOT_PACKAGED)}
    assert folders, "no package folders found"
    assert folders <= listed, f"package folders missing from pyproject's packages: {sorted(folders - listed)}"
    stale = {p for p in listed if not (ROOT / setuptools["package-dir"].get(p, p.removeprefix("facetrack.")
                                                                             .replace(".", "/"))).is_dir()}
    assert not stale, f"listed packages with no folder: {sorted(stale)}"


def test_validating_a_config_loads_neither_pyav_nor_opencv() -> None:
    code = ("import sys; from facetrack.tracker.config import TrackerConfig; TrackerConfig(); "
            "print(sorted(m for m in ('av', 'cv2', 'mediapipe') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout


def test_no_import_cycles_between_the_modules_of_engines() -> None:
    """Lazy imports included: a function-level import that closes a loop still ties the two modules together."""
    imports = _imports()
    graph = {m: {t.rsplit(".", 1)[0] if t not in imports else t for t in targets} & imports.keys()
             for m, targets in imports.items() if m.startswith("facetrack.engines.")}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(module, ())):
            if nxt == path[0]:
                cycles.append(" -> ".join(path + [nxt]))
            elif nxt not in path and nxt in graph and nxt > path[0]:
                visit(nxt, path + [nxt])

    for start in sorted(graph):
        visit(start, [start])
    assert not cycles, "import cycles in engines/:\n" + "\n".join(cycles)
