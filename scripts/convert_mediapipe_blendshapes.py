"""Convert MediaPipe's blendshape network to the arrays facetrack reads (tracker/facemodel/mediapipe_head.py).

    pip install 'facetrack[convert,litert]'
    python scripts/convert_mediapipe_blendshapes.py face_landmarker.task
        [--out tracker/facemodel/data/mediapipe_blendshapes.npz]

SOURCE is MediaPipe's Face Landmarker task bundle (`face_landmarker.task`, Apache-2.0; a zip that
holds `face_blendshapes.tflite`) or that .tflite itself. The weights are read from the flatbuffer
by tensor name (float16, kept so), nothing is executed; the numpy forward pass is then checked
against LiteRT's on random landmark sets and the run fails if they differ by more than 1e-4.
The landmark subset and the output names are the Face Landmarker graph's own
(mediapipe/tasks/cc/vision/face_landmarker/face_blendshapes_graph.cc).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.facemodel.mediapipe_head import WEIGHTS_FORMAT, MediaPipeHead
from facetrack.tracker.facemodel.registry import DEFAULT_MODEL_ID, load_model

SUBSET = [0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66, 67, 70,
          78, 80, 81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145, 146, 148, 149,
          150, 152, 153, 154, 155, 157, 158, 159, 160, 161, 162, 163, 168, 172, 173, 176, 178, 181, 185, 191, 195,
          197, 234, 246, 249, 251, 263, 267, 269, 270, 276, 282, 283, 284, 285, 288, 291, 293, 295, 296, 297, 300,
          308, 310, 311, 312, 314, 317, 318, 321, 323, 324, 332, 334, 336, 338, 356, 361, 362, 365, 373, 374, 375,
          377, 378, 379, 380, 381, 382, 384, 385, 386, 387, 388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454,
          466, 468, 469, 470, 471, 472, 473, 474, 475, 476, 477]
OUTPUTS = ["_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
           "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
           "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight",
           "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight",
           "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight",
           "mouthFrownLeft", "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft",
           "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower",
           "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight",
           "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft",
           "noseSneerRight"]
_MIXER = "GhumMarkerPoserMlpMixerGeneral/"
_NAMES = {  # our array name -> the tensor name's tail after _MIXER
    "tokens": "conv2d/Conv2D", "tokens_b": "conv2d/BiasAdd/ReadVariableOp",
    "embed": "MLPMixer/input_tokens_embedding/Conv2D",
    "embed_b": "MLPMixer/input_tokens_embedding/BiasAdd/ReadVariableOp",
    "extra_token": "MLPMixer/AddExtraTokens/strided_slice_1",
    "out_w": "output_blendweights/Conv2D", "out_b": "output_blendweights/BiasAdd/ReadVariableOp",
} | {f"{ours}_{b}": f"MLPMixer/MixerBlock_{b}/{theirs}" for b in range(4) for ours, theirs in (
    ("ln1", "layer_norm1/batchnorm/mul/ReadVariableOp"), ("ln2", "layer_norm2/batchnorm/mul/ReadVariableOp"),
    ("tok1", "mlp_token_mixing/Mlp_1/Conv2D"), ("tok1_b", "mlp_token_mixing/Mlp_1/BiasAdd/ReadVariableOp"),
    ("tok2", "mlp_token_mixing/Mlp_2/Conv2D"), ("tok2_b", "mlp_token_mixing/Mlp_2/BiasAdd/ReadVariableOp"),
    ("ch1", "mlp_channel_mixing/Mlp_1/Conv2D"), ("ch1_b", "mlp_channel_mixing/Mlp_1/BiasAdd/ReadVariableOp"),
    ("ch2", "mlp_channel_mixing/Mlp_2/Conv2D"), ("ch2_b", "mlp_channel_mixing/Mlp_2/BiasAdd/ReadVariableOp"))}
_FLOAT16 = 1  # tflite TensorType


def read_tflite(source: Path) -> bytes:
    """The blendshape .tflite's bytes: the file itself when it is a TFLite flatbuffer (which may carry a zip of
    metadata at its end), else from the task bundle (a zip)."""
    data = source.read_bytes()
    if data[4:8] == b"TFL3":  # the flatbuffer's file identifier
        return data
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return z.read("face_blendshapes.tflite")
    except (zipfile.BadZipFile, KeyError) as exc:
        raise SystemExit(f"{source} is neither a .tflite nor a Face Landmarker task bundle ({exc})") from None


def weights(tflite_bytes: bytes) -> dict[str, np.ndarray]:
    """The network's float16 constants by our names; 1x1 convolutions as (out, in) matrices."""
    import tflite

    model = tflite.Model.GetRootAsModel(tflite_bytes, 0)
    graph = model.Subgraphs(0)
    found: dict[str, np.ndarray] = {}
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        name = t.Name().decode().split(_MIXER)[-1]
        raw = model.Buffers(t.Buffer()).DataAsNumpy()
        shape = t.ShapeAsNumpy()
        if t.Type() == _FLOAT16 and not isinstance(raw, int) and not isinstance(shape, int) and shape.size:
            found[name] = np.frombuffer(raw.tobytes(), np.float16).reshape(shape)
    missing = sorted(set(_NAMES.values()) - set(found))
    if missing:
        raise SystemExit(f"not MediaPipe's blendshape network (no tensor {missing[0]})")
    out = {ours: found[theirs] for ours, theirs in _NAMES.items()}
    for k, v in out.items():
        if v.ndim == 4:  # (out, 1, 1, in) 1x1 convolution, or the (1, 1, 1, 64) extra token
            out[k] = v.reshape(v.shape[0], v.shape[3]) if k != "extra_token" else v.reshape(1, -1)
    return out


def litert_reference(tflite_bytes: bytes, points: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=tflite_bytes)
    it.allocate_tensors()
    src, dst = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    rows = []
    for p in points:
        it.set_tensor(src, p[None].astype(np.float32))
        it.invoke()
        rows.append(it.get_tensor(dst).reshape(-1))
    return np.array(rows)


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("source", type=Path, help="face_landmarker.task or face_blendshapes.tflite")
    ap.add_argument("--out", type=Path, default=root / "tracker" / "facemodel" / "data" / "mediapipe_blendshapes.npz")
    args = ap.parse_args()
    blob = read_tflite(args.source)
    arrays = weights(blob)
    arrays["landmarks"] = np.array(SUBSET, np.int32)
    arrays["mirror"] = np.asarray(load_model(DEFAULT_MODEL_ID).extra["mirror"], np.int32)
    meta = {"format": WEIGHTS_FORMAT, "outputs": OUTPUTS, "source": args.source.name,
            "source_sha256": hashlib.sha256(args.source.read_bytes()).hexdigest(),
            "tflite_sha256": hashlib.sha256(blob).hexdigest()}
    head = MediaPipeHead(arrays, meta)
    # the numpy forward against LiteRT: faces of random shape around a random centre and size
    rng = np.random.default_rng(0)
    n = 64
    points = rng.normal(0, 1, (n, len(SUBSET), 2)) * rng.uniform(20, 200, (n, 1, 1)) + rng.uniform(100, 900, (n, 1, 2))
    ref = litert_reference(blob, points)
    shared = [n for n in OUTPUTS if n in ARKIT_BLENDSHAPES]
    ours = head.raw(points.astype(np.float32))[:, [ARKIT_BLENDSHAPES.index(n) for n in shared]]
    worst = float(np.abs(ours - ref[:, [OUTPUTS.index(n) for n in shared]]).max())
    if worst > 1e-4:
        raise SystemExit(f"the numpy forward differs from LiteRT by {worst:.2e}")
    meta["max_abs_difference_vs_litert"] = worst
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, metadata=np.array(json.dumps(meta)), **arrays)
    size = sum(v.size for k, v in arrays.items() if k not in ("landmarks", "mirror"))
    print(f"{args.out}: {args.out.stat().st_size / 1e6:.2f} MB, {size} weights; numpy vs LiteRT max |difference| "
          f"{worst:.1e} on {n} random faces")

if __name__ == "__main__":
    main()
