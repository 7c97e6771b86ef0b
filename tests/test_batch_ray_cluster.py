"""`facetrack batch --ray` against a real Ray cluster started by the test (`ray start --head` on loopback).

The cluster uses token authentication, as Ray's defaults do. It is stopped by ending its
own process group, never with `ray stop` (which would stop every Ray cluster of the user
on this machine). Kept few and short: two CPUs are shared by everything here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_node(python: str, temp: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    """`ray start --block ARGS` in a session of its own (so it can be ended alone), logging to temp/start-N.log."""
    command = [
        python, "-m", "ray.scripts.scripts", "start", "--block", "--disable-usage-stats", f"--temp-dir={temp}",
        "--object-store-memory=100000000", *args,
    ]  # fmt: skip
    log = temp / f"start-{len(list(temp.glob('start-*.log')))}.log"
    with open(log, "wb") as out:
        return subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=temp
        )  # fmt: skip


def _wait_started(process: subprocess.Popen, temp: Path) -> str:
    """The address `ray start --head` recorded, once it has."""
    deadline = time.monotonic() + 90
    while not (temp / "ray_current_cluster").exists():
        logs = "".join(log.read_text(errors="replace") for log in temp.glob("start-*.log"))
        assert process.poll() is None and time.monotonic() < deadline, logs
        time.sleep(0.2)
    return (temp / "ray_current_cluster").read_text().strip()


def _end_session(process: subprocess.Popen, sig: signal.Signals = signal.SIGTERM) -> None:
    """End a node: every process of its session (Ray gives workers process groups of their own in it)."""
    with contextlib.suppress(ProcessLookupError):  # `ray start` itself may be gone, its session not
        os.killpg(process.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):  # what is left is killed by session below
        process.wait(timeout=10)
    deadline = time.monotonic() + 15
    while (left := session_members(process.pid)) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    assert not session_members(process.pid)


@pytest.fixture()
def ray_temp() -> Iterator[Path]:
    """A short folder for a node's --temp-dir: Ray's socket paths in it must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="ftray-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Head]:
    """A 2-CPU head node with token authentication, started as Ray's guides do, for this module's tests."""
    home = tmp_path_factory.mktemp("home")
    port, client_port = _free_port(), _free_port()
    root = tmp_path_factory.mktemp("raytmp")  # as RAY_TMPDIR: Ray records the cluster in root/ray/
    temp = root / "ray"
    temp.mkdir()
    # Ray Client's proxy starts a server process per connection and gives it 30 s to answer; a loaded machine
    # can need more, so the proxy gets Ray's own knob for that (a failure to start is still a failure)
    env = _env(home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=TOKEN, RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S="120")
    process = _start_node(
        sys.executable, temp, env, "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
        "--include-dashboard=false", "--num-cpus=2", f"--ray-client-server-port={client_port}",
    )  # fmt: skip
    _wait_started(process, temp)
    yield Head(f"127.0.0.1:{port}", f"ray://127.0.0.1:{client_port}", process, root)
    _end_session(process)


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


def _client_server_logs(head: Head) -> str:
    """The tails of the head's Ray Client server logs: why a connection through the proxy failed."""
    logs = sorted((head.ray_tmpdir / "ray" / "session_latest" / "logs").glob("ray_client_server*.err"))
    return "\n".join(f"{log.name}: {log.read_text(errors='replace')[-1500:]}" for log in logs)


def test_ray_client_address(head: Head, clips: Path, tmp_path: Path) -> None:
    """`ray://`: the batch runs through Ray Client's proxy on the head.

    On a loaded machine the proxy's per-connection server can be slow to start; the client
    and the proxy get Ray's own timeouts raised (RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S here,
    RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S on the head), and a connection refused because
    that server did not start (exit 2 with Ray Client's message, nothing written) is tried
    again, as a user would. Any other outcome fails at once, with the proxy's logs.
    """
    out = tmp_path / "out"
    env = _env(tmp_path, RAY_AUTH_TOKEN=TOKEN, RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S="30")
    for _attempt in range(3):
        done = batch(clips / "b.mp4", "-o", out, "--max-frames", 4, "--ray", head.client_address, env=env, timeout=300)
        startup_failed = "Starting Ray client server failed" in done.stderr or "Proxy failed to Connect" in done.stderr
        if not (done.returncode == 2 and startup_failed):
            break
        assert not out.exists()  # refused before anything was written, so trying again loses nothing
    assert done.returncode == 0, f"{done.stderr}\n{_client_server_logs(head)}"
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


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_ends_a_ray_run_like_a_pool_run(
    head: Head, face_clip: Path, tmp_path: Path, sig: signal.Signals
) -> None:
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
    writing = _ray_task_workers(head)
    assert writing  # the worker tracking the clip, found before the signal
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "1 clips: 0 ok" in stderr  # the summary line
    clip = next(iter(json.loads((out / "manifest.json").read_text())["clips"].values()))
    assert clip["status"] == "pending"
    files = sorted(path.name for path in out.rglob("*"))
    assert "summary.json" in files and not list(out.glob("*.parquet")) and not (out / ".work").exists()
    assert not [worker for worker in writing if worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE]
    time.sleep(2)
    assert sorted(path.name for path in out.rglob("*")) == files  # nothing written after the exit


LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def _listeners(pids: list[int]) -> list[tuple[str, str, int]]:
    """(process name, address, port) of every listening TCP socket and unconnected UDP socket of `pids`."""
    found = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            for conn in process.net_connections(kind="inet"):
                udp = conn.type == socket.SOCK_DGRAM and not conn.raddr
                if conn.status == psutil.CONN_LISTEN or udp:
                    found.append((process.name(), conn.laddr.ip, conn.laddr.port))
    return found


def test_private_cluster_listens_on_loopback_only_and_is_gone_after_kill_9(face_clip: Path, tmp_path: Path) -> None:
    """No cluster anywhere: a private one starts, every socket of it (and of the batch) is on loopback while a
    clip runs, and killing the batch with SIGKILL ends all of it."""
    out = tmp_path / "out"
    process = subprocess.Popen(
        [*BATCH, str(face_clip), "-o", str(out), "--ray", "-j", "1"],
        env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not ((out / "manifest.json").exists() and '"status": "running"' in (out / "manifest.json").read_text()):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    # this run's cluster (not another one on the machine): the watchdog is the batch's child, leading its session
    (watchdog,) = [child for child in psutil.Process(process.pid).children() if "watch()" in " ".join(child.cmdline())]
    session, cluster_dir = watchdog.pid, Path(watchdog.cmdline()[3])
    assert os.getsid(watchdog.pid) == session and cluster_dir.name.startswith("facetrack-ray-")
    members = session_members(session)
    assert len(members) >= 4  # watchdog, ray start, gcs_server, raylet, agents, workers
    listeners = _listeners([*members, process.pid])
    names = {name for name, _, _ in listeners}
    assert {"gcs_server", "raylet", "ray::_ray_task"} <= names, listeners  # the check saw the cluster's servers
    assert [entry for entry in listeners if entry[1] not in LOOPBACK] == [], listeners
    process.kill()
    process.wait()
    deadline = time.monotonic() + 15
    while session_members(session) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not session_members(session)
    assert not cluster_dir.exists()  # the watchdog removed the cluster's folder


def _running(out: Path) -> int:
    """How many clips the manifest has running now (0 while it is being replaced)."""
    with contextlib.suppress(OSError, ValueError):
        return sum(c["status"] == "running" for c in json.loads((out / "manifest.json").read_text())["clips"].values())
    return 0


def test_slots_follow_nodes_that_join_and_leave(face_clip: Path, tmp_path: Path, ray_temp: Path) -> None:
    """A 1-CPU head runs one clip at a time; a second node that joins during the batch gets clips too (two
    running at once), and when it is killed the batch still finishes every clip whole."""
    temp = ray_temp
    env = _env(tmp_path, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=TOKEN)
    head = _start_node(
        sys.executable, temp, env, "--head", "--node-ip-address=127.0.0.1", f"--port={_free_port()}",
        "--include-dashboard=false", "--num-cpus=1", f"--ray-client-server-port={_free_port()}",
    )  # fmt: skip
    node = None
    try:
        address = _wait_started(head, temp)  # Ray records this machine's address: nodes must reach each other
        clips = tmp_path / "clips"
        clips.mkdir()
        long = _long_clip(face_clip, clips / "c0.mp4", repeats=2)
        for index in range(1, 6):
            (clips / f"c{index}.mp4").write_bytes(long.read_bytes())
        out = tmp_path / "out"
        batch_env = _env(tmp_path, RAY_AUTH_TOKEN=TOKEN)
        process = subprocess.Popen(
            [*BATCH, str(clips), "-o", str(out), "--ray", address, "--max-frames", "300"],
            env=batch_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while _running(out) < 1:
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.2)
        node = _start_node(sys.executable, temp, env, f"--address={address}", "--num-cpus=1")
        most = 0
        deadline = time.monotonic() + 240
        while most < 2:
            assert process.poll() is None and time.monotonic() < deadline, (most, process.communicate())
            most = max(most, _running(out))
            time.sleep(0.2)
        _end_session(node, signal.SIGKILL)  # the node is lost, as a preempted cloud node is
        node = None
        _, stderr = process.communicate(timeout=400)
        assert process.returncode == 0, stderr
        assert set(_statuses(out).values()) == {("ok", 300)} and len(_statuses(out)) == 6
    finally:
        if node is not None:
            _end_session(node)
        _end_session(head)


def _bare_python(root: Path) -> str:
    """A Python with Ray and facetrack's dependencies but not facetrack: a venv that sees this one's packages.

    Its site-packages names this environment's site-packages in a .pth file, so those
    packages import, but this environment's own .pth files (facetrack's editable install)
    are not processed there: `import facetrack` fails, as on a node that lacks it.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    (site,) = root.glob("lib/python*/site-packages")
    (site / "this-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return str(root / "bin" / "python")


def test_runtime_env_runs_clips_on_a_node_without_facetrack(
    short_face_clip: Path, tmp_path: Path, ray_temp: Path
) -> None:
    """A head whose Python lacks facetrack: refused with one line without --runtime-env, ok with it."""
    python = _bare_python(tmp_path / "venv")
    env = _env(tmp_path, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=TOKEN, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    env.pop("PYTHONPATH", None)
    lacking = subprocess.run(
        [python, "-c", "import ray, mediapipe, virtualenv; import facetrack"], env=env, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert "No module named 'facetrack'" in lacking.stderr, lacking.stderr
    temp = ray_temp
    port = _free_port()
    head = _start_node(
        python, temp, env, "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--include-dashboard=false",
        "--num-cpus=1", f"--ray-client-server-port={_free_port()}",
    )  # fmt: skip
    try:
        _wait_started(head, temp)
        batch_env = _env(tmp_path, RAY_AUTH_TOKEN=TOKEN)
        refused = batch(short_face_clip, "-o", tmp_path / "refused", "--ray", f"127.0.0.1:{port}", env=batch_env)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.strip().splitlines() == [
            "error: the Ray cluster's workers cannot import facetrack: install this facetrack version on every "
            "node, or pass --runtime-env to send it with the tasks"
        ]
        assert not (tmp_path / "refused").exists()
        out = tmp_path / "out"
        done = batch(
            short_face_clip, "-o", out, "--ray", f"127.0.0.1:{port}", "--runtime-env", "--max-frames", 10,
            env=batch_env, timeout=400,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert _statuses(out) == {"face40": ("ok", 10)}
        setup = "".join(log.read_text() for log in (temp / "session_latest" / "logs").glob("runtime_env_setup-*.log"))
        assert "Installing python requirements" in setup  # Ray built the pinned pip environment on the node
    finally:
        _end_session(head)
