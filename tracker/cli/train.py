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
@click.option("--width", type=click.IntRange(4, 128), default=12, show_default=True,
              help="Channels of the tiny net's first layer.")
@click.option("--epochs", type=click.IntRange(min=1), default=60, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=2), default=64, show_default=True)
@click.option("--lr", type=float, default=3e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--max-minutes", type=float, default=None, help="Stop training after this long.")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the crops cut from face images are cached (default ~/.cache/facetrack/eye-state).")
def eye_state_command(data_dir: Path, out_path: Path, crop_folders: tuple[str, ...],
                      face_folders: list[tuple[str, str]], held_fraction: float, face_held_fraction: float,
                      arch: str, width: int, epochs: int, batch_size: int, lr: float, seed: int, threads: int,
                      max_minutes: float | None, cache_dir: Path | None) -> None:
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
        "split": {"held_fraction": held_fraction, "face_held_fraction": face_held_fraction,
                  "by": "sha1(relative path)"},
    }
    export_onnx(model, out_path, meta)
    engine = EyeStateEngine(out_path)
    report = evaluate(engine.predict_stored, data)
    meta["metrics"] = report.to_dict()
    export_onnx(model, out_path, meta)
    for name, part in report.parts.items():
        click.echo(f"{name:36s} n={part['n']:5d}  accuracy {100 * part['accuracy']:.2f}%  "
                   f"confusion {part['confusion']}")
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


@train_group.group("data")
def data_group() -> None:
    """Build the regressor's `npz` data source from labelled images or from video clips."""


@data_group.command("images")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("data.npz"),
              show_default=True, help="The npz to write (recipe: data.kind npz, data.path).")
@click.option("--size", type=click.IntRange(32, 512), default=128, show_default=True, help="Crop side, pixels.")
def data_images_command(folder: Path, out_path: Path, size: int) -> None:
    """Aligned crops of every labelled image under FOLDER (labels: STEM.pts, labels/STEM_reannotated2d.pts,
    STEM.npy with 68 or 478 points, or AFLW2000-3D's STEM.mat)."""
    from facetrack.training.image_data import crop_images, labelled_images, write_image_npz

    try:
        found = labelled_images(folder)
        with click.progressbar(length=len(found.pairs), label=f"cropping {len(found.pairs)} images") as bar:
            crops = crop_images(found, size, progress=lambda: bar.update(1))
        path = write_image_npz(crops, out_path)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    for name, why in crops.skipped.items():
        click.echo(f"skipped {name}: {why}")
    if crops.unlabelled:
        shown = ", ".join(p.name for p in crops.unlabelled[:5]) + (", ..." if len(crops.unlabelled) > 5 else "")
        click.echo(f"{len(crops.unlabelled)} images without a label file: {shown}")
    extra = " (+ landmarks478)" if all(m is not None for m in crops.landmarks478) else ""
    click.echo(f"wrote {path}: {len(crops.images)} crops of {size} px{extra}")


VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


def _clips(paths: tuple[Path, ...]) -> list[Path]:
    out = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in VIDEO_SUFFIXES and f.is_file())
            if not found:
                raise click.ClickException(f"no video files ({', '.join(VIDEO_SUFFIXES)}) under {p}")
            out += found
        else:
            out.append(p)
    return out


@data_group.command("clips")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("data.npz"),
              show_default=True, help="The npz to write (recipe: data.kind npz, data.path).")
@click.option("--size", type=click.IntRange(32, 512), default=96, show_default=True, help="Crop side, pixels.")
@click.option("--every", type=click.IntRange(min=1), default=2, show_default=True, help="Keep every n-th frame.")
@click.option("--max-frames", type=click.IntRange(min=1), default=300, show_default=True,
              help="Frames read per clip.")
@click.option("--face-model", "model_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Shared face model to write (recipe: model.face_model); default OUT's name + _face_model.npz.")
@click.option("--identity-modes", type=click.IntRange(min=0), default=8, show_default=True,
              help="PCA identity modes of the shared face model (at most clips - 1).")
def data_clips_command(sources: tuple[Path, ...], out_path: Path, size: int, every: int, max_frames: int,
                       model_path: Path | None, identity_modes: int) -> None:
    """Crops and the tracker's pseudo-labels (68 points, ARKit weights, eye state) from clips or folders
    of clips; subject = clip index. Also writes the shared face model the labels are meant for."""
    from facetrack.training.distil import shared_model, track_clip, write_npz

    clips = []
    for path in _clips(sources):
        clip = track_clip(path, size, every=every, max_frames=max_frames)
        click.echo(f"{path.name}: {len(clip.images)} crops ({1000 * clip.fit_seconds:.1f} ms per frame)")
        clips.append(clip)
    kept = [c for c in clips if c.images]
    if not kept:
        raise click.ClickException(f"the tracker found no face in any of the {len(clips)} clips")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_npz(clips, out_path)
    click.echo(f"wrote {out_path}: {sum(len(c.images) for c in kept)} crops of {size} px; subjects: "
               + ", ".join(f"{i}={c.name}" for i, c in enumerate(kept)))
    if not any(len(c.head_shapes) >= 3 for c in kept):
        click.echo("no face model written: no clip has 3 tracked frames for its neutral")
        return
    model_path = model_path or out_path.with_name(f"{out_path.stem}_face_model.npz")
    shared_model(kept, n_identity=identity_modes).save(model_path)
    click.echo(f"wrote {model_path} (recipe: model.face_model)")
