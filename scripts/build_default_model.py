"""Build the packaged default face model (ict478) from the ICT Face Model Light release.

    python scripts/build_default_model.py --from <ICT-FaceKit folder | its zip | narrow-face .npz | URL>
        [--identity 40] [--out tracker/facemodel/data/ict478.npz]

The landmark embedding is computed by facetrack itself (renders of the neutral face,
mediapipe on the renders, back-projection), then the model is sampled at the 478
landmarks and the 68 iBUG points and made mirror-symmetric (facetrack.tracker.facemodel.compact).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from facetrack.tracker.facemodel.compact import build_compact_model
from facetrack.tracker.facemodel.ict import read_ict


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--from", dest="source", default=None, help="ICT release (default: the upstream archive)")
    ap.add_argument("--identity", type=int, default=40, help="identity modes kept")
    ap.add_argument("--out", type=Path, default=root / "tracker" / "facemodel" / "data" / "ict478.npz")
    args = ap.parse_args()
    model = build_compact_model(read_ict(args.source), args.identity)
    path = model.save(args.out)
    rep = model.extra["embedding_report"]
    print(f"{path}: {path.stat().st_size / 1e6:.2f} MB, {model.n_identity} identity, {model.n_expression} expression "
          f"modes, {int(model.lmk_valid.sum())}/478 landmarks fitted; embedding reprojection (median % of eye-corner "
          f"distance per view) {rep['reprojection_iod_pct_median']}")


if __name__ == "__main__":
    main()
