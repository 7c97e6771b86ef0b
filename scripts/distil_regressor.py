"""Distil the per-frame fitter into the `regress` engine on the dev clips, and measure the result.

Tracks every clip under --videos once (the crops, the fitter's 68 points, ARKit weights and
eye states are cached in --work, never in the repository), builds the shared face model
from the training clips only, trains the recipe with the --held clips kept out, exports
the engine and reports its agreement with the fitter on the held-out clips next to the
constant baselines (all zeros, the training mean and median per shape) and its speed
against the fitter's. Writes <work>/<out>/metrics.json and report.md (the numbers of
docs/training.md, "Distilling the fitter").

    nice -n 19 python scripts/distil_regressor.py --out l1 --set losses.coef_kind='"l1"' --max-minutes 20
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HELD = ("d9", "s32", "M026_level_3_disgusted_018", "5")
"""The clips kept out by default: the first run's four (two people talking, one acted expression, one driver)."""
KEY_SHAPES = ("eyeBlinkLeft", "eyeBlinkRight", "jawOpen", "mouthClose", "mouthSmileLeft", "mouthSmileRight",
              "mouthFunnel", "mouthPucker", "browInnerUp", "browDownLeft")
CORR_SHAPES = ("jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight")


def prepare(videos: Path, work: Path, size: int, every: int, max_frames: int) -> dict:
    """Track the clips once per (size, every, max_frames): clips.npz, heads.npz (head-frame shapes for the
    face model) and data.json (frames and the tracker's ms per frame per clip)."""
    from facetrack.training.distil import track_clip, write_npz

    params = {"size": size, "every": every, "max_frames": max_frames, "videos": str(videos)}
    info_path = work / "data.json"
    if info_path.is_file() and json.loads(info_path.read_text())["params"] == params:
        return json.loads(info_path.read_text())
    work.mkdir(parents=True, exist_ok=True)
    clips = []
    for path in sorted(videos.glob("*/*.mp4")):
        t0 = time.time()
        clip = track_clip(path, size, every=every, max_frames=max_frames)
        print(f"{path.name:34s} {len(clip.images):5d} crops  tracker {1e3 * clip.fit_seconds:5.1f} ms/frame  "
              f"{time.time() - t0:5.1f} s", flush=True)
        clips.append(clip)
    kept = [c for c in clips if c.images]
    write_npz(kept, work / "clips.npz")
    np.savez_compressed(work / "heads.npz", **{c.name: np.stack(c.head_shapes) for c in kept})
    info = {"params": params, "clips": {c.name: {"crops": len(c.images), "tracker_ms_per_frame": 1e3 * c.fit_seconds}
                                        for c in clips}}
    info_path.write_text(json.dumps(info, indent=1))
    return info


def face_model_for(work: Path, train_clips: list[str], out: Path) -> Path:
    """The built-in rig on the training clips' mean neutral with their PCA identity basis (no held-out face in it)."""
    from facetrack.training.distil import ClipFrames, shared_model

    with np.load(work / "heads.npz") as z:
        clips = [ClipFrames(n, head_shapes=list(z[n])) for n in train_clips]
    path = out / "model.npz"
    shared_model(clips).save(path)
    return path


def make_recipe(path: Path, overrides: list[str], data: Path, model: Path, held: list[int], epochs: int | None,
                max_minutes: float | None):
    """The recipe with --set KEY=JSON overrides (dotted keys) and this run's data, model and held clips."""
    from facetrack.training.recipe import Recipe, load_recipe

    raw = load_recipe(path).model_dump(mode="json")
    for item in overrides:
        key, _, value = item.partition("=")
        node = raw
        *parents, leaf = key.split(".")
        for k in parents:
            node = node[k]
        node[leaf] = json.loads(value)
    raw["data"].update(kind="npz", path=str(data), held_subjects=held)
    raw["model"]["face_model"] = str(model)
    if epochs is not None:
        raw["train"]["epochs"] = epochs
    if max_minutes is not None:
        raw["train"]["max_seconds"] = 60 * max_minutes
    return Recipe.model_validate(raw)


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 1e-6 and b.std() > 1e-6 else None


def evaluate(engine_path: Path, model_path: Path, data: Path, held: np.ndarray) -> dict:
    """Agreement with the fitter on the held-out crops, the constant baselines, and the engine's speed."""
    import torch

    from facetrack.engines.onnx_runtime import OnnxEngine
    from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
    from facetrack.tracker.facemodel.format import MorphableModel
    from facetrack.training.regressor import normalise
    from facetrack.training.render import TorchFaceModel, transform

    engine = OnnxEngine(engine_path, threads=1)
    face = TorchFaceModel.from_morphable(MorphableModel.load(model_path))
    with np.load(data) as z:
        images, gt, target, subject, names = z["images"], z["landmarks"], z["expression"], z["subject"], z["clips"]
    size = engine.metadata["input_size"][0]
    crops = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    if crops.shape[-1] != size:
        crops = torch.nn.functional.interpolate(crops, size=(size, size), mode="bilinear", align_corners=False)
    x = normalise(crops).numpy()
    outs = [engine.run(x[i:i + 64]) for i in range(0, len(x), 64)]
    identity, expr, pose = (np.concatenate([o[k] for o in outs]) for k in range(3))
    with torch.no_grad():
        _, px = transform(face.vertices(torch.from_numpy(identity), torch.from_numpy(expr)), torch.from_numpy(pose))
        lmk = face.landmarks(px).numpy() * (images.shape[1] / size)
    iod = np.linalg.norm(gt[:, 36] - gt[:, 45], axis=1)
    nme = np.linalg.norm(lmk - gt, axis=2).mean(1) / iod
    mean_shape_nme = np.linalg.norm(gt - gt[~held].mean(0), axis=2).mean(1) / iod
    t_held, p_held = target[held], expr[held]
    consts = {"zeros": np.zeros(target.shape[1]), "train_mean": target[~held].mean(0),
              "train_median": np.median(target[~held], 0)}
    res: dict = {"held_crops": int(held.sum()), "train_crops": int((~held).sum()),
                 "nme": {"regressor": float(nme[held].mean()), "train_mean_shape": float(mean_shape_nme[held].mean()),
                         "regressor_train_clips": float(nme[~held].mean())},
                 "arkit_mae": {"regressor": float(np.abs(p_held - t_held).mean()),
                               **{k: float(np.abs(c - t_held).mean()) for k, c in consts.items()},
                               "regressor_train_clips": float(np.abs(expr[~held] - target[~held]).mean())},
                 "shape_mae": {}, "corr": {}, "per_clip": {}}
    for name in KEY_SHAPES:
        k = ARKIT_BLENDSHAPES.index(name)
        res["shape_mae"][name] = {"regressor": float(np.abs(p_held[:, k] - t_held[:, k]).mean()),
                                  **{c: float(np.abs(v[k] - t_held[:, k]).mean()) for c, v in consts.items()},
                                  "fitter_mean": float(t_held[:, k].mean())}
    for name in CORR_SHAPES:
        k = ARKIT_BLENDSHAPES.index(name)
        res["corr"][name] = _corr(p_held[:, k], t_held[:, k])
    jaw = ARKIT_BLENDSHAPES.index("jawOpen")
    for c in np.unique(subject[held]):
        m = subject == c
        res["per_clip"][str(names[c])] = {"crops": int(m.sum()), "nme": float(nme[m].mean()),
                                          "arkit_mae": float(np.abs(expr[m] - target[m]).mean()),
                                          "zeros_mae": float(np.abs(target[m]).mean()),
                                          "jawOpen_r": _corr(expr[m, jaw], target[m, jaw])}
    one = x[:1]
    for _ in range(30):
        engine.run(one)
    ms = []
    for _ in range(500):
        t0 = time.perf_counter()
        engine.run(one)
        ms.append(1e3 * (time.perf_counter() - t0))
    res["speed_ms"] = {"regressor_per_crop_1_thread": float(np.median(ms))}
    return res


def fitter_timing(clip: Path) -> dict:
    """The tracker's per-stage medians on one clip: the `fit` stage is what the regressor would replace."""
    from facetrack.tracker import Tracker, TrackerConfig

    tracker = Tracker(TrackerConfig(max_faces=1, max_frames=300))
    tracker.run(str(clip), [])
    stages = {k: v.median_ms for k, v in tracker.timings.summary().items()}
    return {"fitter_fit_stage": stages.get("fit"), "tracker_stages_sum": float(sum(stages.values())),
            "tracker_stages": stages, "tracker_clip": clip.name}


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def report(res: dict, title: str) -> str:
    """The markdown tables of docs/training.md."""
    a, n, c, s = res["arkit_mae"], res["nme"], res["corr"], res["speed_ms"]
    dashes = " - |" * len(c)
    lines = [f"### {title}", "",
             f"Held-out clips: {', '.join(res['per_clip'])} ({res['held_crops']} crops; "
             f"{res['train_crops']} training crops).", "",
             "| | ARKit MAE | 68-pt NME | " + " | ".join(f"{k} r" for k in c) + " |",
             "|---|---|---|" + "---|" * len(c),
             f"| regressor | {_f(a['regressor'])} | {_f(n['regressor'])} | " + " | ".join(map(_f, c.values())) + " |",
             f"| all zeros | {_f(a['zeros'])} | - |" + dashes,
             f"| training mean | {_f(a['train_mean'])} | {_f(n['train_mean_shape'])} |" + dashes,
             f"| training median | {_f(a['train_median'])} | - |" + dashes, "",
             "| shape | regressor | zeros | training mean | training median | fitter mean |",
             "|---|---|---|---|---|---|"]
    for name, v in res["shape_mae"].items():
        lines.append(f"| {name} | {_f(v['regressor'])} | {_f(v['zeros'])} | {_f(v['train_mean'])} | "
                     f"{_f(v['train_median'])} | {_f(v['fitter_mean'])} |")
    lines += ["", "| held-out clip | crops | NME | ARKit MAE | zeros MAE | jawOpen r |", "|---|---|---|---|---|---|"]
    for name, v in res["per_clip"].items():
        lines.append(f"| {name} | {v['crops']} | {_f(v['nme'])} | {_f(v['arkit_mae'])} | {_f(v['zeros_mae'])} | "
                     f"{_f(v['jawOpen_r'])} |")
    lines += ["", f"Speed: regressor {s['regressor_per_crop_1_thread']:.2f} ms per crop (ONNX Runtime, 1 thread); "
              f"fitter {_f(s['fitter_fit_stage'])} ms per face (median `fit` stage), whole tracker "
              f"{s['tracker_stages_sum']:.1f} ms per frame (sum of stage medians, {s['tracker_clip']})."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=Path, default=ROOT.parent / "shared" / "media" / "videos")
    p.add_argument("--work", type=Path, default=Path("/tmp/facetrack-distil"), help="Cache and run folders.")
    p.add_argument("--out", default="run", help="Run folder name under --work.")
    p.add_argument("--recipe", type=Path, default=ROOT / "training" / "recipes" / "distil_clips.json")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=JSON",
                   help="Override a recipe value, e.g. losses.coef_kind='\"l1\"' (repeatable).")
    p.add_argument("--held", default=",".join(HELD), help="Comma-separated clip names kept out.")
    p.add_argument("--size", type=int, default=96, help="Crop side cached, pixels.")
    p.add_argument("--every", type=int, default=1, help="Keep every n-th frame.")
    p.add_argument("--max-frames", type=int, default=1200, help="Frames read per clip.")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--eval-only", action="store_true", help="Evaluate the run folder's regress.onnx again.")
    args = p.parse_args()

    work, out = args.work.resolve(), (args.work / args.out).resolve()
    if ROOT in (work, *work.parents):
        raise SystemExit("--work must be outside the repository")
    info = prepare(args.videos, work, args.size, args.every, args.max_frames)
    kept = [n for n, v in info["clips"].items() if v["crops"]]
    held_names = args.held.split(",")
    missing = set(held_names) - set(kept)
    if missing:
        raise SystemExit(f"held clips without crops: {sorted(missing)}")
    held_idx = [kept.index(n) for n in held_names]
    with np.load(work / "clips.npz") as z:
        held = np.isin(z["subject"], held_idx)
    out.mkdir(parents=True, exist_ok=True)
    engine = out / "regress.onnx"
    tracker_clip = next(args.videos.glob(f"*/{held_names[0]}.mp4"))
    from facetrack.training.export import attach_metadata

    if not args.eval_only:
        from facetrack.training.regressor import export_onnx, train_regressor

        model = face_model_for(work, [n for n in kept if n not in held_names], out)
        recipe = make_recipe(args.recipe, args.overrides, work / "clips.npz", model, held_idx, args.epochs,
                             args.max_minutes)
        (out / "recipe.json").write_text(recipe.model_dump_json(indent=1))

        def show(row: dict) -> None:
            held_s = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith("held_"))
            print(f"epoch {row['epoch']:3d}  loss {row['loss']:.4f}  coef {row.get('coef', 0):.4f}  {held_s}  "
                  f"{row['seconds']:.0f} s", flush=True)

        result = train_regressor(recipe, out, resume=args.resume, progress=show)
        meta = {"recipe": recipe.model_dump(mode="json"), "history": result.history[-1:],
                "distilled_from": {"clips": [n for n in kept if n not in held_names], "held_out": held_names,
                                   "crops": info["params"]}}
        export_onnx(result.model, engine, meta)
    res = evaluate(engine, out / "model.npz", work / "clips.npz", held)
    res["speed_ms"].update(fitter_timing(tracker_clip))
    sidecar = json.loads(engine.with_suffix(".json").read_text())
    meta = {k: v for k, v in sidecar.items() if k not in ("sha256", "bytes")}
    meta["metrics"] = {k: res[k] for k in ("held_crops", "arkit_mae", "nme", "corr", "speed_ms")}
    attach_metadata(engine, meta)  # the engine carries its held-out agreement
    res["command"] = "python scripts/distil_regressor.py " + " ".join(sys.argv[1:])
    (out / "metrics.json").write_text(json.dumps(res, indent=1))
    md = report(res, f"{args.out}: {args.recipe.name} {' '.join(args.overrides)}")
    (out / "report.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
