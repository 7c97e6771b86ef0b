"""Ray cluster figures for BENCHMARKS.md (issue 24): the private cluster after `kill -9`, and `--runtime-env`'s cost.

    python scripts/bench_ray_cluster.py kill9 CLIP --runs 5
    python scripts/bench_ray_cluster.py runtime-env CLIP --runs 2

`kill9`: starts `facetrack batch CLIP --ray -j 1` (a private cluster), waits until the clip
runs, lists the listening sockets of the cluster's session and the batch process, kills the
batch with SIGKILL and times until its task worker, then every cluster process, is gone.
`runtime-env`: a 1-CPU loopback head started from a Python that has Ray and the
dependencies but not facetrack (a venv whose .pth names this environment's site-packages)
runs CLIP (100 frames) with `--runtime-env` twice; a head from this environment runs it
twice without. Each run is the whole command, timed from launch to exit.
"""

from __future__ import annotations

import argparse
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
from pathlib import Path

import psutil

from facetrack.tracker.batch.cluster import session_members

BATCH = [sys.executable, "-c", "from facetrack.tracker.cli.batch import main; main()"]
TOKEN = "bench-token-0123456789abcdef"


def _env(**values: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_") and key != "PYTHONPATH"}
    env.update(values)
    return env


def _listeners(pids: list[int]) -> list[tuple[str, str]]:
    found = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            found += [(process.name(), c.laddr.ip) for c in process.net_connections("inet") if c.status == "LISTEN"]
        except psutil.Error:
            continue
    return found


def kill9(clip: str) -> dict[str, object]:
    root = Path(tempfile.mkdtemp())
    out = root / "out"
    batch = subprocess.Popen(
        [*BATCH, clip, "-o", str(out), "--ray", "-j", "1"], env=_env(RAY_TMPDIR=str(root / "rt")),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    t0 = time.monotonic()
    while not ((out / "manifest.json").exists() and '"running"' in (out / "manifest.json").read_text()):
        time.sleep(0.1)
    running = time.monotonic() - t0
    # this run's cluster, not another on the machine: the watchdog is the batch's child, leading its session
    watchdog = next(c for c in psutil.Process(batch.pid).children() if "watch()" in " ".join(c.cmdline()))
    session, cluster_dir = watchdog.pid, Path(watchdog.cmdline()[3])
    members = session_members(session)
    listeners = _listeners([*members, batch.pid])
    tasks = [pid for pid in members if "_ray_task" in psutil.Process(pid).name()]
    batch.kill()
    batch.wait()
    t1 = time.monotonic()
    while any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in tasks):
        time.sleep(0.02)
    task_gone = time.monotonic() - t1
    while session_members(session):
        time.sleep(0.05)
    shutil.rmtree(root, ignore_errors=True)
    return {
        "clip_running_s": round(running, 1), "processes": len(members), "listeners": len(listeners),
        "not_loopback": [entry for entry in listeners if entry[1] not in ("127.0.0.1", "::ffff:127.0.0.1", "::1")],
        "task_worker_gone_s": round(task_gone, 2), "cluster_gone_s": round(time.monotonic() - t1, 2),
        "temp_dir_removed": not cluster_dir.exists(),
    }  # fmt: skip


def _head(python: str, temp: Path) -> tuple[subprocess.Popen, int]:
    with socket.socket() as one, socket.socket() as two:
        one.bind(("127.0.0.1", 0))
        two.bind(("127.0.0.1", 0))
        port, client_port = one.getsockname()[1], two.getsockname()[1]
    head = subprocess.Popen(
        [python, "-m", "ray.scripts.scripts", "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         f"--port={port}", f"--ray-client-server-port={client_port}", "--include-dashboard=false", "--num-cpus=1",
         "--object-store-memory=100000000", "--disable-usage-stats", f"--temp-dir={temp}"],
        env=_env(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=TOKEN),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, cwd=temp,
    )  # fmt: skip
    while not (temp / "ray_current_cluster").exists():
        if head.poll() is not None:
            raise SystemExit("ray start failed")
        time.sleep(0.2)
    return head, port


def _stop(head: subprocess.Popen) -> None:
    """Every process of the head's session: SIGTERM, then SIGKILL for what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in session_members(head.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        time.sleep(3)


def _timed(clip: str, port: int, out: Path, *extra: str) -> float:
    t0 = time.monotonic()
    done = subprocess.run(
        [*BATCH, clip, "-o", str(out), "--ray", f"127.0.0.1:{port}", "--max-frames", "100", *extra],
        env=_env(RAY_AUTH_TOKEN=TOKEN), capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return round(time.monotonic() - t0, 1)


def runtime_env(clip: str) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="ftb-"))  # short: Ray's socket paths must stay under 108 bytes
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    (site,) = (root / "venv").glob("lib/python*/site-packages")
    (site / "this-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    figures = {}
    for label, python, extra in (("bare", str(root / "venv" / "bin" / "python"), ("--runtime-env",)),
                                 ("installed", sys.executable, ())):  # fmt: skip
        temp = root / label
        temp.mkdir()
        head, port = _head(python, temp)
        try:
            figures[f"{label}_first_s"] = _timed(clip, port, temp / "o1", *extra)
            figures[f"{label}_second_s"] = _timed(clip, port, temp / "o2", *extra)
        finally:
            _stop(head)
    shutil.rmtree(root, ignore_errors=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["kill9", "runtime-env"])
    parser.add_argument("clip")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for _ in range(args.runs):
        print(json.dumps(kill9(args.clip) if args.what == "kill9" else runtime_env(args.clip)), flush=True)


if __name__ == "__main__":
    main()
