"""Jitter on a still face (filter on/off) and the cost of the eye stages per face.

    python scripts/eval_eyes_bench.py [--media ../shared/media] [--out docs/eyes] [--frames 150] [--noise 2 4]

Jitter: one real frame (frame 0 of SadTalker_ref/WDA_KatieHill_000.mp4, a frontal face),
repeated at 25 fps with independent Gaussian pixel noise (sigma in grey levels), tracked by
the full pipeline in video mode. Reported after a 25-frame warm-up: the standard deviation
over time of each landmark's x and y (mean over the 478, and over the 16 eye-contour points),
as a percentage of the outer eye-corner distance (OpenSeeFace reports 0.09% on such a test),
and of each blendshape weight (mean and max over the 52), with the temporal filter off and on.

Timing: medians per face on this machine with 1 thread, isolated (the eye-state engine on
both eyes incl. the crops, ELAM incl. calibration, dynamics) and as pipeline stages on the
whole clip (`Tracker.timings`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import av
import numpy as np

from facetrack.tracker.config import TrackerConfig
from facetrack.tracker.core.schema import SourceInfo
from facetrack.tracker.pipeline import Tracker
from facetrack.tracker.sources.config import Frame
from facetrack.tracker.sources.frame_source import FrameSource
from facetrack.tracker.stages import eyes as E
from facetrack.tracker.stages.filter import FilterConfig

CLIP = "videos/SadTalker_ref/WDA_KatieHill_000.mp4"


class ArraySource(FrameSource):
    """Frames from memory at a fixed rate (a stand-in for a file: never drops)."""

    def __init__(self, images: list[np.ndarray], fps: float = 25.0) -> None:  # noqa: D107 - no thread here
        h, w = images[0].shape[:2]
        self.info = SourceInfo(uri="memory://still", live=False, width=w, height=h, fps=fps)
        self.live = False
        self._images = images
        self._fps = fps

    def __iter__(self):
        for i, im in enumerate(self._images):
            yield Frame(index=i, pts=i / self._fps, capture_time=time.time(), image=im, dropped=0)

    def close(self) -> None:
        """Nothing to release: the frames live in memory."""


def jitter(image: np.ndarray, frames: int, noise: float, filtered: bool, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    imgs = [np.clip(image + rng.normal(0, noise, image.shape), 0, 255).astype(np.uint8) for _ in range(frames)]
    tracker = Tracker(TrackerConfig(filter=FilterConfig(enabled=filtered)))
    lms, bss, ps = [], [], []
    for r in tracker.track(ArraySource(imgs)):
        f = r.faces[0]
        lms.append(f.landmarks[:, :2].astype(np.float64))
        bss.append(f.blendshapes.astype(np.float64))
        ps.append((f.eyes.left.p_closed, f.eyes.right.p_closed))
    lm, bs = np.array(lms[25:]), np.array(bss[25:])
    scale = np.linalg.norm(lm[:, E.L_CORNERS[0]] - lm[:, E.R_CORNERS[0]], axis=1).mean()
    lstd = lm.std(0).mean(1)  # per landmark, mean of x/y std
    eye_idx = np.concatenate([E.L_UPPER, E.L_LOWER, E.R_UPPER, E.R_LOWER])
    bstd = bs.std(0)
    return {
        "noise_sigma": noise, "filter": filtered, "frames": len(lm), "eye_corner_px": float(scale),
        "landmark_std_px": float(lstd.mean()), "landmark_std_pct": float(100 * lstd.mean() / scale),
        "eye_contour_std_pct": float(100 * lstd[eye_idx].mean() / scale),
        "blendshape_std_mean": float(bstd.mean()), "blendshape_std_max": float(bstd.max()),
        "p_closed_max": float(np.nanmax(np.array(ps, dtype=float))),
    }


def timing(images: list[np.ndarray]) -> dict:
    from facetrack.engines.eye_state import EyeStateEngine
    from facetrack.engines.mediapipe_mesh import MediapipeFaceMesh
    from facetrack.tracker.facemodel.fitter import FaceModelFitter
    from facetrack.tracker.stages.dynamics import LipLidDynamics

    with MediapipeFaceMesh() as mesh:
        lms = [mesh.process(im)[0].landmarks for im in images]
    fitter, dyn, eng = FaceModelFitter(), LipLidDynamics(), EyeStateEngine()
    w, h = images[0].shape[1], images[0].shape[0]
    fits = [fitter.fit(0, lm, (w, h)) for lm in lms]
    ref = np.array([0.3, 0.3])

    def med(fn, reps: int = 3) -> float:
        ts = []
        for _ in range(reps):
            for i in range(len(images)):
                t = time.perf_counter()
                fn(i)
                ts.append(time.perf_counter() - t)
        return float(np.median(ts) * 1e3)

    out = {
        "eye_state_engine_incl_crops_ms": med(lambda i: eng.predict(E.cut_eye_crops(images[i], lms[i]))),
        "crops_ms": med(lambda i: E.cut_eye_crops(images[i], lms[i])),
        "elam_ms": med(lambda i: E.elam_correct(lms[i], np.array([0.9, 0.9]), ref)),
        "dynamics_ms": med(lambda i: dyn.refine(fits[i], lms[i], ref)),
    }
    out["eyes_elam_dynamics_ms"] = out["eye_state_engine_incl_crops_ms"] + out["elam_ms"] + out["dynamics_ms"]
    tracker = Tracker(TrackerConfig())
    sum(1 for _ in tracker.track(ArraySource(images)))  # run every frame; the timings are what we want
    out["pipeline_stages_median_ms"] = {k: round(v.median_ms, 3) for k, v in tracker.timings.summary().items()}
    return out


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--media", type=Path, default=root.parent / "shared" / "media")
    ap.add_argument("--out", type=Path, default=root / "docs" / "eyes")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--noise", type=float, nargs="+", default=[2.0, 4.0])
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with av.open(str(args.media / CLIP)) as c:
        images = [f.to_ndarray(format="rgb24") for _, f in zip(range(200), c.decode(video=0))]
    res = {"jitter": [jitter(images[0], args.frames, s, flt) for s in args.noise for flt in (False, True)]}
    res["timing"] = timing(images)
    (args.out / "bench.json").write_text(json.dumps(res, indent=1) + "\n")
    lines = ["| noise sigma | filter | landmark std (% eye-corner dist.) | eye contour std (%) | "
             "blendshape std mean | blendshape std max |",
             "| --- | --- | --- | --- | --- | --- |"]
    for j in res["jitter"]:
        lines.append(f"| {j['noise_sigma']:g} | {'on' if j['filter'] else 'off'} | {j['landmark_std_pct']:.3f} | "
                     f"{j['eye_contour_std_pct']:.3f} | {j['blendshape_std_mean']:.4f} | "
                     f"{j['blendshape_std_max']:.4f} |")
    t = res["timing"]
    lines += ["", "| per face (median, 1 thread) | ms |", "| --- | --- |"]
    for k in ("crops_ms", "eye_state_engine_incl_crops_ms", "elam_ms", "dynamics_ms", "eyes_elam_dynamics_ms"):
        lines.append(f"| {k[:-3]} | {t[k]:.3f} |")
    lines += ["", "pipeline stages (median ms per frame, one face): " +
              ", ".join(f"{k} {v}" for k, v in t["pipeline_stages_median_ms"].items())]
    (args.out / "bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
