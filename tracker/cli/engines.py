"""`facetrack engines build|list`: prepare the networks for a backend, and show what is there."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from facetrack.engines.backends import BACKENDS
from facetrack.engines.onnx_runtime import EngineError


@click.group("engines")
def engines_group() -> None:
    """Inference engines: ONNX conversions, TensorRT plans, which backend runs here."""


@engines_group.command("build")
@click.option("--backend", type=click.Choice([b for b in BACKENDS if b != "torch"]), default="auto",
              show_default=True, help="auto: TensorRT where it imports and a GPU is present, else ONNX Runtime.")
@click.option("--fp16", is_flag=True, help="TensorRT: allow FP16 kernels.")
@click.option("--max-batch", type=click.IntRange(1, 4096), default=256, show_default=True,
              help="TensorRT: largest batch of the optimisation profile.")
@click.option("--force", is_flag=True, help="Rebuild even when the stored build matches.")
def build(backend: str, fp16: bool, max_batch: int, force: bool) -> None:
    """Convert the mediapipe wheel's models to ONNX and build engines for BACKEND."""
    from facetrack.engines.backends import select_backend
    from facetrack.engines.builds import build_all

    err = Console(stderr=True, soft_wrap=True)
    try:
        choice = select_backend(backend)
        err.print(f"backend: {choice.name} ({choice.reason})")
        results = build_all(backend, fp16=fp16, max_batch=max_batch, force=force)
    except EngineError as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(2)
    table = Table("network", "backend", "engine")
    for r in results:
        table.add_row(r.name, r.backend, r.artefact)
    Console().print(table)


@engines_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_engines(as_json: bool) -> None:
    """Networks, their builds, and each backend's availability here (with the reason when not)."""
    from facetrack.engines.backends import probes, select_backend
    from facetrack.engines.builds import as_rows, catalogue

    entries = catalogue()
    backends = {name: {"ok": p.ok, "reason": p.reason} for name, p in probes().items()}
    auto = select_backend("auto")
    if as_json:
        click.echo(json.dumps({"engines": as_rows(entries), "backends": backends,
                               "auto": {"backend": auto.name, "reason": auto.reason}}, indent=2))
        return
    table = Table("network", "kind", "status", "path")
    for e in entries:
        table.add_row(e.name, e.kind, e.status, e.path)
    console = Console()
    console.print(table)
    status = Table("backend", "available", "why")
    for name, b in backends.items():
        status.add_row(name, "yes" if b["ok"] else "no", b["reason"])
    console.print(status)
    console.print(f"auto -> {auto.name}")
