"""MediaPipe's blendshape network, read in numpy: 146 image landmarks in, 52 ARKit weights out.

Google trained this network (an MLP-Mixer, "GhumMarkerPoserMlpMixerGeneral") on real faces,
so it knows how real expressions move mediapipe's own landmarks, which the project's head
(expression_head.py, trained on the packaged model's synthetic faces) can only approximate.
The mediapipe wheel does not ship it (it is part of the Face Landmarker task bundle), so
`scripts/convert_mediapipe_blendshapes.py` converts the bundle's `face_blendshapes.tflite`
(Apache-2.0) to plain arrays in `data/mediapipe_blendshapes.npz`; its card and licence are
beside it. The forward pass is the network's own: points centred and scaled by their mean
norm, a dense map of the 146 points to 96 tokens, a 64-wide embedding, an extra token,
four mixer blocks (layer norm without bias, token MLP 97-384-97 and channel MLP 64-256-64,
ReLU), the extra token to 52 sigmoids. Outputs are mapped to ARKit's order by name
(`_neutral` dropped, `tongueOut` absent: 0). A face and its mirror image are read and
averaged, so mirrored faces get mirrored weights exactly, as with the project's head.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.facemodel.expression_head import arkit_mirror
from facetrack.tracker.facemodel.format import ModelError, load_plain_arrays, packaged_data_path

WEIGHTS_FILE = "mediapipe_blendshapes.npz"
WEIGHTS_FORMAT = "facetrack.mediapipe_blendshapes/1"
BLOCKS = 4
LAYER_NORM_EPS = 1e-6


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.maximum(x, -80.0)))


def _layer_norm(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + LAYER_NORM_EPS) * scale


class MediaPipeHead:
    """The network's arrays, its 146-landmark subset and the map from its outputs to ARKit's order."""

    def __init__(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        self.w = {k: np.asarray(v, np.float32) for k, v in arrays.items() if k not in ("landmarks", "mirror")}
        self.landmarks = np.asarray(arrays["landmarks"], np.int64)
        mirror = np.asarray(arrays["mirror"], np.int64)  # 478-point mirror partner of each landmark
        pos = {int(v): i for i, v in enumerate(self.landmarks)}
        try:
            self._mirror_rows = np.array([pos[int(mirror[v])] for v in self.landmarks])
        except KeyError as exc:
            raise ModelError(f"the blendshape network's landmarks are not closed under mirroring ({exc})") from None
        names = list(meta["outputs"])
        self._to_arkit = np.array([names.index(n) if n in names else -1 for n in ARKIT_BLENDSHAPES])
        self._out_mirror = arkit_mirror()
        self.meta = meta
        if self.w["tokens"].shape != (96, len(self.landmarks)) or self.w["out_w"].shape[0] != len(names):
            raise ModelError("the blendshape network's arrays do not match its landmark subset and outputs")

    def raw(self, points: np.ndarray) -> np.ndarray:
        """(B, 146, 2) image points (pixels, y down) -> (B, 52) ARKit weights, one reading (no mirror).

        Activations are kept token-major, (tokens, B, channels), so each mixing step is one matrix product
        for the whole batch."""
        w = self.w
        x = points - points.mean(1, keepdims=True)
        x = 0.5 * x / np.sqrt((x**2).sum(-1, keepdims=True)).mean(1, keepdims=True)
        n = len(x)
        x = (w["tokens"] @ x.transpose(1, 0, 2).reshape(len(self.landmarks), -1)).reshape(-1, n, 2)
        x = (x + w["tokens_b"][:, None, None]) @ w["embed"].T + w["embed_b"]
        x = np.concatenate([np.broadcast_to(w["extra_token"], (1, n, x.shape[2])), x])
        t, c = x.shape[0], x.shape[2]
        for b in range(BLOCKS):
            y = _layer_norm(x, w[f"ln1_{b}"]).reshape(t, -1)
            h = np.maximum(w[f"tok1_{b}"] @ y + w[f"tok1_b_{b}"][:, None], 0.0)
            x = x + (w[f"tok2_{b}"] @ h + w[f"tok2_b_{b}"][:, None]).reshape(t, n, c)
            y = _layer_norm(x, w[f"ln2_{b}"]).reshape(-1, c)
            h = np.maximum(y @ w[f"ch1_{b}"].T + w[f"ch1_b_{b}"], 0.0)
            x = x + (h @ w[f"ch2_{b}"].T + w[f"ch2_b_{b}"]).reshape(t, n, c)
        out = _sigmoid(x[0] @ w["out_w"].T + w["out_b"])
        return np.where(self._to_arkit >= 0, out[:, np.clip(self._to_arkit, 0, None)], 0.0).astype(np.float32)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """(B, 146, 2) or (146, 2) image points -> 52 ARKit weights, the mean of the face's and its mirror's."""
        p = np.atleast_3d(np.asarray(points, np.float32)).reshape(-1, len(self.landmarks), 2)
        mirrored = p[:, self._mirror_rows] * np.float32([-1, 1])
        both = self.raw(np.concatenate([p, mirrored]))
        out = 0.5 * (both[: len(p)] + both[len(p):][:, self._out_mirror])
        return out[0] if np.ndim(points) == 2 else out


class MediaPipeWeights:
    """The weights the fit takes from the network (`FitterConfig.mediapipe_weights`), each less the network's
    reading of the track's rest face."""

    def __init__(self, network: MediaPipeHead, mode: str) -> None:
        self.network = network
        below = mode == "below_brows"  # the brows stay the project's head's
        self.mask = np.array([not n.startswith("eye") and not (below and n.startswith("brow"))
                              for n in ARKIT_BLENDSHAPES])

    @classmethod
    def load(cls, mode: str) -> MediaPipeWeights:
        network = packaged_mediapipe_head()
        if network is None:
            raise ModelError(f"mediapipe_weights={mode!r} needs tracker/facemodel/data/{WEIGHTS_FILE} "
                             "(scripts/convert_mediapipe_blendshapes.py)")
        return cls(network, mode)

    def read(self, landmarks: np.ndarray) -> np.ndarray | None:
        """The network's 52 weights on a face's (478, 2+) image landmarks; None where one it reads is missing."""
        points = landmarks[self.network.landmarks, :2]
        return self.network(points) if np.isfinite(points).all() else None

    def given(self, weights: np.ndarray, read: np.ndarray, rest: np.ndarray | None) -> np.ndarray:
        """`weights` with the network's `read` (less the rest face's reading, when there is one) where it speaks."""
        return np.where(self.mask, np.clip(read - (0.0 if rest is None else rest), 0.0, 1.0), weights)


def load_mediapipe_head(path: str | Path | None = None) -> MediaPipeHead:
    """The packaged network (default) or one written by scripts/convert_mediapipe_blendshapes.py; plain arrays."""
    path = Path(path) if path is not None else packaged_data_path(WEIGHTS_FILE)
    return load_plain_arrays(path, WEIGHTS_FORMAT, "blendshape network",
                             "make it with scripts/convert_mediapipe_blendshapes.py",
                             lambda meta, arrays: MediaPipeHead(arrays, meta))


@functools.lru_cache(maxsize=1)
def packaged_mediapipe_head() -> MediaPipeHead | None:
    """The packaged network, loaded once; None when the package holds none."""
    path = packaged_data_path(WEIGHTS_FILE)
    return load_mediapipe_head(path) if path.is_file() else None
