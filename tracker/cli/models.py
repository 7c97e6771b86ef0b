"""`facetrack models ...`: list, inspect and install face models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import click
from rich.console import Console
from rich.table import Table

from facetrack.tracker.cli import common
from facetrack.tracker.facemodel.format import ModelError
from facetrack.tracker.facemodel.registry import list_models, model_info, models_dir

console = Console()


def fail(exc: ModelError) -> NoReturn:
    common.fail(exc, common.EXIT_SOURCE_FAILED)


@click.group("models")
def models_group() -> None:
    """Morphable face models: list, inspect, install."""


@models_group.command("list")
def list_cmd() -> None:
    """The built-in model and every installed model."""
    table = Table("id", "name", "licence", "identity", "expression", "vertices")
    for m in list_models():
        table.add_row(m.id, m.name, m.licence, str(m.n_identity), str(m.n_expression), str(m.n_vertices))
    console.print(table)
    console.print(f"models directory: {models_dir()}")


@models_group.command("info")
@click.argument("model_id")
def info_cmd(model_id: str) -> None:
    """Details of one model (metadata, sizes, expression names), e.g. builtin or ict."""
    try:
        info = model_info(model_id)
    except ModelError as exc:
        fail(exc)
        return
    console.print_json(json.dumps(info.model_dump()))


@models_group.group("install")
def install_group() -> None:
    """Install a face model into the user data directory."""


@install_group.command("ict")
@click.option("--from", "source", default=None,
              help="ICT-FaceKit folder, its zip, the converted .npz, or an https URL (default: the upstream "
                   "GitHub archive of a pinned commit).")
@click.option("--sha256", default=None,
              help="The archive's sha256: required for a URL other than the default, checked for a file.")
def install_ict_cmd(source: str | None, sha256: str | None) -> None:
    """ICT Face Model Light (MIT): 100 identity modes, 53 ARKit-named expressions."""
    from facetrack.tracker.facemodel.ict import install_ict

    try:
        path, report = install_ict(source, sha256)
    except ModelError as exc:
        fail(exc)
        return
    console.print(f"installed [bold]ict[/bold] -> {path}")
    console.print(f"landmark embedding: {report.valid_landmarks}/478 landmarks on the surface; reprojection on "
                  f"the renders (median % of eye-corner distance): {report.reprojection_iod_pct_median}; "
                  f"left/right symmetry {report.symmetry_mm_mean:.2f} mm mean")


def _install_licensed(kind: str, path: Path) -> None:
    from facetrack.tracker.facemodel import loaders
    from facetrack.tracker.facemodel.registry import install_model

    readers = {"bfm2009": loaders.read_bfm2009, "bfm-front": loaders.read_bfm_front, "flame": loaders.read_flame}
    try:
        model = loaders.build_model(readers[kind](path))
        dest = install_model(model)
    except ModelError as exc:
        fail(exc if str(path) in str(exc) else ModelError(f"{path}: {exc}"))
    except (KeyError, IndexError, TypeError, ValueError) as exc:  # a readable file that holds another model
        fail(ModelError(f"{path} is not a {kind} model file ({type(exc).__name__}: {exc})"))
    console.print(f"installed [bold]{model.id}[/bold] -> {dest}")


_LICENSED = {
    "bfm2009": ("01_MorphableModel.mat", "Basel Face Model 2009 from your licensed copy."),
    "bfm-front": ("BFM_model_front.mat", "Deep3DFaceRecon's BFM_model_front.mat from your licensed copy."),
    "flame": ("generic_model.pkl", "FLAME generic_model.pkl from your licensed copy (read without executing code)."),
}


def _licensed_command(kind: str, filename: str, doc: str) -> click.Command:
    @click.command(kind, help=doc)
    @click.option("--from", "path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  help=filename)
    def command(path: Path) -> None:
        _install_licensed(kind, path)

    return command


for _kind, (_filename, _doc) in _LICENSED.items():
    install_group.add_command(_licensed_command(_kind, _filename, _doc))
