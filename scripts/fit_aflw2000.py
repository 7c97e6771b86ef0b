"""NME of the fitted model's 68 iBUG points on the AFLW2000-3D sample (16 images).

Each image: mediapipe face mesh (static mode, 478 points) -> one fresh track of the
fitter -> the model's 68 points projected -> error against the re-annotated 68 points
(`labels/*_reannotated2d.pts`), normalised by sqrt(w * h) of the ground-truth box, as
3DDFA and its successors report it.

    python scripts/fit_aflw2000.py                       # builtin and ict (if installed)
    python scripts/fit_aflw2000.py --models builtin
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from facetrack.tracker.facemodel.fitter import FaceModelFitter
from facetrack.tracker.facemodel.format import ModelError
from facetrack.tracker.facemodel.registry import RIG_ID, load_model
from facetrack.training.landmark_files import read_pts

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("FACETRACK_MEDIA", ROOT.parent / "shared" / "media"))
DATA = MEDIA / "landmarks" / "aflw2000_3d"


def landmarks(image_path: Path) -> tuple[np.ndarray | None, tuple[int, int]]:
    import av
    import mediapipe as mp

    with av.open(str(image_path)) as c:
        img = next(c.decode(video=0)).to_ndarray(format="rgb24")
    h, w = img.shape[:2]
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True) as fm:
        r = fm.process(img)
    if not r.multi_face_landmarks:
        return None, (w, h)
    return np.array([[p.x * w, p.y * h, p.z * w] for p in r.multi_face_landmarks[0].landmark]), (w, h)


def nme(pred: np.ndarray, gt: np.ndarray, box: np.ndarray | None = None) -> float:
    """Mean point error / sqrt(area) of the ground truth's box (of `box` if given), in percent."""
    box = gt if box is None else box
    wh = box.max(0) - box.min(0)
    return float(100 * np.linalg.norm(pred - gt, axis=1).mean() / np.sqrt(wh[0] * wh[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="builtin,ict", help="comma-separated model ids")
    ap.add_argument("--data", type=Path, default=DATA, help="folder with image*.jpg and labels/")
    args = ap.parse_args()
    data = args.data
    images = sorted(data.glob("image*.jpg"))
    if not images:
        ap.error(f"no images in {data} (set FACETRACK_MEDIA)")
    cache = {p: landmarks(p) for p in images}
    for mid in args.models.split(","):
        try:
            model = None if mid == RIG_ID else load_model(mid)
        except ModelError as exc:
            print(f"{mid}: skipped ({exc})")
            continue
        errs, missed = [], []
        for p in images:
            lm, size = cache[p]
            if lm is None:
                missed.append(p.name)
                continue
            gt = read_pts(data / "labels" / f"{p.stem}_reannotated2d.pts")
            fitter = FaceModelFitter(model)
            res = fitter.fit(0, lm, size)
            errs.append([nme(res.landmarks68, gt), nme(res.landmarks68[:17], gt[:17], gt),
                         nme(res.landmarks68[17:], gt[17:], gt)])
        e = np.array(errs)
        print(f"{mid:8s} NME (sqrt(wh) of the GT box): mean {e[:, 0].mean():.2f}%  median {np.median(e[:, 0]):.2f}%"
              f"  max {e[:, 0].max():.2f}%  (jaw 1-17: {e[:, 1].mean():.2f}%, the other 51: {e[:, 2].mean():.2f}%)"
              f"  on {len(e)}/{len(images)} images" + (f"; no face: {missed}" if missed else ""))


if __name__ == "__main__":
    main()
