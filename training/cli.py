"""`facetrack train ...`: build the engines from data (needs the `train` extra: PyTorch)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click


@click.group("train")
def train_group() -> None:
    """Train the project's own engines (needs `pip install 'facetrack[train]'`)."""


def _face_spec(_ctx, _param, values: tuple[str, ...]) -> list[tuple[str, str]]:
    out = []
    for v in values:
        folder, _, label = v.partition("=")
        if label.lower() not in ("open", "closed"):
            raise click.BadParameter(f"{v!r}: expected FOLDER=open or FOLDER=closed")
        out.append((folder, label.lower()))
    return out


@train_group.command("eye-state")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("eye_state.onnx"), show_default=True, help="Engine file to write (plus a .json sidecar).")
@click.option("--crops", "crop_folders", multiple=True, default=("eye_crops",), show_default=True,
              help="Folder of eye crops with Open/ and Closed/ inside (repeatable).")
@click.option("--faces", "face_folders", multiple=True, callback=_face_spec,
              default=("cew_closed_faces=closed", "utkface_open_unverified=open"), show_default=True,
              help="FOLDER=open|closed: face images whose eyes are both in that state (repeatable).")
@click.option("--held-fraction", type=click.FloatRange(0, 0.9), default=0.2, show_default=True,
              help="Share of each eye-crop folder held back for testing.")
@click.option("--face-held-fraction", type=click.FloatRange(0, 0.9), default=0.3, show_default=True,
              help="Share of each face folder held back (a face's two eyes stay together).")
@click.option("--arch", type=click.Choice(["tiny", "resnet50"]), default="tiny", show_default=True)
@click.option("--width", type=click.IntRange(4, 128), default=12, show_default=True, help="Channels of the tiny net's first layer.")
@click.option("--epochs", type=click.IntRange(min=1), default=60, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=2), default=64, show_default=True)
@click.option("--lr", type=float, default=3e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--max-minutes", type=float, default=None, help="Stop training after this long.")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the crops cut from face images are cached (default ~/.cache/facetrack/eye-state).")
def eye_state_command(data_dir: Path, out_path: Path, crop_folders: tuple[str, ...], face_folders: list[tuple[str, str]],
                      held_fraction: float, face_held_fraction: float, arch: str, width: int, epochs: int,
                      batch_size: int, lr: float, seed: int, threads: int, max_minutes: float | None,
                      cache_dir: Path | None) -> None:
    """Train the eye-state engine on DATA_DIR and export it to ONNX with its metadata and metrics."""
    from facetrack.engines.eye_state import EyeStateEngine
    from facetrack.training.eye_data import load_dataset
    from facetrack.training.eye_state import TrainConfig, evaluate, export_onnx, train_eye_state

    if cache_dir is None:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        cache_dir = base / "facetrack" / "eye-state"
    t0 = time.time()
    data = load_dataset(data_dir, list(crop_folders), face_folders, held_fraction,
                        {f: face_held_fraction for f, _ in face_folders}, cache_dir)
    click.echo(f"data: {len(data.labels)} crops in {time.time() - t0:.1f} s; faces missed: {data.missed_faces}")
    click.echo(json.dumps(data.summary()))
    cfg = TrainConfig(arch=arch, width=width, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, threads=threads,
                      max_seconds=None if max_minutes is None else 60 * max_minutes)
    model, history = train_eye_state(
        data, cfg, progress=lambda h: click.echo(f"epoch {h['epoch']:3d}  loss {h['loss']:.4f}  {h['seconds']:.0f} s"))
    meta = {
        "arch": arch, "width": width, "epochs": len(history), "seed": seed,
        "data": data.summary(), "faces_missed": data.missed_faces,
        "split": {"held_fraction": held_fraction, "face_held_fraction": face_held_fraction, "by": "sha1(relative path)"},
    }
    export_onnx(model, out_path, meta)
    engine = EyeStateEngine(out_path)
    report = evaluate(engine.predict_stored, data)
    meta["metrics"] = report.to_dict()
    export_onnx(model, out_path, meta)
    for name, part in report.parts.items():
        click.echo(f"{name:36s} n={part['n']:5d}  accuracy {100 * part['accuracy']:.2f}%  confusion {part['confusion']}")
    click.echo(f"wrote {out_path} ({out_path.stat().st_size / 1024:.0f} KiB) and {out_path.with_suffix('.json')}")


@train_group.command("regressor")
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Recipe file (.json, or .yaml with PyYAML); see training/recipes/.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("regressor_run"),
              show_default=True, help="Run folder: checkpoint.pt, curves.csv, history.json, regress.onnx (+ .json).")
@click.option("--resume", is_flag=True, help="Continue from the run folder's checkpoint.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override the recipe's epoch count.")
@click.option("--max-minutes", type=float, default=None, help="Stop training after this long.")
def regressor_command(config_path: Path, out_dir: Path, resume: bool, epochs: int | None,
                      max_minutes: float | None) -> None:
    """Train the coefficient regressor with a paper's losses and export the `regress` engine."""
    from facetrack.training.recipe import load_recipe
    from facetrack.training.regressor import export_onnx, train_regressor

    recipe = load_recipe(config_path)
    if epochs is not None:
        recipe.train.epochs = epochs
    if max_minutes is not None:
        recipe.train.max_seconds = 60 * max_minutes
    click.echo(f"recipe {recipe.name}: {recipe.paper}")

    def show(row: dict) -> None:
        held = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith("held_"))
        click.echo(f"epoch {row['epoch']:3d}  loss {row['loss']:.4f}  {held}  {row['seconds']:.0f} s")

    result = train_regressor(recipe, out_dir, resume=resume, progress=show)
    path = export_onnx(result.model, out_dir / "regress.onnx",
                       {"recipe": recipe.model_dump(mode="json"), "history": result.history[-1:]})
    click.echo(f"wrote {path} and {path.with_suffix('.json')}; curves in {out_dir / 'curves.csv'}")
