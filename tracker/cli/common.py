"""What every command shares: the error console, exit codes, logging, the one SIGTERM handler, the engine
options and the one-line failure.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import click
from pydantic import ValidationError
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from facetrack.tracker.core import interrupts, native_logs

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5557"
EXIT_SOURCE_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
ENGINES = ("auto", "mediapipe", "litert", "onnx", "regress")
"""--engine: the landmark engines, `regress` (mediapipe's landmarks + the regress engine's coefficients), and
`auto` (`default_engine`)."""
GPU_BACKENDS = ("tensorrt", "cuda")

err = Console(stderr=True, soft_wrap=True)


def setup_logging(verbose: int) -> None:
    """Our log at WARNING (-v INFO, -vv DEBUG), and native libraries' own lines only with -v.

    On a terminal rich formats it; otherwise each record is one `level: message` line, never wrapped,
    so a log file or a test reads it as our errors are read.
    """
    native_logs.show(verbose > 0)  # before any command loads a native library
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler: logging.Handler
    if err.is_terminal:
        handler = RichHandler(console=err, show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_PlainFormatter())
    logging.basicConfig(level=level, handlers=[handler])


class _PlainFormatter(logging.Formatter):
    """`warning: message` on one line, as `error: message` is printed."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname.lower()}: {' '.join(record.getMessage().splitlines())}"
        return f"{text}\n{self.formatException(record.exc_info)}" if record.exc_info else text


def interrupt_on_signals() -> None:
    """SIGTERM ends a command as Ctrl-C does, and both are remembered: sinks are closed and what was written is
    kept (exit 130)."""
    interrupts.install()


def engine_options(command: Callable) -> Callable:
    """--engine, --regressor and --backend, shared by `run` and `bench`."""
    options = (
        click.option("--engine", "landmark_engine", type=click.Choice(ENGINES), default="auto",
                     show_default=True,
                     help="Landmark engine (docs/engines.md); regress: mediapipe's landmarks, and blendshapes and "
                          "head rotation from the coefficient regressor instead of the model fit; auto: regress "
                          "where --backend runs our networks on a GPU, else mediapipe with the fit."),
        click.option("--regressor", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="The regress engine (.onnx with its .json) for --engine regress; default: regress.onnx "
                          "in the user data directory's engines/ folder if there is one, else the shipped "
                          "landmark regressor."),
        click.option("--backend", type=click.Choice(["auto", "cpu", "cuda", "tensorrt"]), default="auto",
                     show_default=True,
                     help="Where our networks run: auto = TensorRT, then ONNX Runtime CUDA, then the CPU."),
    )
    for option in reversed(options):
        command = option(command)
    return command


def default_engine(backend: str, needs_fit: bool) -> str:
    """What --engine auto means where `backend` (the one `--backend` resolves to) runs our networks: the regress
    engine on a GPU, where its batches run best (it meets its targets against the fit:
    engines/models/regress_landmarks.md), unless the run asks for what only the fit gives (a dense mesh, another
    face model, a saved neutral, MediaPipe's weights); mediapipe's landmarks and the fit elsewhere."""
    return "regress" if backend in GPU_BACKENDS and not needs_fit else "mediapipe"


def resolve_engine(engine: str, backend: str, regressor: Path | None, needs_fit: bool = False) -> str:
    """--engine as given, with `auto` resolved on this machine (`default_engine`); a --regressor means regress."""
    if engine != "auto":
        return engine
    if regressor is not None:
        return "regress"
    from facetrack.engines.backends import select_backend
    from facetrack.tracker.core.errors import FacetrackError

    try:
        resolved = select_backend(backend).name  # type: ignore[arg-type]  (click has checked the name)
    except FacetrackError:  # a backend that cannot run here: the tracker says why when it opens its engines
        resolved = backend
    return default_engine(resolved, needs_fit)


def engine_fields(engine: str, regressor: Path | None) -> dict:
    """The config fields --engine (resolved: `resolve_engine`) and --regressor stand for."""
    if regressor is not None and engine != "regress":
        raise click.UsageError("--regressor goes with --engine regress")
    if engine == "regress":
        return {"landmark_engine": "mediapipe", "coefficients": "regress", "regressor": regressor}
    return {"landmark_engine": engine}

def usage_error(exc: ValidationError) -> click.UsageError:
    """Options that contradict each other, in the config's own words."""
    return click.UsageError("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors()))

def fail(exc: BaseException | str, code: int) -> NoReturn:
    """One line on stderr (never wrapped, so it can be grepped and copied), then exit."""
    message = " ".join(str(exc).splitlines())
    err.print(f"[red]error:[/] {escape(message)}", highlight=False)
    sys.exit(code)
