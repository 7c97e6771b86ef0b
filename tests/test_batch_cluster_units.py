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
    pinned_runtime_env,
    probe,
)
from facetrack.tracker.batch.ray_cluster import TaskShape, cluster_slots


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


def test_runtime_env_pins_this_version() -> None:
    assert pinned_runtime_env() == {"pip": [f"facetrack=={version('facetrack')}"]}
