"""Contact sheets of both eyes per frame, for labelling eye closures by looking at them.

    python scripts/label_sheets.py CLIP.mp4 OUT_DIR [--per-sheet 40] [--start 0] [--end N]

Each tile: the frame's eye strip (both eyes, aligned on the eye corners, the subject's
right eye on the image's left as in the video) at 4x the eye width, with the frame
number. Labels go to labels/<clip>.csv as `frame,left_closed,right_closed` (left = the
subject's left = the image's right; 1 closed, 0 open, -1 ignore).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import cv2
import numpy as np

from facetrack.engines.mediapipe_mesh import MediapipeFaceMesh
from facetrack.tracker.stages.eyes import L_CORNERS, R_CORNERS


def eye_strip(image: np.ndarray, lm: np.ndarray, size=(320, 96)) -> np.ndarray:
    a, b = lm[R_CORNERS[0], :2], lm[L_CORNERS[0], :2]
    d = b - a
    w = np.linalg.norm(d) * 1.35
    ex = d / np.linalg.norm(d)
    ey = np.array([-ex[1], ex[0]])
    c = 0.5 * (a + b)
    s = size[0] / w
    m = np.zeros((2, 3))
    m[0, :2], m[1, :2] = ex * s, ey * s
    m[:, 2] = np.array(size) / 2 - m[:, :2] @ c
    return cv2.warpAffine(image, m, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("clip")
    ap.add_argument("out", type=Path)
    ap.add_argument("--per-sheet", type=int, default=40)
    ap.add_argument("--cols", type=int, default=4)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--end", type=int, default=None)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tiles = []
    with av.open(args.clip) as c, MediapipeFaceMesh() as mesh:
        for i, f in enumerate(c.decode(video=0)):
            if args.end is not None and i >= args.end:
                break
            img = f.to_ndarray(format="rgb24")
            faces = mesh.process(img)
            if i < args.start:
                continue
            tile = eye_strip(img, faces[0].landmarks) if faces else np.zeros((96, 320, 3), np.uint8)
            tile = tile.copy()
            cv2.putText(tile, str(i), (4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 2)
            tiles.append(tile)
    name = Path(args.clip).stem
    for k in range(0, len(tiles), args.per_sheet):
        chunk = tiles[k:k + args.per_sheet]
        while len(chunk) % args.cols:
            chunk.append(np.zeros_like(tiles[0]))
        rows = [np.hstack(chunk[r:r + args.cols]) for r in range(0, len(chunk), args.cols)]
        sheet = np.vstack(rows)
        cv2.imwrite(str(args.out / f"{name}_{args.start + k:04d}.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


if __name__ == "__main__":
    main()
