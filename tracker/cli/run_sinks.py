"""What `facetrack run` writes to and sends to, set up in the order that loses nothing: every output path
checked first, then the endpoints (they create no file), then the files (as `.partial`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from facetrack.tracker.core.errors import SinkError
from facetrack.tracker.core.sinks import Sink, end_sinks

if TYPE_CHECKING:
    from facetrack.adapters.livelink import LiveLinkConfig
    from facetrack.adapters.vmc import VmcConfig
    from facetrack.adapters.zmq_publisher import PublisherConfig


def check_outputs(outputs: tuple[Path, ...], mesh_path: Path | None, render: Path | None) -> None:
    """Every output a run would write, checked before any is opened (SinkError names the option and path).

    The sinks' modules load only for the outputs asked for (a run that only publishes starts faster)."""
    from facetrack.tracker.core.paths import check_distinct, check_output_file, check_output_folder

    if outputs:
        from facetrack.adapters.file_sinks import SUPPORTED_EXTENSIONS

        for path in outputs:
            check_output_file(path, "--out", SUPPORTED_EXTENSIONS)
    if mesh_path is not None:
        if mesh_path.suffix.lower() == ".npz":
            check_output_file(mesh_path, "--mesh", (".npz",))
        else:
            check_output_folder(mesh_path, "--mesh")
    if render is not None:
        from facetrack.adapters.render_sink import CONTAINER_FORMATS

        check_output_file(render, "--render", tuple(CONTAINER_FORMATS))
    check_distinct([*outputs, *(p for p in (mesh_path, render) if p is not None)])


def network_sinks(publish: PublisherConfig | None, vmc: VmcConfig | None,
                  livelink: LiveLinkConfig | None) -> list[Sink]:
    """The VMC / Live Link senders and the ZeroMQ publisher (bound: a busy port fails now)."""
    from facetrack.adapters.livelink import LiveLinkSender
    from facetrack.adapters.vmc import VmcSender
    from facetrack.adapters.zmq_publisher import ZmqPublisher

    sinks: list[Sink] = []
    try:
        if vmc is not None:
            sinks.append(VmcSender(vmc))
        if livelink is not None:
            sinks.append(LiveLinkSender(livelink))
        if publish is not None:
            sinks.append(ZmqPublisher(publish))
    except BaseException:
        end_sinks(sinks, keep=False)
        raise
    return sinks


def file_sinks(outputs: tuple[Path, ...], mesh_path: Path | None, mesh_format: str) -> list[Sink]:
    """The result files and the mesh output, opened last (as `.partial`; missing folders created now)."""
    if not outputs and mesh_path is None:
        return []
    from facetrack.adapters.file_sinks import open_file_sink
    from facetrack.adapters.mesh_sink import open_mesh_sink

    sinks: list[Sink] = []
    try:
        if mesh_path is not None:
            sinks.append(open_mesh_sink(mesh_path, mesh_format))
            if mesh_path.suffix.lower() == ".npz":
                mesh_path.parent.mkdir(parents=True, exist_ok=True)
        for path in outputs:
            path.parent.mkdir(parents=True, exist_ok=True)
            sinks.append(open_file_sink(path))
    except OSError as exc:  # checked before: only a race with another program gets here
        end_sinks(sinks, keep=False)
        raise SinkError(f"cannot create {exc.filename}: {exc.strerror}") from None
    except BaseException:
        end_sinks(sinks, keep=False)
        raise
    return sinks
