"""Face part masks drawn from the landmark engine's own part polygons (mediapipe face mesh, 478 points).

The PRDL loss and the photometric skin weight need per-part pixel sets. With 478 points
the parts are outlined by mediapipe's published contours (`FaceLandmarksConnections` in the
installed wheel: lids, lips, brows, face oval) instead of the coarser iBUG-68 polygons of
`regressor._polygon_masks`; the part names are the same, so either can feed
`regressor.part_targets`.

- `right_eye`, `left_eye`: inside the lid contour (subject's right and left, mediapipe's names);
- `lips`: inside the outer lip contour, outside the inner one (the mouth opening is no part);
- `nose`: the convex hull of mediapipe's nose landmarks (its nose set is a ridge line plus
  the nostril outline, not a contour), less the eyes and the mouth;
- `skin`: the face oval (forehead included, as a face parser's skin class) less the eyes,
  brows, nose and the whole mouth.
"""

from __future__ import annotations

import functools

import numpy as np

from facetrack.tracker.core.schema import LANDMARK_COUNT

PART_NAMES = ("right_eye", "left_eye", "nose", "lips", "skin")
SUBPIXEL_BITS = 4
"""Fractional bits of the polygon vertices handed to OpenCV (1/16 px)."""


def _chains(connections: list) -> list[np.ndarray]:
    """An ordered connection list -> its vertex chains (a new chain where an edge does not continue the last)."""
    e = np.array([(c.start, c.end) for c in connections], np.int64)
    cut = np.flatnonzero(e[1:, 0] != e[:-1, 1]) + 1
    return [np.r_[seg[:, 0], seg[-1, 1]] for seg in np.split(e, cut)]


def polygons(connections: list) -> list[np.ndarray]:
    """Closed vertex loops from one of mediapipe's ordered connection lists.

    mediapipe lists a contour as one closed chain (the face oval) or as its two sides one
    after the other, both running the same way (lower then upper lid or lip line, lower then
    upper brow line); a side pair becomes one loop: the first side, then the second reversed.
    """
    chains = _chains(connections)
    loops = [c[:-1] for c in chains if c[0] == c[-1]]
    sides = [c for c in chains if c[0] != c[-1]]
    if len(sides) % 2:
        raise RuntimeError(f"an odd number of open contour sides ({len(sides)}): mediapipe's lists changed")
    for a, b in zip(sides[::2], sides[1::2]):
        loop = np.r_[a, b[::-1]]
        _, first = np.unique(loop, return_index=True)  # shared corners once, order kept
        loops.append(loop[np.sort(first)])
    return loops


@functools.cache
def part_polygons() -> dict[str, tuple[np.ndarray, ...]]:
    """Landmark index loops per region: eyes, brows, lips (outer and inner), face oval; nose = its point set."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_NOSE
    from mediapipe.tasks.python.vision.face_landmarker import FaceLandmarksConnections as C

    out = {name: tuple(polygons(getattr(C, f"FACE_LANDMARKS_{name.upper()}")))
           for name in ("right_eye", "left_eye", "right_eyebrow", "left_eyebrow", "lips", "face_oval")}
    out["nose"] = (np.unique(np.array(sorted(FACEMESH_NOSE)).ravel()),)
    return out


def part_landmarks_478() -> dict[str, np.ndarray]:
    """The landmark indices outlining each of `PART_NAMES` (stand-ins for a part squeezed to no pixels)."""
    p = part_polygons()
    return {"right_eye": p["right_eye"][0], "left_eye": p["left_eye"][0], "nose": p["nose"][0],
            "lips": np.concatenate(p["lips"]), "skin": p["face_oval"][0]}


def _fill(loops: list[np.ndarray], height: int, width: int) -> np.ndarray:
    import cv2

    m = np.zeros((height, width), np.uint8)
    for loop in loops:  # one call per loop: overlapping loops are a union, not an even-odd fill
        cv2.fillPoly(m, [loop], (1,), cv2.LINE_8, SUBPIXEL_BITS)
    return m.astype(bool)


def part_masks_478(landmarks: np.ndarray, height: int, width: int) -> dict[str, np.ndarray]:
    """Boolean (height, width) masks of `PART_NAMES` from one face's 478 points (x, y in pixels, y down).

    Pixel (i, j) covers [j, j+1) x [i, i+1) as in `regressor.part_targets`, so its centre is at
    (j + 0.5, i + 0.5); vertices are passed to OpenCV with sub-pixel precision.
    """
    import cv2

    pts = np.asarray(landmarks, np.float64)
    if pts.ndim != 2 or pts.shape[0] != LANDMARK_COUNT:
        raise ValueError(f"expected ({LANDMARK_COUNT}, 2 or 3) landmarks, got {pts.shape}")
    fixed = np.round((pts[:, :2] - 0.5) * (1 << SUBPIXEL_BITS)).astype(np.int32)
    poly = {name: [fixed[loop] for loop in loops] for name, loops in part_polygons().items()}
    right, left = _fill(poly["right_eye"], height, width), _fill(poly["left_eye"], height, width)
    brows = _fill(poly["right_eyebrow"] + poly["left_eyebrow"], height, width)
    lip_fills = [_fill([loop], height, width) for loop in poly["lips"]]
    outer, inner = sorted(lip_fills, key=lambda m: int(m.sum()), reverse=True)
    hull = cv2.convexHull(poly["nose"][0])
    nose = _fill([hull[:, 0]], height, width) & ~(right | left | outer)
    skin = _fill(poly["face_oval"], height, width) & ~(right | left | brows | nose | outer)
    return {"right_eye": right, "left_eye": left, "nose": nose, "lips": outer & ~inner, "skin": skin}
