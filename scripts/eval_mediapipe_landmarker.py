"""The peer on the same labels: MediaPipe's own Face Landmarker with its blendshape network, on every clip.

    python scripts/eval_mediapipe_landmarker.py face_landmarker.task [--media ../shared/media]
        [--labels ...] [--save peer.npz]

MediaPipe runs end to end (its own detector, landmarks and blendshape network, in VIDEO mode, its
raw weights: no rest face, no smoothing), so the figures are MediaPipe's, not the project's reading of
its network (`--mediapipe-weights`). The task bundle is Google's (Apache-2.0) and is not in the
mediapipe wheel; where to get it: tracker/facemodel/data/MEDIAPIPE_BLENDSHAPES_CARD.md. Prints the
label checks as eval_expressions.py does; `--save` writes the weights in its format, for
scripts/compare_expression_runs.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import av
import numpy as np

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.facemodel.label_checks import Summary, check_frame, read_labels

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_expressions import default_label_files  # noqa: E402


def landmarker_weights(task: Path, video: Path) -> np.ndarray:
    """(frames, 52) ARKit weights of the first face MediaPipe finds per frame (zeros where none)."""
    import mediapipe as mp
    from mediapipe.tasks import python as mp_tasks
    from mediapipe.tasks.python import vision

    options = vision.FaceLandmarkerOptions(base_options=mp_tasks.BaseOptions(model_asset_path=str(task)),
                                           running_mode=vision.RunningMode.VIDEO, output_face_blendshapes=True,
                                           num_faces=1)
    rows = []
    with vision.FaceLandmarker.create_from_options(options) as landmarker, av.open(str(video)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 25)
        for i, frame in enumerate(container.decode(stream)):
            rgb = np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)
            result = landmarker.detect_for_video(image, int(i * 1000 / fps))
            scores = {c.category_name: c.score for c in result.face_blendshapes[0]} if result.face_blendshapes else {}
            rows.append(np.array([scores.get(n, 0.0) for n in ARKIT_BLENDSHAPES], np.float32))
    return np.stack(rows) if rows else np.zeros((0, 52), np.float32)


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("task", type=Path, help="MediaPipe's face_landmarker.task")
    ap.add_argument("--media", type=Path, default=root.parent / "shared" / "media")
    ap.add_argument("--labels", type=Path, nargs="*", default=None, help="label CSVs (default: eval_expressions')")
    ap.add_argument("--save", type=Path, default=None, help="write every clip's weights to this .npz")
    args = ap.parse_args()
    if not args.task.is_file():
        raise SystemExit(f"{args.task}: no such task bundle (MediaPipe's face_landmarker.task)")
    rows = [r for p in (args.labels or default_label_files(args.media)) for r in read_labels(p)]
    clips = sorted({str(p.relative_to(args.media)) for p in (args.media / "videos").glob("*/*.mp4")}
                   | {r.clip for r in rows})
    summary = Summary()
    saved: dict[str, np.ndarray] = {}
    for clip in clips:
        weights = landmarker_weights(args.task, args.media / clip)
        saved[clip] = weights
        summary.add_clip(weights)
        for row in (r for r in rows if r.clip == clip):
            summary.add(check_frame(row, weights[row.frame] if row.frame < len(weights) else np.zeros(52, np.float32)))
    print(f"MediaPipe's Face Landmarker: {len(rows)} labelled frames, {len(clips)} clips, {summary.frames} frames")
    for line in summary.lines() + ["by label:"] + summary.label_lines():
        print(line)
    if args.save:
        np.savez_compressed(args.save, **{k.replace("/", "__"): v for k, v in saved.items()})


if __name__ == "__main__":
    main()
