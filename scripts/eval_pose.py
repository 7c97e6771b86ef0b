"""Rigid head pose against the AFLW2000-3D pose labels in ../shared/media/landmarks/aflw2000_3d.

AFLW2000-3D's Pose_Para holds (pitch, yaw, roll) in radians, each of the opposite sign
to ours. Prints per-image angles, correlations, the median pitch offset
(the source of `PITCH_CORRECTION_DEG`) and the mean absolute errors.

    python scripts/eval_pose.py [--media DIR]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import av
import numpy as np

from facetrack.engines.mediapipe_mesh import MediapipeFaceMesh
from facetrack.tracker.stages.pose import estimate_head_pose
from facetrack.training.landmark_files import read_aflw2000_pose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(os.environ.get("FACETRACK_MEDIA", Path(__file__).resolve().parents[1].parent / "shared" / "media"))
    parser.add_argument("--media", type=Path, default=default)
    args = parser.parse_args()
    rows = []
    with MediapipeFaceMesh(static_images=True) as engine:
        for jpg in sorted((args.media / "landmarks" / "aflw2000_3d").glob("*.jpg")):
            with av.open(str(jpg)) as container:
                image = next(container.decode(video=0)).to_ndarray(format="rgb24")
            faces = engine.process(image)
            if not faces:
                print(f"{jpg.name}: no face found")
                continue
            pose = estimate_head_pose(faces[0].landmarks, (image.shape[1], image.shape[0]))
            pitch, yaw, roll = read_aflw2000_pose(jpg.with_suffix(".mat"))
            ours = np.array([pose.yaw, pose.pitch, pose.roll])
            theirs = np.array([-yaw, -pitch, -roll])
            rows.append((ours, theirs))
            print(f"{jpg.name}: ours yaw/pitch/roll {np.round(ours, 1)}  labels {np.round(theirs, 1)}")
    ours, theirs = (np.array(r) for r in zip(*rows))
    for i, name in enumerate(("yaw", "pitch", "roll")):
        corr = np.corrcoef(ours[:, i], theirs[:, i])[0, 1]
        err = ours[:, i] - theirs[:, i]
        print(f"{name:>5}: corr {corr:.3f}  median offset {np.median(err):+.1f} deg  MAE {np.abs(err).mean():.1f} deg"
              f"  (|yaw|<45: MAE {np.abs(err[np.abs(theirs[:, 0]) < 45]).mean():.1f} deg)")
    print(f"images: {len(rows)}")


if __name__ == "__main__":
    main()
