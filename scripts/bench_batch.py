"""Batch throughput: clips/hour and frames/s with 1 and N workers, on the pool and on Ray, resume after kill -9.

Every figure comes from the real command (`python -m facetrack.tracker.cli.batch`) run as a
subprocess on the real clips, timed from outside, with the per-clip timings read back
from its manifest. Startup is the time from launch to the first clip starting (process
spawn, imports, and for Ray the local cluster); steady fps excludes it.

    python scripts/bench_batch.py                        # the dev clips in ../shared/media/videos
    python scripts/bench_batch.py CLIPS_DIR --workers 4 --json bench_batch.json

It waits for the machine to be quiet (1-minute load below --max-load) before each phase,
and records the load it saw, because a shared machine skews every figure here; a phase
that finds no quiet moment within --patience seconds is skipped (and says so), and the
JSON report is rewritten after every phase.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("FACETRACK_MEDIA", ROOT.parent / "shared" / "media"))
COMMAND = [sys.executable, "-m", "facetrack.tracker.cli.batch"]
PHASE_TIMEOUT = 900


class Busy(Exception):
    """The machine did not get quiet enough to time a phase."""


def _wait_for_quiet(max_load: float, patience: float) -> float:
    """The 1-minute load once it is below `max_load`; Busy when it stays higher for `patience` s."""
    deadline = time.monotonic() + patience
    while (load := os.getloadavg()[0]) > max_load:
        if time.monotonic() > deadline:
            raise Busy(f"load stayed above {max_load} for {patience:.0f} s (last {load:.2f}): not timed")
        time.sleep(5)
    return load


def _phase(name: str, args: list[str], out: Path, max_load: float, patience: float) -> dict[str, object]:
    load_before = _wait_for_quiet(max_load, patience)
    t0 = time.time()
    done = subprocess.run(
        [*COMMAND, *args, "--out-dir", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=PHASE_TIMEOUT,
        check=False,
    )
    wall = time.time() - t0
    if done.returncode not in (0, 1):
        raise click.ClickException(f"{name}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return {
        "name": name,
        **_figures(out, t0, wall),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


def _figures(out: Path, t0: float, wall: float) -> dict[str, object]:
    manifest = json.loads((out / "manifest.json").read_text())
    run = manifest["runs"][-1]
    clips = [c for c in manifest["clips"].values() if c["started_at"] and c["started_at"] >= run["started_at"]]
    frames = sum(c["frames"] for c in clips)
    first_start = min((c["started_at"] for c in clips), default=t0 + wall)
    startup = first_start - t0
    return {
        "clips": len(clips),
        "frames": frames,
        "failed": sum(c["status"] != "ok" for c in clips),
        "wall_s": round(wall, 2),
        "startup_s": round(startup, 2),
        "clips_per_hour": round(len(clips) / wall * 3600, 1) if wall else None,
        "fps": round(frames / wall, 1) if wall else None,
        "steady_fps": round(frames / (wall - startup), 1) if wall > startup else None,
    }


def _kill_and_resume(clips: Path, out: Path, workers: int, max_load: float, patience: float) -> dict[str, object]:
    """Kill -9 a run once half its clips are done, then time the --resume that finishes it."""
    load_before = _wait_for_quiet(max_load, patience)
    manifest_path = out / "manifest.json"
    t0 = time.time()
    run = subprocess.Popen(
        [*COMMAND, str(clips), "--out-dir", str(out), "--workers", str(workers), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + PHASE_TIMEOUT
    total = done = 0
    try:
        while run.poll() is None and time.monotonic() < deadline:
            if manifest_path.exists():
                manifest = json.loads(manifest_path.read_text())
                total = len(manifest["clips"])
                done = sum(c["status"] == "ok" for c in manifest["clips"].values())
                if done * 2 >= total:
                    break
            time.sleep(0.1)
        if run.poll() is not None:
            raise click.ClickException("the run ended before it could be killed")
        run.send_signal(signal.SIGKILL)
        killed_after = time.time() - t0
    finally:
        run.kill()
        run.wait(10)
    manifest = json.loads(manifest_path.read_text())
    done = sum(c["status"] == "ok" for c in manifest["clips"].values())
    time.sleep(1.0)  # the orphaned workers notice their parent is gone
    t1 = time.time()
    resumed = subprocess.run(
        [*COMMAND, "--out-dir", str(out), "--resume", "--workers", str(workers), "--quiet"],
        capture_output=True,
        text=True,
        timeout=PHASE_TIMEOUT,
        check=False,
    )
    wall = time.time() - t1
    if resumed.returncode not in (0, 1):
        raise click.ClickException(f"resume: exit {resumed.returncode}\n{resumed.stderr[-2000:]}")
    figures = _figures(out, t1, wall)
    return {
        "name": f"kill -9 at {done}/{total} clips done, then --resume ({workers} workers)",
        "killed_after_s": round(killed_after, 2),
        "clips_done_at_kill": done,
        "resume_wall_s": figures["wall_s"],
        "resume_startup_s": figures["startup_s"],
        "clips_redone": figures["clips"],
        "frames_redone": figures["frames"],
        "load_before": round(load_before, 2),
    }


@click.command()
@click.argument("clips", type=click.Path(exists=True, file_okay=False, path_type=Path), default=MEDIA / "videos")
@click.option("--workers", type=click.IntRange(2, 256), default=2, show_default=True, help="The scaled run's workers.")
@click.option("--ray/--no-ray", "with_ray", default=True, show_default=True, help="Also time Ray's local cluster.")
@click.option(
    "--kill/--no-kill", "with_kill", default=True, show_default=True, help="Also time a resume after kill -9."
)
@click.option("--max-load", type=float, default=0.8, show_default=True, help="Wait for a 1-minute load below this.")
@click.option("--patience", type=float, default=300, show_default=True, help="Seconds to wait for it.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(
    clips: Path, workers: int, with_ray: bool, with_kill: bool, max_load: float, patience: float, json_out: Path | None
) -> None:
    """Time `facetrack batch` on CLIPS (default: the dev clips)."""
    scratch = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    report: dict[str, object] = {
        "clips_dir": str(clips),
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "phases": [],
    }
    plan = [
        ("pool, 1 worker", [str(clips), "--workers", "1"], "w1"),
        (f"pool, {workers} workers", [str(clips), "--workers", str(workers)], f"w{workers}"),
    ]
    if with_ray:
        plan.append(("Ray local cluster, 1 CPU", [str(clips), "--workers", "1", "--ray"], "ray1"))
        plan.append((f"Ray local cluster, {workers} CPUs", [str(clips), "--workers", str(workers), "--ray"], "ray"))

    def save() -> None:
        if json_out is not None:
            json_out.write_text(json.dumps(report, indent=2))

    phases: dict[str, dict[str, object]] = {}
    try:
        for name, args, folder in plan:
            try:
                phases[folder] = _phase(name, args, scratch / folder, max_load, patience)
            except Busy as exc:
                phases[folder] = {"name": name, "skipped": str(exc)}
            report["phases"] = list(phases.values())
            save()
        try:
            if with_kill:
                report["resume"] = _kill_and_resume(clips, scratch / "kill", workers, max_load, patience)
        except Busy as exc:
            report["resume"] = {"skipped": str(exc)}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    one, many, ray = phases.get("w1", {}), phases.get(f"w{workers}", {}), phases.get("ray", {})
    if "fps" in one and "fps" in many:
        report["scaling_efficiency"] = round(many["fps"] / one["fps"] / workers, 3)
        report["steady_scaling_efficiency"] = round(many["steady_fps"] / one["steady_fps"] / workers, 3)
    ray_one = phases.get("ray1", {})
    if "fps" in ray_one and "fps" in ray:
        report["ray_scaling_efficiency"] = round(ray["fps"] / ray_one["fps"] / workers, 3)
        report["ray_steady_scaling_efficiency"] = round(ray["steady_fps"] / ray_one["steady_fps"] / workers, 3)
    if "wall_s" in ray and "wall_s" in many:
        report["ray_overhead_s"] = round(ray["wall_s"] - many["wall_s"], 2)
    save()
    print("| run | clips | frames | wall s | startup s | clips/h | fps | steady fps | load before/after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for p in phases.values():
        if "skipped" in p:
            print(f"| {p['name']} | skipped: {p['skipped']} |||||||| ")
            continue
        print(
            f"| {p['name']} | {p['clips']} | {p['frames']} | {p['wall_s']} | {p['startup_s']} | "
            f"{p['clips_per_hour']} | {p['fps']} | {p['steady_fps']} | {p['load_before']}/{p['load_after']} |"
        )
    for key in (
        "scaling_efficiency", "steady_scaling_efficiency", "ray_scaling_efficiency", "ray_steady_scaling_efficiency",
        "ray_overhead_s",
    ):  # fmt: skip
        if key in report:
            print(f"{key}: {report[key]}")
    if "resume" in report:
        print(f"resume: {report['resume']}")


if __name__ == "__main__":
    main()
