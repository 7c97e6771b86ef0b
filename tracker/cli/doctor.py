"""`facetrack doctor`: what is installed and working here, and how to fix what is not.

Each check says ok, warn or fail, what it found, and a fix. Failures are the basics a
user needs to track a video file (the packages, the landmark engine, video decoding,
the packaged eye-state engine); everything else (a camera, encoders for overlay
videos, optional extras, installed face models, a display) is a warning, because
tracking works without it. The exit code is 0 when no check failed.
"""

from __future__ import annotations

import platform
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from facetrack.tracker.core.versions import package_version

Status = Literal["ok", "warn", "fail"]

CORE_PACKAGES: tuple[tuple[str, str], ...] = (
    ("facetrack", "facetrack"), ("mediapipe", "mediapipe"), ("av", "av"), ("numpy", "numpy"),
    ("opencv-contrib-python", "cv2"), ("onnxruntime", "onnxruntime"), ("pyzmq", "zmq"), ("msgpack", "msgpack"),
    ("pydantic", "pydantic"), ("pyarrow", "pyarrow"), ("scipy", "scipy"), ("click", "click"), ("rich", "rich"),
    ("matplotlib", "matplotlib"), ("python-osc", "pythonosc"),
)  # fmt: skip
"""(distribution, import name) facetrack needs: a missing one is a broken install."""
OPTIONAL_PACKAGES: tuple[tuple[str, str], ...] = (
    ("ray", 'pip install "facetrack[ray]"  (batch on a cluster: docs/batch.md)'),
    ("torch", 'pip install "facetrack[train]"  (training the engines)'),
    ("onnx", 'pip install "facetrack[train]"  (exporting trained engines)'),
    ("bpy", 'pip install "facetrack[blender]"  (Python 3.11; Blender add-on tests)'),
)
"""(distribution, how to get it) for the extras."""
REINSTALL = 'pip install --force-reinstall facetrack  (from a checkout: pip install -e ".[test]")'


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    area: str
    name: str
    status: Status
    detail: str
    fix: str = ""


def check_python() -> Check:
    version = platform.python_version()
    supported = (3, 11) <= sys.version_info[:2] <= (3, 12)
    found = f"{version} ({platform.system()} {platform.machine()})"
    return Check("system", "python", "ok" if supported else "fail", found,
                 "" if supported else "use Python 3.11 or 3.12 (mediapipe 0.10.21 has wheels for those)")


def check_packages() -> list[Check]:
    """Versions of the packages facetrack needs (fail when missing) and of the extras (warn)."""
    checks = []
    for distribution, module in CORE_PACKAGES:
        version = package_version(distribution)
        importable = _importable(module)
        if version is not None and importable is None:
            checks.append(Check("packages", distribution, "ok", version))
        else:
            detail = "not installed" if version is None else f"{version} installed but import fails: {importable}"
            checks.append(Check("packages", distribution, "fail", detail, REINSTALL))
    for distribution, fix in OPTIONAL_PACKAGES:
        version = package_version(distribution)
        checks.append(Check("extras", distribution, "ok" if version else "warn",
                            version or "not installed (optional)", "" if version else fix))
    return checks


def _importable(module: str) -> str | None:
    """None when `module` imports; else the error."""
    try:
        __import__(module)
    except Exception as exc:  # an install can fail in any way at import: report it, do not crash
        return f"{type(exc).__name__}: {exc}"
    return None


def _guard(area: str, name: str, fix: str, probe: Callable[[], tuple[Status, str]]) -> Check:
    """Run a probe; an exception is a failure with its message and the fix."""
    try:
        status, detail = probe()
    except Exception as exc:  # the probe exercises third-party code: any failure is a finding
        return Check(area, name, "fail", f"{type(exc).__name__}: {exc}", fix)
    return Check(area, name, status, detail, fix if status != "ok" else "")


def check_landmark_engine() -> Check:
    """mediapipe's face mesh (the landmark engine) loads and runs on a blank frame."""

    def probe() -> tuple[Status, str]:
        from facetrack.engines.mediapipe_mesh import MediapipeFaceMesh

        engine = MediapipeFaceMesh(max_faces=1)
        try:
            engine.process(np.zeros((192, 192, 3), np.uint8))
        finally:
            engine.close()
        return "ok", f"mediapipe face mesh (478 points with irises), mediapipe {package_version('mediapipe')}"

    return _guard("engines", "landmarks", "pip install --force-reinstall mediapipe==0.10.21", probe)


def check_eye_engine() -> Check:
    """The packaged eye-state engine loads (checksum, metadata) and predicts."""

    def probe() -> tuple[Status, str]:
        from facetrack.engines.eye_state import DEFAULT_ENGINE, EyeStateEngine

        if not DEFAULT_ENGINE.is_file():
            return "fail", f"missing: {DEFAULT_ENGINE}"
        engine = EyeStateEngine()
        width, height = engine.input_size
        p = engine.predict(np.zeros((2, height, width), np.uint8))
        return "ok", f"{DEFAULT_ENGINE.name} version {engine.version}, {width}x{height} crops, P(closed) {p.shape}"

    return _guard("engines", "eye state", REINSTALL + "; or track without it: facetrack run --no-eyes", probe)


def check_onnxruntime() -> Check:
    def probe() -> tuple[Status, str]:
        import onnxruntime

        return "ok", "providers: " + ", ".join(onnxruntime.get_available_providers())

    return _guard("engines", "onnxruntime", "pip install --force-reinstall onnxruntime==1.31.1", probe)


def check_backends() -> list[Check]:
    """Inference backends for our networks (TensorRT, ONNX Runtime CUDA, CPU, PyTorch): warn where one cannot run."""
    try:
        from facetrack.engines.backends import probes
    except ImportError as exc:
        return [Check("backends", "probes", "warn", f"backend probes unavailable: {exc}", REINSTALL)]
    return [Check("backends", name, "ok" if probe.ok else "warn", probe.reason,
                  "" if probe.ok else "optional: docs/engines.md says how to install it")
            for name, probe in probes().items()]


def check_video() -> list[Check]:
    """Decoding (H.264, VP9: the usual inputs) is a basic; the H.264 encoder only matters for overlays."""
    import av

    def decoders() -> tuple[Status, str]:
        missing = [name for name in ("h264", "hevc", "vp9", "mpeg4", "mjpeg") if name not in av.codecs_available]
        found = f"PyAV {av.__version__}, FFmpeg {_ffmpeg_version()}"
        if "h264" in missing:
            return "fail", f"{found}: no H.264 decoder"
        return ("warn", f"{found}; no decoder for {', '.join(missing)}") if missing else ("ok", found)

    def encoder() -> tuple[Status, str]:
        if "libx264" in av.codecs_available:
            return "ok", "libx264 (overlay videos: facetrack render, --render)"
        return "warn", "no libx264 encoder: facetrack render and --render cannot write H.264"

    fix = 'pip install --force-reinstall "av>=14,<19"  (the PyPI wheels bundle FFmpeg with these codecs)'
    return [_guard("video", "decode", fix, decoders), _guard("video", "encode", fix, encoder)]


def _ffmpeg_version() -> str:
    import av

    return str(getattr(av, "ffmpeg_version_info", "?"))


def check_models() -> Check:
    def probe() -> tuple[Status, str]:
        from facetrack.tracker.facemodel.registry import list_models, models_dir

        models = list_models()
        names = ", ".join(f"{m.id} ({m.licence})" for m in models)
        if len(models) == 1:
            return "warn", f"{names}; none installed in {models_dir()}"
        return "ok", names

    return _guard("models", "face models",
                  "optional: facetrack models install ict  (MIT; see docs/models.md for BFM and FLAME)", probe)


def check_zmq() -> Check:
    def probe() -> tuple[Status, str]:
        import zmq

        context = zmq.Context.instance()
        with context.socket(zmq.PUB) as socket:
            port = socket.bind_to_random_port("tcp://127.0.0.1")
        curve = "CURVE encryption available" if zmq.has("curve") else "no CURVE (--curve-keys will not work)"
        return ("ok" if zmq.has("curve") else "warn"), f"libzmq {zmq.zmq_version()}, bound 127.0.0.1:{port}; {curve}"

    return _guard("streaming", "zeromq", "pip install --force-reinstall pyzmq", probe)


def check_camera(spec: str = "webcam:0", timeout: float = 3.0) -> Check:
    """Whether the camera opens within `timeout` seconds (a busy or absent camera can block for long)."""
    outcome: list[tuple[Status, str]] = []

    def probe() -> None:
        from facetrack.tracker.sources.frame_source import probe_source

        try:
            info = probe_source(spec)
            outcome.append(("ok", f"{spec}: {info.width}x{info.height} at {info.fps or '?'} fps ({info.codec})"))
        except Exception as exc:  # any failure to open is the finding
            outcome.append(("warn", str(exc)))

    thread = threading.Thread(target=probe, name="doctor-camera", daemon=True)
    thread.start()
    thread.join(timeout)
    status, detail = outcome[0] if outcome else ("warn", f"{spec} did not open within {timeout:.0f} s")
    fix = "" if status == "ok" else (
        "connect a camera or close the app using it, or try webcam:1; files and streams work without one"
    )
    return Check("camera", spec, status, detail, fix)


def check_display() -> Check:
    from facetrack.adapters.preview import window_opens

    if window_opens():
        return Check("preview", "display", "ok", "an OpenCV window can show the preview")
    return Check("preview", "display", "warn", "no usable display: the preview is served at http://127.0.0.1:8765/",
                 "open the URL in a browser (over SSH: ssh -L 8765:127.0.0.1:8765 HOST)")


def run_checks(camera: str | None = "webcam:0", camera_timeout: float = 3.0) -> list[Check]:
    """Every check, basics first; `camera=None` skips the camera."""
    checks = [check_python(), *check_packages()]
    if any(c.status == "fail" and c.name in ("facetrack", "numpy", "mediapipe") for c in checks):
        return checks  # the deeper checks would only repeat the import failure
    checks += [check_landmark_engine(), check_eye_engine(), check_onnxruntime(), *check_backends(), *check_video(),
               check_models(), check_zmq()]
    if camera is not None:
        checks.append(check_camera(camera, camera_timeout))
    checks.append(check_display())
    return checks


def exit_code(checks: list[Check]) -> int:
    """0 when the basics work (no failed check), else 1."""
    return 1 if any(c.status == "fail" for c in checks) else 0


def as_dicts(checks: list[Check]) -> list[dict[str, str]]:
    return [asdict(c) for c in checks]
