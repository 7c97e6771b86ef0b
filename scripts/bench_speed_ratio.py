"""The speed of `facetrack run` against mediapipe's face mesh alone, measured from outside, in one run.

Issue 19's measure: whole processes timed by their wall clock. Steady state per frame is the
difference between a process that does the whole clip and one that stops after its first
`--head` frames, over the frames between; start-up is a process that stops after its first
frame (process start to the first result and exit). Both programs (the mesh alone: PyAV decode +
`mp.solutions.face_mesh.FaceMesh(refine_landmarks=True)`; `facetrack run` with its defaults) run
interleaved A/B/A/B (`facetrack run` publishing on a free loopback port, so the default
pipeline with its ZeroMQ publisher), so they share the machine's load; the script prints each repeat, the median
ratio with its spread, and the load average before and after. Each process's CPU time (user + system, from
`getrusage` of the finished child) is reported beside its wall time: on a machine whose other jobs take the
cores, wall time grows with their load while CPU time stays what this program itself spends, so the CPU
columns show the extra work per frame that the wall columns blur. One photo's wall time and peak RSS
(`facetrack run PHOTO --quiet`, as many runs as --repeats) come from `/usr/bin/time -v` where it exists.

    python scripts/bench_speed_ratio.py CLIP [--photo IMAGE] [--repeats 5] [-- extra facetrack run options]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

_MESH_ALONE = """
import sys, av, mediapipe as mp
limit = int(sys.argv[2])
mesh = mp.solutions.face_mesh.FaceMesh(refine_landmarks=True, max_num_faces=1)
with av.open(sys.argv[1]) as container:
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    for index, frame in enumerate(container.decode(stream)):
        if index >= limit:
            break
        mesh.process(frame.to_ndarray(format="rgb24"))
"""


def _wall(command: list[str]) -> tuple[float, float]:
    """(wall s, CPU s = user + system) of one finished child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _frames(clip: str) -> int:
    import av

    with av.open(clip) as container:
        return sum(1 for _ in container.decode(video=0))


def _photo(photo: str, extra: list[str]) -> tuple[float, float, float] | None:
    """(wall s, CPU s, peak RSS MB) of `facetrack run PHOTO` from /usr/bin/time -v, None where it is missing.

    The CPU time (user + system) depends less on what else the machine runs than the wall time.
    """
    if not Path("/usr/bin/time").exists():
        return None
    done = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "facetrack.tracker.cli", "run", photo,
                           "--quiet", *extra], check=True, capture_output=True, text=True)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1)) / 1024
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", done.stderr).group(1)
    minutes, seconds = wall.rsplit(":", 1)
    cpu = sum(float(re.search(rf"{kind} time \(seconds\): (\S+)", done.stderr).group(1)) for kind in ("User", "System"))
    return float(minutes.split(":")[-1]) * 60 + float(seconds), cpu, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip")
    parser.add_argument("--photo", default=None, help="also time one photo and report its peak RSS")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--head", type=int, default=10, help="frames of the short run (the issue's 10)")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)  # argparse takes `-- --option` for its own
    args = parser.parse_args(argv[:cut])
    args.extra = argv[cut + 1:]
    frames = _frames(args.clip)
    between = frames - args.head
    mesh = [sys.executable, "-c", _MESH_ALONE, args.clip]
    run = [sys.executable, "-m", "facetrack.tracker.cli", "run", args.clip, "--quiet", "--publish", "tcp://127.0.0.1:*",
           *args.extra]
    load_before = os.getloadavg()
    rows = []
    print(f"{args.clip}: {frames} frames; steady state = (whole - first {args.head}) / {between}")
    print("repeat | mesh ms/frame | run ms/frame | ratio | run start-up s | run whole s | mesh whole s | "
          "mesh CPU ms/frame | run CPU ms/frame | CPU ratio | run start-up CPU s")
    for repeat in range(args.repeats):
        mesh_whole, mesh_whole_cpu = _wall([*mesh, str(frames)])
        run_whole, run_whole_cpu = _wall(run)
        mesh_head, mesh_head_cpu = _wall([*mesh, str(args.head)])
        run_head, run_head_cpu = _wall([*run, "--max-frames", str(args.head)])
        run_first, run_first_cpu = _wall([*run, "--max-frames", "1"])
        mesh_ms = (mesh_whole - mesh_head) / between * 1e3
        run_ms = (run_whole - run_head) / between * 1e3
        mesh_cpu = (mesh_whole_cpu - mesh_head_cpu) / between * 1e3
        run_cpu = (run_whole_cpu - run_head_cpu) / between * 1e3
        rows.append((mesh_ms, run_ms, run_ms / mesh_ms, run_first, run_whole, mesh_whole, mesh_cpu, run_cpu,
                     run_cpu / mesh_cpu, run_first_cpu))
        print(f"{repeat} | {mesh_ms:.2f} | {run_ms:.2f} | {run_ms / mesh_ms:.2f} | {run_first:.2f} | "
              f"{run_whole:.2f} | {mesh_whole:.2f} | {mesh_cpu:.2f} | {run_cpu:.2f} | {run_cpu / mesh_cpu:.2f} | "
              f"{run_first_cpu:.2f}", flush=True)
    load_after = os.getloadavg()

    def spread(column: int, digits: int = 2) -> str:
        values = [row[column] for row in rows]
        return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"

    print(f"median (min-max) over {args.repeats}: mesh {spread(0)} ms/frame, run {spread(1)} ms/frame, "
          f"ratio {spread(2)}, start-up {spread(3)} s")
    print(f"CPU (user + system): mesh {spread(6)} ms/frame, run {spread(7)} ms/frame, ratio {spread(8)}, "
          f"start-up {spread(9)} s")
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f}; {os.cpu_count()} cpus")
    if args.photo:
        photos = [_photo(args.photo, args.extra) for _ in range(args.repeats)]
        if None in photos:
            print("no /usr/bin/time: photo not measured")
        else:
            walls, cpus, peaks = ([p[i] for p in photos] for i in range(3))
            print(f"one photo ({Path(args.photo).name}), {args.repeats} runs: wall "
                  f"{statistics.median(walls):.2f} ({min(walls):.2f}-{max(walls):.2f}) s, CPU "
                  f"{statistics.median(cpus):.2f} ({min(cpus):.2f}-{max(cpus):.2f}) s, peak RSS "
                  f"{statistics.median(peaks):.0f} ({min(peaks):.0f}-{max(peaks):.0f}) MB; "
                  f"load average now {os.getloadavg()[0]:.1f}")
    if shutil.which("facetrack") is None:
        print("note: facetrack is not on PATH; ran it as python -m facetrack.tracker.cli")


if __name__ == "__main__":
    main()
