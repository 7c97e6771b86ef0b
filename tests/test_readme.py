"""The README's commands work as written.

Every ```bash and ```python block after the first is marked `<!-- docs-test: runs -->` or
`<!-- docs-test: skip (REASON) -->` on the line before it. The runnable ones are run here, in a
folder that holds what the README's first command leaves behind (`out/demo/astronaut.mp4`), with
the installed `facetrack`. The first block (create the venv, install, `facetrack demo`) is the
install itself: `.ci/run` runs it verbatim in a fresh copy of the tree.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_BLOCK = re.compile(r"(?:<!-- docs-test: (?P<mark>[^>]*?) -->\n)?```(?P<lang>bash|python)\n(?P<code>.*?)```", re.S)


def _blocks() -> list[tuple[str, str, str]]:
    """(mark, language, code) of every bash/python block of the README, the first (install) one left out."""
    found = [(m["mark"] or "", m["lang"], m["code"]) for m in _BLOCK.finditer((ROOT / "README.md").read_text())]
    return found[1:]


def test_every_block_says_whether_it_runs() -> None:
    unmarked = [code.splitlines()[0] for mark, _, code in _blocks() if not mark]
    assert not unmarked, f"README blocks without a docs-test mark: {unmarked}"
    assert sum(mark == "runs" for mark, _, _ in _blocks()) >= 4


def test_first_block_is_the_install_and_the_demo() -> None:
    first = _BLOCK.search((ROOT / "README.md").read_text())
    assert first is not None
    lines = first["code"].strip().splitlines()
    assert len(lines) == 2 and "pip install" in lines[0] and lines[0].endswith("facetrack demo")
    assert lines[1] == "python -m pytest -q"
    assert "../shared" not in first["code"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the demo clip where the README expects it."""
    from facetrack.tracker.viz.demo_clip import make_demo_clip

    folder = tmp_path_factory.mktemp("readme")
    make_demo_clip(folder / "out" / "demo" / "astronaut.mp4")
    return folder


@pytest.mark.parametrize(
    ("mark", "lang", "code"),
    [pytest.param(*block, id=f"block{i + 2}-{block[1]}") for i, block in enumerate(_blocks())],
)
def test_readme_block(mark: str, lang: str, code: str, workdir: Path) -> None:
    if mark != "runs":
        pytest.skip(f"README block not run here: {mark}")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"{code}\n--- stdout\n{done.stdout[-2000:]}\n--- stderr\n{done.stderr[-3000:]}"
