"""Ray's address and token rules as `--ray` applies them, and the task shape arithmetic (no cluster)."""

from __future__ import annotations

import os
import socket
from importlib.metadata import version
from pathlib import Path

import pytest

from facetrack.tracker.batch import cluster as batch_cluster
from facetrack.tracker.batch.cluster import (
    AUTO,
    ClusterRefusedError,
    enable_token_auth,
    existing_address,
    find_token,
    probe,
)
from facetrack.tracker.batch.ray_cluster import TaskShape, cluster_slots
from facetrack.tracker.batch.runtime_env import SUBPACKAGES, facetrack_runtime_env


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No Ray variables, an empty home (no default token file) and an empty Ray temp dir."""
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS", "TMPDIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(batch_cluster, "DEFAULT_TOKEN_FILE", tmp_path / "home" / ".ray" / "auth_token")
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "raytmp"))
    return tmp_path


def test_token_sources_in_rays_order(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_token() is None and not enable_token_auth()
    default = batch_cluster.DEFAULT_TOKEN_FILE
    default.parent.mkdir(parents=True)
    default.write_text("from-default\n")
    assert find_token() == "from-default"
    named = clean_env / "token.txt"
    named.write_text("from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(named))
    assert find_token() == "from-path"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert find_token() == "from-env"
    assert enable_token_auth()
    assert os.environ["RAY_AUTH_MODE"] == "token"


def test_the_users_auth_mode_is_kept(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_AUTH_TOKEN", "abc")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert not enable_token_auth()


def test_auto_address_order(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert existing_address(AUTO) is None  # nothing running: a private cluster
    assert existing_address("ray://head:10001") == "ray://head:10001"
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        live = f"127.0.0.1:{server.getsockname()[1]}"
        record = clean_env / "raytmp" / "ray" / "ray_current_cluster"
        record.parent.mkdir(parents=True)
        record.write_text(live)
        assert existing_address(AUTO) == live
        monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:6379")
        assert existing_address(AUTO) == "10.1.2.3:6379"
    monkeypatch.delenv("RAY_ADDRESS")
    assert existing_address(AUTO) is None  # the recorded cluster is gone: its stale file is ignored


def test_nothing_listening_is_refused_fast(clean_env: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(ClusterRefusedError, match="no Ray cluster answers"):
        probe(f"127.0.0.1:{port}")


def test_slots_follow_every_requested_resource() -> None:
    resources = {"CPU": 16.0, "GPU": 2.0, "memory": 32 * 2**30}
    assert cluster_slots(resources, TaskShape()) == 16
    assert cluster_slots(resources, TaskShape(cpus=2)) == 8
    assert cluster_slots(resources, TaskShape(gpus=0.5)) == 4
    assert cluster_slots(resources, TaskShape(memory_bytes=6 * 2**30)) == 5
    assert cluster_slots({"CPU": 1.0}, TaskShape(gpus=1)) == 0


def test_runtime_env_carries_this_facetrack_and_pins_its_dependencies() -> None:
    """The package goes as py_modules (this very source), the dependencies pinned to what runs here."""
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    top = {name.split(".")[1] for name in project["tool"]["setuptools"]["packages"]}
    assert set(SUBPACKAGES) == top
    with facetrack_runtime_env() as runtime_env:
        (package,) = runtime_env["py_modules"]
        assert Path(package).name == "facetrack"
        assert (Path(package) / "tracker" / "batch" / "runtime_env.py").read_text() == Path(
            batch_cluster.__file__
        ).with_name("runtime_env.py").read_text()
        assert not list(Path(package).rglob("__pycache__"))
    assert not Path(package).exists()  # removed once Ray has it
    pinned = runtime_env["pip"]
    assert f"mediapipe=={version('mediapipe')}" in pinned and f"numpy=={version('numpy')}" in pinned
    assert all("==" in line for line in pinned)
    assert not any(line.startswith(("facetrack", "ray", "torch")) for line in pinned)
