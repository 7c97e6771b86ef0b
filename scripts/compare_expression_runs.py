"""Score saved runs of eval_expressions.py against the labels, alone, combined and at their joint ceiling.

    python scripts/eval_expressions.py --cache DIR --save head.npz
    python scripts/eval_expressions.py --cache DIR --mediapipe-weights face --save network.npz
    python scripts/compare_expression_runs.py head.npz network.npz [--labels ...] [--media ../shared/media]

Why: before building a way to combine two readers of the weights (the project's head, MediaPipe's
network, another setting), this says what any combination of them could reach. Each run is scored
by the labels' rules with its counts per label; for the first two runs, the per-weight mean, larger
and smaller of the two (every weight but eye*, which the eye stage owns in every run); and over all
runs, the clear expressions that *some* run finds on each frame: a ceiling no per-frame choice
between these runs can pass, not a method.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.facemodel.label_checks import LABELS, LabelRow, Summary, check_frame, read_labels

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_expressions import default_label_files  # noqa: E402

EYE = np.array([n.startswith("eye") for n in ARKIT_BLENDSHAPES])

Run = dict[str, np.ndarray]


def load_run(path: Path) -> Run:
    """A run saved by eval_expressions.py --save: clip (with / for __) -> (frames, 52) weights."""
    with np.load(path, allow_pickle=False) as z:
        return {k.replace("__", "/"): z[k] for k in z.files}


def weights_at(run: Run, row: LabelRow) -> np.ndarray:
    """The labelled frame's 52 weights in a run (zeros past the clip's end, as eval_expressions.py scores it)."""
    weights = run.get(row.clip)
    if weights is None:
        raise SystemExit(f"the run has no clip {row.clip}: save it with the same media and labels")
    return weights[row.frame] if row.frame < len(weights) else np.zeros(52, np.float32)


def score(run: Run, rows: list[LabelRow]) -> Summary:
    summary = Summary()
    for weights in run.values():
        summary.add_clip(weights)
    for row in rows:
        summary.add(check_frame(row, weights_at(run, row)))
    return summary


def combined(a: Run, b: Run, rule: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Run:
    """Each clip's weights by `rule` of the two runs', eye* from the first."""
    return {clip: np.where(EYE, a[clip], rule(a[clip], b[clip])).astype(np.float32) for clip in a}


def ceiling(runs: list[Run], rows: list[LabelRow]) -> dict[str, list[int]]:
    """Per label: clear expressions that at least one run finds on the frame, and how many were checked."""
    out = {lab: [0, 0] for lab in LABELS}
    for row in rows:
        verdicts = [check_frame(row, weights_at(run, row)) for run in runs]
        for i, (lab, *_rest) in enumerate(verdicts[0].clear):
            out[lab][0] += any(v.clear[i][3] for v in verdicts)
            out[lab][1] += 1
    return out


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", type=Path, nargs="+", help=".npz files written by eval_expressions.py --save")
    ap.add_argument("--media", type=Path, default=root.parent / "shared" / "media")
    ap.add_argument("--labels", type=Path, nargs="*", default=None, help="label CSVs (default: eval_expressions'")
    args = ap.parse_args()
    rows = [r for p in (args.labels or default_label_files(args.media)) for r in read_labels(p)]
    runs = [load_run(p) for p in args.runs]
    if any(set(r) != set(runs[0]) for r in runs):
        raise SystemExit("the runs hold different clips: save each with the same media and labels")

    table: list[tuple[str, Summary]] = [(p.stem, score(r, rows)) for p, r in zip(args.runs, runs)]
    if len(runs) >= 2:
        a, b = runs[0], runs[1]
        names = f"{args.runs[0].stem}, {args.runs[1].stem}"
        table += [(f"mean of {names}", score(combined(a, b, lambda x, y: 0.5 * (x + y)), rows)),
                  (f"larger of {names}", score(combined(a, b, np.maximum), rows)),
                  (f"smaller of {names}", score(combined(a, b, np.minimum), rows))]
    print(f"{len(rows)} labelled frames; clear found / absent kept low / neutral / antagonistic frames")
    for name, s in table:
        print(f"{name}: {s.clear_found}/{s.clear_total}, {s.absent_low}/{s.absent_total}, "
              f"{s.neutral_ok}/{s.neutral_total}, {s.antagonistic_frames}/{s.frames}")
        for line in s.label_lines():
            print(line)
    top = ceiling(runs, rows)
    found, total = sum(v[0] for v in top.values()), sum(v[1] for v in top.values())
    print(f"ceiling (found by some run on the frame): {found}/{total} "
          + ", ".join(f"{lab} {v[0]}/{v[1]}" for lab, v in top.items()))


if __name__ == "__main__":
    main()
