"""Eye-state engine accuracy on its held-back split, with confusion matrices (table + PNG).

    python scripts/eval_eyes_state.py [--engine engines/models/eye_state.onnx] [--data ../shared/media/eye_state]
                                      [--out docs/eyes]

Rebuilds the engine's own split from its metadata (the same hash of each file's path), so
nothing it trained on is scored: held-back eye crops (Open/Closed), held-back CEW closed
faces (both eyes cut by the landmark engine) and held-back UTKFace faces (eyes presumably
open, not verified). Also times the engine (both eyes, one thread).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from facetrack.engines.eye_state import DEFAULT_ENGINE, EyeStateEngine
from facetrack.training.eye_data import load_dataset
from facetrack.training.eye_state import evaluate


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engine", type=Path, default=DEFAULT_ENGINE)
    ap.add_argument("--data", type=Path, default=root.parent / "shared" / "media" / "eye_state")
    ap.add_argument("--out", type=Path, default=root / "docs" / "eyes")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "facetrack" / "eye-state")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    eng = EyeStateEngine(args.engine)
    meta = eng.metadata
    split = meta["split"]
    faces = [(f, "closed" if "closed" in f else "open") for f in meta["data"] if f != "eye_crops"]
    data = load_dataset(args.data, ["eye_crops"], faces, split["held_fraction"],
                        {f: split["face_held_fraction"] for f, _ in faces}, args.cache)
    rep = evaluate(eng.predict_stored, data).to_dict()
    x = np.random.default_rng(0).integers(0, 255, (2, eng.input_size[1], eng.input_size[0]), dtype=np.uint8)
    for _ in range(50):
        eng.predict(x)
    ts = []
    for _ in range(500):
        t = time.perf_counter()
        eng.predict(x)
        ts.append(time.perf_counter() - t)
    rep["timing_ms_both_eyes"] = float(np.median(ts) * 1e3)
    (args.out / "eye_state.json").write_text(json.dumps(rep, indent=1) + "\n")
    lines = ["| held-back part | n | accuracy | "
             "confusion [[open->open, open->closed], [closed->open, closed->closed]] |",
             "| --- | --- | --- | --- |"]
    for name, part in rep.items():
        if isinstance(part, dict):
            lines.append(f"| {name} | {part['n']} | {100 * part['accuracy']:.2f}% | {part['confusion']} |")
    lines.append(f"\nengine {eng.version} ({args.engine.name}), "
                 f"both eyes: {rep['timing_ms_both_eyes']:.3f} ms median (1 thread)")
    (args.out / "eye_state.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [(k, v) for k, v in rep.items() if isinstance(v, dict)]
    fig, axes = plt.subplots(1, len(parts), figsize=(3.2 * len(parts), 3.2))
    for ax, (name, part) in zip(np.atleast_1d(axes), parts):
        cm = np.array(part["confusion"])
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", color="black" if v < cm.max() / 2 else "white")
        ax.set_xticks([0, 1], ["open", "closed"])
        ax.set_yticks([0, 1], ["open", "closed"])
        ax.set_xlabel("predicted")
        ax.set_ylabel("label")
        ax.set_title(f"{name.replace('held:', '')}\n{100 * part['accuracy']:.2f}% (n={part['n']})", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "eye_state_confusion.png", dpi=90)


if __name__ == "__main__":
    main()
