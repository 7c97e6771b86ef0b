"""Fuzz every parser facetrack exposes to untrusted bytes; each case is time-boxed.

Targets:
- video: real clips in several containers, cut at every 1% of their bytes and with bytes
  flipped, read to the end through `open_source` (only SourceOpenError / SourceDecodeError
  may come out, and the read must finish in time);
- message: real encoded frames and metadata (msgpack and JSON) mutated, decoded with
  `decode_message` (only ProtocolError);
- model: a valid face-model file mutated, loaded with `MorphableModel.load` (only ModelError);
- results: a results file (.jsonl) mutated, read with `read_results` (only ProtocolError / SinkError).

A case that raises anything else is a crash; one that outlives its time box is a hang.
Prints a JSON summary and exits 1 if any case crashed or hung.

    python scripts/fuzz.py --cases 10000           # the long run (figures in RELIABILITY.md)
    python scripts/fuzz.py --cases 300 --json out.json   # what CI runs

Inputs of failing file cases are copied to `--keep DIR` to reproduce them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from facetrack.adapters.codec import encode_message
from facetrack.adapters.file_sinks import open_file_sink, read_results
from facetrack.tracker.core.errors import FacetrackError
from facetrack.tracker.facemodel.format import MorphableModel
from facetrack.tracker.sources.config import SourceConfig
from facetrack.tracker.sources.frame_source import open_source

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from synthetic import synthetic_metadata, synthetic_result  # noqa: E402  (the tests' generator of results)

TIME_BOX_S = 10.0


def _encode(path: Path, container: str, codec: str, frames: int = 12, size: int = 64) -> bytes:
    rng = np.random.default_rng(0)
    options = {"movflags": "faststart"} if container == "mp4" else {}
    with av.open(str(path), "w", format=container, options=options) as out:
        stream = out.add_stream(codec, rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.time_base = Fraction(1, 25)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path.read_bytes()


def _mutations(data: bytes, rng: random.Random) -> bytes:
    """Cut, flip a few bytes, overwrite a run, or duplicate a slice."""
    kind = rng.randrange(4)
    if kind == 0:
        return data[: rng.randrange(len(data))]
    buf = bytearray(data)
    if kind == 1:
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif kind == 2:
        start = rng.randrange(len(buf))
        buf[start:start + rng.randint(1, 64)] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    else:
        start = rng.randrange(len(buf))
        buf[start:start] = buf[start:start + rng.randint(1, 256)]
    return bytes(buf)


def _read_video(path: Path) -> int:
    """Read a source to its end; the frame count is incidental, the errors are the point."""
    with open_source(path, SourceConfig()) as frames:
        return sum(1 for _ in frames)


@dataclass(frozen=True)
class _Case:
    run: Callable[[], object]
    input_file: Path | None
    """The mutated file the case reads, kept when the case fails."""


def _time_boxed(case: Callable[[], object]) -> str:
    """'ok', 'refused' (a FacetrackError), 'crash: ...' or 'hang'."""
    outcome: list[str] = []

    def target() -> None:
        try:
            case()
            outcome.append("ok")
        except FacetrackError:
            outcome.append("refused")
        except Exception as exc:  # noqa: BLE001 - anything else is what we are looking for
            outcome.append(f"crash: {type(exc).__name__}: {exc}"[:300])

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(TIME_BOX_S)
    return outcome[0] if outcome else "hang"


def _video_cases(work: Path, count: int, rng: random.Random) -> list[_Case]:
    clips = [_encode(work / f"clip.{c}", c, codec) for c, codec in
             (("mp4", "libx264"), ("matroska", "libx264"), ("mpegts", "mpeg2video"), ("avi", "mjpeg"))]
    cases = []
    for i in range(count):
        data = clips[i % len(clips)]
        if i < 100 * len(clips):  # every 1% cut of every container first
            variant = data[: len(data) * (i // len(clips) + 1) // 101]
        else:
            variant = _mutations(data, rng)
        path = work / f"v{i}.bin"
        path.write_bytes(variant)
        cases.append(_Case(lambda path=path: _read_video(path), path))
    return cases


def _message_cases(count: int, rng: random.Random) -> list[_Case]:
    from facetrack.adapters.codec import decode_message

    nrng = np.random.default_rng(1)
    seeds = [(encode_message(m, enc), enc) for enc in ("msgpack", "json")
             for m in (synthetic_result(nrng, 0, faces=2), synthetic_metadata())]
    cases = []
    for i in range(count):
        payload, encoding = seeds[i % len(seeds)]
        mutated = _mutations(payload, rng)
        cases.append(_Case(lambda mutated=mutated, encoding=encoding: decode_message(mutated, encoding), None))
    return cases


def _model_cases(work: Path, count: int, rng: random.Random) -> list[_Case]:
    v = 50
    model = MorphableModel(
        id="fuzz", name="fuzz", neutral=np.zeros((v, 3), np.float32), id_basis=np.zeros((2, v, 3), np.float32),
        exp_basis=np.zeros((3, v, 3), np.float32), exp_names=["jawOpen", "eyeBlinkLeft", "eyeBlinkRight"],
        triangles=np.array([[0, 1, 2]], np.int32), lmk_vertices=np.zeros((478, 3), np.int32),
        lmk_bary=np.full((478, 3), 1 / 3, np.float32), lmk_valid=np.ones(478, bool),
        lmk68_vertices=np.zeros((68, 3), np.int32), lmk68_bary=np.full((68, 3), 1 / 3, np.float32),
        arkit_map=np.zeros((52, 3), np.float32), licence="test", units="cm", source="fuzz",
    )
    data = model.save(work / "model.npz").read_bytes()
    cases = []
    for i in range(count):
        path = work / f"m{i}.npz"
        path.write_bytes(_mutations(data, rng))
        cases.append(_Case(lambda path=path: MorphableModel.load(path), path))
    return cases


def _results_cases(work: Path, count: int, rng: random.Random) -> list[_Case]:
    nrng = np.random.default_rng(2)
    sink = open_file_sink(work / "take.jsonl")
    sink.start(synthetic_metadata())
    for i in range(3):
        sink.write(synthetic_result(nrng, i))
    sink.close()
    data = (work / "take.jsonl").read_bytes()
    cases = []
    for i in range(count):
        path = work / f"r{i}.jsonl"
        path.write_bytes(_mutations(data, rng))
        cases.append(_Case(lambda path=path: read_results(path), path))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000, help="total cases, split over the targets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    parser.add_argument("--keep", type=Path, default=Path("fuzz-failures"), help="where failing inputs are copied")
    parser.add_argument("--targets", default="video,message,model,results", help="comma-separated subset")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    share = {"video": 0.2, "message": 0.4, "model": 0.2, "results": 0.2}
    summary: dict[str, dict] = {}
    failures: list[str] = []
    builders = {
        "video": lambda folder, n: _video_cases(folder, n, rng),
        "message": lambda folder, n: _message_cases(n, rng),
        "model": lambda folder, n: _model_cases(folder, n, rng),
        "results": lambda folder, n: _results_cases(folder, n, rng),
    }
    for target, fraction in share.items():
        if target not in args.targets.split(","):
            continue
        with tempfile.TemporaryDirectory() as folder:
            cases = builders[target](Path(folder), max(1, int(args.cases * fraction)))
            started = time.perf_counter()
            outcomes = Counter()
            for case in cases:
                outcome = _time_boxed(case.run)
                outcomes["crash" if outcome.startswith("crash") else outcome] += 1
                if outcome.startswith("crash") or outcome == "hang":
                    kept = ""
                    if case.input_file is not None:
                        args.keep.mkdir(parents=True, exist_ok=True)
                        kept = f" (input kept as {shutil.copy(case.input_file, args.keep / case.input_file.name)})"
                    failures.append(f"{target}: {outcome}{kept}")
            summary[target] = {"cases": len(cases), **outcomes, "seconds": round(time.perf_counter() - started, 1)}
    report = {"cases": sum(t["cases"] for t in summary.values()), "targets": summary,
              "failures": failures[:20], "seed": args.seed, "time_box_s": TIME_BOX_S, "cpu_count": os.cpu_count()}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text)
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
