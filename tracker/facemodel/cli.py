"""`facetrack models ...`: list, inspect and install face models (a typer sub-app)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from facetrack.tracker.facemodel.format import ModelError
from facetrack.tracker.facemodel.registry import list_models, model_info, models_dir

models_app = typer.Typer(help="Morphable face models: list, inspect, install.", no_args_is_help=True)
install_app = typer.Typer(help="Install a face model into the user data directory.", no_args_is_help=True)
models_app.add_typer(install_app, name="install")
console = Console()


def _fail(exc: ModelError) -> None:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(code=1)


@models_app.command("list")
def list_cmd() -> None:
    """The built-in model and every installed model."""
    table = Table("id", "name", "licence", "identity", "expression", "vertices")
    for m in list_models():
        table.add_row(m.id, m.name, m.licence, str(m.n_identity), str(m.n_expression), str(m.n_vertices))
    console.print(table)
    console.print(f"models directory: {models_dir()}")


@models_app.command("info")
def info_cmd(model_id: str = typer.Argument(..., help="Model id, e.g. builtin or ict.")) -> None:
    """Details of one model (metadata, sizes, expression names)."""
    try:
        info = model_info(model_id)
    except ModelError as exc:
        _fail(exc)
        return
    console.print_json(json.dumps(info.model_dump()))


@install_app.command("ict")
def install_ict_cmd(
    source: str = typer.Option(None, "--from", help="ICT-FaceKit folder, its zip, the converted .npz, or a URL "
                                                     "(default: the upstream GitHub archive)."),
) -> None:
    """ICT Face Model Light (MIT): 100 identity modes, 53 ARKit-named expressions."""
    from facetrack.tracker.facemodel.ict import install_ict

    try:
        path, report = install_ict(source)
    except ModelError as exc:
        _fail(exc)
        return
    console.print(f"installed [bold]ict[/bold] -> {path}")
    console.print(f"landmark embedding: {report.valid_landmarks}/478 landmarks on the surface; reprojection on "
                  f"the renders (median % of eye-corner distance): {report.reprojection_iod_pct_median}; "
                  f"left/right symmetry {report.symmetry_mm_mean:.2f} mm mean")


def _install_raw(kind: str, path: Path) -> None:
    from facetrack.tracker.facemodel import loaders
    from facetrack.tracker.facemodel.registry import install_model

    readers = {"bfm2009": loaders.read_bfm2009, "bfm-front": loaders.read_bfm_front, "flame": loaders.read_flame}
    try:
        model = loaders.build_model(readers[kind](path))
        dest = install_model(model)
    except ModelError as exc:
        _fail(exc)
        return
    console.print(f"installed [bold]{model.id}[/bold] -> {dest}")


@install_app.command("bfm2009")
def install_bfm2009_cmd(path: Path = typer.Option(..., "--from", exists=True, help="01_MorphableModel.mat")) -> None:
    """Basel Face Model 2009 from your licensed copy."""
    _install_raw("bfm2009", path)


@install_app.command("bfm-front")
def install_bfm_front_cmd(path: Path = typer.Option(..., "--from", exists=True, help="BFM_model_front.mat")) -> None:
    """Deep3DFaceRecon's BFM_model_front.mat from your licensed copy."""
    _install_raw("bfm-front", path)


@install_app.command("flame")
def install_flame_cmd(path: Path = typer.Option(..., "--from", exists=True, help="generic_model.pkl")) -> None:
    """FLAME generic_model.pkl from your licensed copy (read without executing code)."""
    _install_raw("flame", path)
