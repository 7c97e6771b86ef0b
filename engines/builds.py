"""Engine builds: ONNX conversions of the wheel's TFLite models, TensorRT plans, and the catalogue.

The mediapipe wheel ships TFLite files only; GPU backends need ONNX. `convert_tflite`
converts them at build time from the installed files with tflite2onnx (facetrack[convert]),
makes the batch axis dynamic, checks the result against LiteRT on a random batch and
stores it with a sidecar (source sha256, converter version, measured difference) in
`<data>/engines/onnx/`. A conversion is redone when the source file or the converter changes.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from facetrack.engines.backends import BackendName, open_network, select_backend
from facetrack.engines.eye_state import DEFAULT_ENGINE as EYE_STATE_ONNX
from facetrack.engines.onnx_runtime import EngineError, sha256_file, sidecar_path, write_sidecar
from facetrack.tracker.core.paths import data_dir
from facetrack.tracker.core.versions import package_version

# name -> (input size, input range) of the wheel's models (mediapipe's graph feeds them so)
TFLITE_INPUTS: dict[str, tuple[int, tuple[float, float]]] = {
    "face_landmark": (192, (0.0, 1.0)),
    "iris_landmark": (64, (0.0, 1.0)),
    "face_detection_short_range": (128, (-1.0, 1.0)),
}
_TOLERANCE = 1e-3  # of the largest output magnitude


def onnx_dir() -> Path:
    return data_dir() / "engines" / "onnx"


def converted_path(name: str) -> Path:
    return onnx_dir() / f"{name}.onnx"


def _converter_version() -> str:
    found = package_version("tflite2onnx")
    if found is None:
        raise EngineError("converting the TFLite models needs tflite2onnx: pip install 'facetrack[convert]'")
    return found


def _convert(source: Path, out: Path) -> None:
    """tflite2onnx, taught one case it misses: constant tensors of rank 3 (PReLU slopes [1, 1, C])
    in a 4-D NHWC graph, which it cannot transpose to NCHW; they are given a leading 1 first."""
    import tflite2onnx
    import tflite2onnx.tensor as tensor

    original = tensor.Tensor.transform

    def transform(self) -> None:
        if self.layout is not None and self.isInitializer and len(self.shape) == len(self.layout.source) - 1:
            self.shape = [1, *self.shape]
        original(self)

    tensor.Tensor.transform = transform
    try:
        tflite2onnx.convert(str(source), str(out))
    finally:
        tensor.Tensor.transform = original


def _dynamic_batch(path: Path) -> None:
    """Make axis 0 of the inputs and outputs dynamic; reshapes to a constant batch of 1 copy the batch instead."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Reshape" and node.input[1] in inits:
            shape = numpy_helper.to_array(inits[node.input[1]]).copy()
            if shape.size and shape[0] == 1:
                shape[0] = 0  # ONNX Reshape: 0 copies the input's dimension
                inits[node.input[1]].CopyFrom(numpy_helper.from_array(shape, node.input[1]))
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "n"
    del model.graph.value_info[:]  # intermediate shapes recorded with batch 1
    onnx.save(model, str(path))


def _litert_reference(source: Path, batch: np.ndarray) -> list[np.ndarray]:
    """LiteRT's outputs one image at a time (the detector's TFLite graph cannot batch)."""
    from facetrack.engines.litert import LiteRTModel

    model = LiteRTModel(source)
    items = [model.run(batch[i:i + 1]) for i in range(len(batch))]
    return [np.concatenate(outputs) for outputs in zip(*items)]


def convert_tflite(name: str, force: bool = False) -> Path:
    """The ONNX conversion of one of the wheel's models, made (or reused) in the user data directory."""
    from facetrack.engines.litert import mediapipe_model

    if name not in TFLITE_INPUTS:
        raise EngineError(f"no conversion for {name!r} (one of {', '.join(TFLITE_INPUTS)})")
    source = mediapipe_model(name)
    out = converted_path(name)
    converter = _converter_version()
    want = {"source_sha256": sha256_file(source), "converter": f"tflite2onnx {converter}"}
    if not force and out.is_file() and sidecar_path(out).is_file():
        have = json.loads(sidecar_path(out).read_text())
        if {k: have.get(k) for k in want} == want and have.get("sha256") == sha256_file(out):
            return out
    size, (lo, hi) = TFLITE_INPUTS[name]
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        staged = Path(tmp) / out.name
        _convert(source, staged)
        _dynamic_batch(staged)
        batch = np.random.default_rng(0).uniform(lo, hi, (3, size, size, 3)).astype(np.float32)
        import onnxruntime as ort

        session = ort.InferenceSession(str(staged), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: batch.transpose(0, 3, 1, 2).copy()})
        ref = _litert_reference(source, batch)
        worst = max(float(np.abs(g.reshape(len(batch), -1) - r).max() / max(np.abs(r).max(), 1e-6))
                    for g, r in zip(got, ref))
        if worst > _TOLERANCE:
            raise EngineError(f"the ONNX conversion of {name} differs from LiteRT by {worst:.2e} (relative)")
        staged.replace(out)
    write_sidecar(out, {
        **want, "engine": name, "version": f"mediapipe-{name}", "source": str(source),
        "input_layout": "NCHW RGB", "input_size": [size, size], "input_range": [lo, hi],
        "outputs": [o.name for o in session.get_outputs()], "max_relative_difference_vs_litert": worst,
    })
    return out


@dataclass(frozen=True, slots=True)
class EngineEntry:
    """One network as `facetrack engines list` shows it."""

    name: str
    kind: str
    path: str
    status: str


def catalogue() -> list[EngineEntry]:
    """Our networks and the wheel's models, with what is built."""
    from facetrack.engines.litert import mediapipe_model
    from facetrack.engines.regress import default_engine_path
    from facetrack.engines.tensorrt_engine import plans_dir

    regress = default_engine_path()
    rows = [EngineEntry("eye_state", "onnx (packaged)", str(EYE_STATE_ONNX),
                        "ok" if EYE_STATE_ONNX.is_file() else "missing"),
            EngineEntry("regress", "onnx (trained by you)", str(regress),
                        "installed" if regress.is_file() else "not installed (docs/training.md)")]
    for name in TFLITE_INPUTS:
        try:
            rows.append(EngineEntry(name, "tflite (mediapipe wheel)", str(mediapipe_model(name)), "ok"))
        except EngineError as exc:
            rows.append(EngineEntry(name, "tflite (mediapipe wheel)", "-", str(exc)))
        onnx = converted_path(name)
        rows.append(EngineEntry(name, "onnx (converted)", str(onnx),
                                "built" if onnx.is_file() else "not built (`facetrack engines build`)"))
    for meta in sorted(plans_dir().glob("*.json")) if plans_dir().is_dir() else []:
        info = json.loads(meta.read_text())
        rows.append(EngineEntry(info.get("source", meta.stem), f"tensorrt plan ({info.get('precision')})",
                                str(meta.with_suffix(".plan")),
                                f"TensorRT {info.get('tensorrt')} on {info.get('gpu')}, "
                                f"batch <= {info.get('max_batch')}"))
    return rows


@dataclass(frozen=True, slots=True)
class BuildResult:
    name: str
    onnx: str
    backend: str
    artefact: str


def build_all(backend: BackendName = "auto", fp16: bool = False, max_batch: int = 256,
              force: bool = False) -> list[BuildResult]:
    """Convert the wheel's models to ONNX, then prepare every network for the backend (TensorRT: build plans)."""
    from facetrack.engines.regress import default_engine_path

    choice = select_backend(backend)
    installed = [p for p in (default_engine_path(),) if p.is_file()]
    sources = [EYE_STATE_ONNX] + installed + [convert_tflite(name, force=force) for name in TFLITE_INPUTS]
    results = []
    for onnx in sources:
        name = onnx.stem
        if choice.name == "tensorrt":
            from facetrack.engines.tensorrt_engine import build_plan

            artefact = str(build_plan(onnx, fp16=fp16, max_batch=max_batch, force=force))
        else:
            open_network(onnx, choice.name).close()  # loads and checks it on this backend
            artefact = str(onnx)
        results.append(BuildResult(name, str(onnx), choice.name, artefact))
    return results


def as_rows(items: list) -> list[dict]:
    return [asdict(i) for i in items]
