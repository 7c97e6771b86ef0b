"""`facetrack batch --ray` against a real Ray cluster started by the test (`ray start --head` on loopback).

The cluster uses token authentication, as Ray's defaults do. It is stopped by ending its
own process group, never with `ray stop` (which would stop every Ray cluster of the user
on this machine). Kept few and short: two CPUs are shared by everything here.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import psutil
import pytest
from conftest import encode_clip

from facetrack.tracker.batch.cluster import session_members

pytest.importorskip("ray", reason='Ray is an optional extra: pip install "facetrack[ray]"')
pytestmark = [pytest.mark.media, pytest.mark.slow]

BATCH = [sys.executable, "-c", "from facetrack.tracker.cli.batch import main; main()"]
TOKEN = "facetrack-test-token-0123456789abcdef"
_RAY_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")


@dataclass
class Head:
    address: str
    client_address: str
    process: subprocess.Popen
    ray_tmpdir: Path


def _env(home: Path, **values: str) -> dict[str, str]:
    """The environment without the caller's Ray settings (and a home with no default token file)."""
    env = {key: value for key, value in os.environ.items() if key not in _RAY_VARIABLES}
    env["HOME"] = str(home)
    env["RAY_TMPDIR"] = str(home / "raytmp")  # no `ray start` cluster of anyone else is "the local one"
    env.update(values)
    return env


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Head]:
    """A 2-CPU head node on 127.0.0.1 with token authentication, for this module's tests."""
    home = tmp_path_factory.mktemp("home")
    with socket.socket() as sock, socket.socket() as client_sock:
        sock.bind(("127.0.0.1", 0))
        client_sock.bind(("127.0.0.1", 0))
        port, client_port = sock.getsockname()[1], client_sock.getsockname()[1]
    root = tmp_path_factory.mktemp("raytmp")  # as RAY_TMPDIR: Ray records the cluster in root/ray/
    temp = root / "ray"
    temp.mkdir()
    command = [
        sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", "--node-ip-address=127.0.0.1",
        f"--port={port}", "--include-dashboard=false", "--num-cpus=2", "--disable-usage-stats", f"--temp-dir={temp}",
        f"--ray-client-server-port={client_port}",
    ]  # fmt: skip
    log = open(temp / "start.log", "wb")  # noqa: SIM115 - open for the cluster's life
    process = subprocess.Popen(
        command, env=_env(home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=TOKEN), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while not (temp / "ray_current_cluster").exists():
        assert process.poll() is None and time.monotonic() < deadline, (temp / "start.log").read_text()
        time.sleep(0.2)
    yield Head(f"127.0.0.1:{port}", f"ray://127.0.0.1:{client_port}", process, root)
    os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):  # what is left is killed by session below
        process.wait(timeout=10)
    deadline = time.monotonic() + 15
    while (left := session_members(process.pid)) and time.monotonic() < deadline:
        for pid in left:  # Ray gives workers process groups of their own, in the same session
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    assert not session_members(process.pid)
    log.close()


@pytest.fixture(scope="module")
def clips(short_face_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("rayclips")
    for name in ("a", "b"):
        (folder / f"{name}.mp4").write_bytes(short_face_clip.read_bytes())
    return folder


def batch(*args: object, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BATCH, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def _statuses(out: Path) -> dict[str, tuple[str, int]]:
    rows = json.loads((out / "summary.json").read_text())["clips"]
    return {row["clip"]: (row["status"], row["frames"]) for row in rows}


def test_bare_ray_attaches_to_ray_address_with_the_token_from_env(head: Head, clips: Path, tmp_path: Path) -> None:
    """RAY_ADDRESS + RAY_AUTH_TOKEN, no RAY_AUTH_MODE: what a Ray user has; no num_cpus error."""
    out = tmp_path / "out"
    done = batch(
        clips, "-o", out, "--max-frames", 6, "--ray", "--memory-per-clip", 0.25,
        env=_env(tmp_path, RAY_ADDRESS=head.address, RAY_AUTH_TOKEN=TOKEN),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _statuses(out) == {"a": ("ok", 6), "b": ("ok", 6)}
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(clip["attempts"] == 1 and clip["worker"] for clip in manifest["clips"].values())
    assert "progress: 12 frames" in done.stderr


def test_bare_ray_finds_the_cluster_running_on_this_machine(head: Head, clips: Path, tmp_path: Path) -> None:
    """No RAY_ADDRESS: the cluster `ray start` recorded here, as ray.init("auto") finds it; the token from ~/.ray."""
    token_home = tmp_path / "home"
    (token_home / ".ray").mkdir(parents=True)
    (token_home / ".ray" / "auth_token").write_text(TOKEN)
    out = tmp_path / "out"
    env = _env(token_home, RAY_TMPDIR=str(head.ray_tmpdir))
    done = batch(clips / "a.mp4", "-o", out, "--max-frames", 3, "--ray", env=env)
    assert done.returncode == 0, done.stderr
    backend = json.loads((out / "manifest.json").read_text())["runs"][0]["backend"]
    port = head.address.rsplit(":", 1)[1]
    assert backend.startswith("Ray (auto -> ") and backend.endswith(f":{port})")  # Ray records the host's own IP


def test_explicit_address_with_the_token_file_then_a_refused_token(head: Head, clips: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    out = tmp_path / "out"
    done = batch(
        clips / "a.mp4", "-o", out, "--max-frames", 4, "--ray", head.address,
        env=_env(tmp_path, RAY_AUTH_TOKEN_PATH=str(token_file)),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _statuses(out) == {"a": ("ok", 4)}

    refused_out = tmp_path / "refused"
    t0 = time.monotonic()
    refused = batch(
        clips, "-o", refused_out, "--ray", head.address, env=_env(tmp_path, RAY_AUTH_TOKEN="not-the-token"), timeout=60
    )
    assert refused.returncode == 2 and time.monotonic() - t0 < 15
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused our authentication token" in lines[0], refused.stderr
    assert not refused_out.exists()


def test_ray_client_address(head: Head, clips: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for _attempt in range(3):
        done = batch(
            clips / "b.mp4", "-o", out, "--max-frames", 4, "--ray", head.client_address,
            env=_env(tmp_path, RAY_AUTH_TOKEN=TOKEN),
        )  # fmt: skip
        # Ray Client's proxy starts a server process per connection; on a loaded machine that start can fail
        # ("Starting Ray client server failed"), which the batch reports as a refused cluster (exit 2), so
        # connecting again is the user's remedy too
        if "Starting Ray client server failed" not in done.stderr:
            break
    assert done.returncode == 0, done.stderr
    assert _statuses(out) == {"b": ("ok", 4)}


def _long_clip(short: Path, path: Path, repeats: int) -> Path:
    """`short`'s frames `repeats` times over: a clip that runs for seconds however fast the tracker is."""
    with av.open(str(short)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    return encode_clip(path, frames * repeats)


def test_clip_timeout_fails_the_overrunning_clip(head: Head, short_face_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    clip = _long_clip(short_face_clip, tmp_path / "a.mp4", repeats=10)
    done = batch(
        clip, "-o", out, "--ray", head.address, "--clip-timeout", 0.3,
        env=_env(tmp_path, RAY_AUTH_TOKEN=TOKEN),
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    rows = json.loads((out / "summary.json").read_text())["clips"]
    assert rows[0]["status"] == "failed" and "--clip-timeout" in rows[0]["error"]
    assert not (out / "a.parquet").exists()


def _ray_task_workers(head: Head) -> list[psutil.Process]:
    """The head's task workers running a clip (only this cluster's: descendants of its `ray start`)."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            named = "_ray_task" in (process.info["name"] or "") + " ".join(process.info["cmdline"] or [])
            ours = head.process.pid in {parent.pid for parent in process.parents()}
            if named and ours and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
    return found


def test_a_killed_task_worker_is_rerun_and_counted_as_a_run(head: Head, face_clip: Path, tmp_path: Path) -> None:
    """Ray reruns the task whose worker died; the manifest counts both runs and the output is whole."""
    out = tmp_path / "out"
    process = subprocess.Popen(
        [*BATCH, str(face_clip), "-o", str(out), "--ray", head.address, "--max-frames", "150"],
        env=_env(tmp_path, RAY_AUTH_TOKEN=TOKEN), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (workers := _ray_task_workers(head)) or not (
        (out / "manifest.json").exists() and '"status": "running"' in (out / "manifest.json").read_text()
    ):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)
    for worker in workers:
        worker.kill()
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr
    clip = next(iter(json.loads((out / "manifest.json").read_text())["clips"].values()))
    assert (clip["status"], clip["frames"], clip["attempts"]) == ("ok", 150, 2)


def test_sigterm_ends_a_ray_run_like_a_pool_run(head: Head, face_clip: Path, tmp_path: Path) -> None:
    """Exit 130, summary written, the unfinished clip pending, no worker left writing."""
    out = tmp_path / "out"
    process = subprocess.Popen(
        [*BATCH, str(face_clip), "-o", str(out), "--ray", head.address],
        env=_env(tmp_path, RAY_AUTH_TOKEN=TOKEN), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        manifest = out / "manifest.json"
        if manifest.exists() and '"status": "running"' in manifest.read_text():
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    clip = next(iter(json.loads((out / "manifest.json").read_text())["clips"].values()))
    assert clip["status"] == "pending"
    assert (out / "summary.json").exists() and not list(out.glob("*.parquet"))
    time.sleep(1)
    assert not [p for p in _ray_task_workers(head) if p.status() == psutil.STATUS_RUNNING]
    assert not (out / ".work").exists()


def test_private_cluster_is_gone_after_kill_9(clips: Path, tmp_path: Path) -> None:
    """No cluster anywhere: a private one starts; killing the batch with SIGKILL ends all of it."""
    before = set(Path(tempfile.gettempdir()).glob("facetrack-ray-*"))
    out = tmp_path / "out"
    process = subprocess.Popen(
        [*BATCH, str(clips), "-o", str(out), "--ray", "-j", "1"],
        env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (out / "manifest.json").exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    mine = set(Path(tempfile.gettempdir()).glob("facetrack-ray-*")) - before
    assert len(mine) == 1
    marker = mine.pop().name
    named = [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
    assert named  # gcs_server and raylet name the cluster's temp dir; workers and actors are in their session
    session = os.getsid(named[0].pid)
    assert len(session_members(session)) >= 4  # watchdog, ray start, gcs_server, raylet, agents, workers
    process.kill()
    process.wait()
    deadline = time.monotonic() + 15
    while session_members(session) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not session_members(session)
    assert not (Path(tempfile.gettempdir()) / marker).exists()  # the watchdog removed the cluster's folder
