"""Train the landmark-to-weights head on synthetic faces of the packaged model and save it.

    python scripts/train_expression_head.py [--out tracker/facemodel/data/expression_head.npz]
        [--steps 4000] [--hidden 256 256] [--seed 0]

Never sees a labelled real frame (facetrack.training.expression_head); prints the
synthetic error on fresh faces. Measure it on the labelled frames with
scripts/eval_expressions.py.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from facetrack.tracker.facemodel.compact import load_default_model
from facetrack.training.expression_head import synthetic_error, train_head


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=root / "tracker" / "facemodel" / "data" / "expression_head.npz")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (more is slower on a busy machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_default_model()
    t0 = time.perf_counter()
    head = train_head(model, steps=args.steps, hidden=tuple(args.hidden), seed=args.seed)
    head.meta["train_seconds"] = round(time.perf_counter() - t0)
    err = synthetic_error(head, model)
    head.meta["synthetic"] = {k: round(v, 4) for k, v in err.items()}
    print(f"trained in {head.meta['train_seconds']} s; synthetic MAE {err['mae']:.4f} (drawn weights "
          f"{err['mae_drawn']:.4f})")
    print(f"saved {head.save(args.out)}")


if __name__ == "__main__":
    main()
