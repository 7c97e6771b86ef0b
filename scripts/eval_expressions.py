"""ARKit weights against expressions labelled by eye, through the real tracker.

    python scripts/eval_expressions.py [--labels ../shared/media/expressions/labels.csv ...]
        [--media ../shared/media] [--model builtin] [--mediapipe-weights off|below_brows|face]
        [--cache DIR] [--save weights.npz]

Every development clip (every clip under <media>/videos, plus any clip a label file names)
is tracked once with `facetrack run`'s defaults (Tracker/TrackerConfig; `--model` to compare
models). The largest face of each frame gives the 52 weights; a frame without a face reads
all zeros. The rules of the labels' README (facetrack.tracker.facemodel.label_checks) then
give: clear expressions found, absent ones kept low, neutral faces, the antagonistic-pair
rate over every frame of every clip, and the failures by frame.

`--cache DIR` records the landmark engine's output per clip on the first run and replays
it afterwards (the eye stage, fit, dynamics and filter still run on the real frames), so
fitter changes can be measured in a fraction of the time with the same landmarks.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from facetrack.engines.base import DetectedFace
from facetrack.engines.landmarks import make_landmark_engine
from facetrack.tracker.config import TrackerConfig
from facetrack.tracker.facemodel.label_checks import Summary, check_frame, read_labels
from facetrack.tracker.pipeline import Tracker

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_eyes_video import Recorder, Replay  # noqa: E402


def _save_faces(path: Path, frames: list[list[DetectedFace]]) -> None:
    """Recorded landmarks as plain arrays (no pickle): per face its frame, landmarks and score."""
    idx = [i for i, faces in enumerate(frames) for _ in faces]
    lms = [f.landmarks for faces in frames for f in faces]
    scores = [np.nan if f.detection_score is None else f.detection_score for faces in frames for f in faces]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, n=len(frames), frame=np.array(idx, np.int32),
                        landmarks=np.array(lms, np.float32).reshape(-1, 478, 3), score=np.array(scores, np.float32))


def _load_faces(path: Path) -> list[list[DetectedFace]]:
    with np.load(path, allow_pickle=False) as z:
        frames: list[list[DetectedFace]] = [[] for _ in range(int(z["n"]))]
        for i, lm, s in zip(z["frame"], z["landmarks"], z["score"]):
            frames[int(i)].append(DetectedFace(lm, None if np.isnan(s) else float(s)))
    return frames


def track_clip(video: Path, config: TrackerConfig, cache: Path | None) -> tuple[np.ndarray, float]:
    """(frames, 52) weights of the largest face per frame, and the fit stage's median ms per frame."""
    cached = cache / (video.parent.name + "__" + video.stem + ".npz") if cache else None
    recorder: Recorder | None = None
    if cached is not None and cached.is_file():
        frames = _load_faces(cached)

        def factory(cfg, still):
            return Replay(frames)
    else:
        def factory(cfg, still):
            nonlocal recorder
            recorder = Recorder(make_landmark_engine(cfg, still))
            return recorder
    tracker = Tracker(config, engine_factory=factory)
    rows = []
    for r in tracker.track(video):
        w = np.zeros(52, np.float32)
        if r.faces:
            f = max(r.faces, key=lambda x: (x.bbox[2] - x.bbox[0]))
            if f.blendshapes is not None:
                w = np.asarray(f.blendshapes, np.float32)
        rows.append(w)
    if cached is not None and recorder is not None:
        _save_faces(cached, recorder.frames)
    fit = tracker.timings.summary().get("fit")
    return np.stack(rows) if rows else np.zeros((0, 52), np.float32), fit.median_ms if fit else float("nan")


def default_label_files(media: Path) -> list[Path]:
    """The shared labels and the project's own label sets, those that exist."""
    root = Path(__file__).resolve().parents[1]
    return [p for p in (media / "expressions" / "labels.csv", root / "labels" / "expressions_extra.csv",
                        root / "labels" / "expressions_more.csv") if p.is_file()]


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--media", type=Path, default=root.parent / "shared" / "media")
    ap.add_argument("--labels", type=Path, nargs="*", default=None,
                    help="label CSVs (default: <media>/expressions/labels.csv, labels/expressions_extra.csv and "
                         "labels/expressions_more.csv)")
    ap.add_argument("--model", default=None, help="model id (default: TrackerConfig's default)")
    ap.add_argument("--mediapipe-weights", default="off", choices=["off", "below_brows", "face"],
                    help="TrackerConfig.mediapipe_weights (default: off, as `facetrack run`)")
    ap.add_argument("--cache", type=Path, default=None, help="record/replay landmarks per clip in this folder")
    ap.add_argument("--save", type=Path, default=None, help="write every clip's weights to this .npz")
    args = ap.parse_args()

    label_files = args.labels or default_label_files(args.media)
    rows = [r for p in label_files for r in read_labels(p)]
    clips = sorted({str(p.relative_to(args.media)) for p in (args.media / "videos").glob("*/*.mp4")}
                   | {r.clip for r in rows})
    config = TrackerConfig(mediapipe_weights=args.mediapipe_weights,
                           **({} if args.model is None else {"model": args.model}))
    summary = Summary()
    saved: dict[str, np.ndarray] = {}
    fit_ms = []
    t0 = time.perf_counter()
    for clip in clips:
        weights, ms = track_clip(args.media / clip, config, args.cache)
        fit_ms.append(ms)
        saved[clip] = weights
        summary.add_clip(weights)
        for row in (r for r in rows if r.clip == clip):
            w = weights[row.frame] if row.frame < len(weights) else np.zeros(52, np.float32)
            summary.add(check_frame(row, w))
    print(f"{len(rows)} labelled frames from {', '.join(str(p) for p in label_files)}; "
          f"{len(clips)} clips, {summary.frames} frames, model {config.model}, {time.perf_counter() - t0:.0f} s")
    for line in summary.lines():
        print(line)
    print("by label:")
    for line in summary.label_lines():
        print(line)
    print(f"fit stage per frame: median over clips {np.nanmedian(fit_ms):.2f} ms "
          f"(clip medians {np.nanmin(fit_ms):.2f}-{np.nanmax(fit_ms):.2f})")
    print("failures by frame:")
    for rid, fails in summary.failures.items():
        row = next(r for r in rows if r.id == rid)
        print(f"  {rid:>5} {row.clip}:{row.frame}: {'; '.join(fails)}")
    if args.save:
        np.savez_compressed(args.save, **{k.replace("/", "__"): v for k, v in saved.items()})


if __name__ == "__main__":
    main()
