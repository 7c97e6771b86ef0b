"""A learned landmark-to-weights head: a face's displacement from its rest face in, 52 ARKit weights out.

The fit (fitter.py) explains the landmarks with a sum of shapes under an L1 prior; where
two shape sets can explain the same motion (a wide-open jaw as jawOpen or as lower lip,
stretch and funnel together) it takes whichever is cheapest. The head is a small MLP
trained on faces of the packaged model with known weights (facetrack.training.
expression_head: sparse, realistic expressions, random pose, identity and rest-face
errors, landmark noise), so it learns which explanation real expressions use.

Its input is what the fit already has: the observed landmarks back-projected into the
head frame at the fitted pose (rest_face.observed_shape) minus the track's neutral
(identity plus rest face), over the fitted landmarks, divided by the face's RMS radius.
It is evaluated on the face and on its mirror image (x negated, landmarks and
left/right weights swapped) and the two answers averaged, so a face and its mirror image
get mirrored weights exactly. Inference is three small dense layers in numpy (~0.2 ms a face).
The weights are plain arrays in `data/expression_head.npz` (no pickle).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.facemodel.format import ModelError, load_plain_arrays, packaged_data_path

HEAD_FILE = "expression_head.npz"
HEAD_FORMAT = "facetrack.expression_head/1"


def arkit_mirror() -> np.ndarray:
    """Index of each ARKit weight's mirror image (Left <-> Right)."""
    names = list(ARKIT_BLENDSHAPES)

    def swap(n: str) -> str:
        return n.replace("Left", "\0").replace("Right", "Left").replace("\0", "Right")

    return np.array([names.index(swap(n)) for n in names])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x), without overflow warnings where a face far from any training face drives x below -88."""
    return 1.0 / (1.0 + np.exp(-np.maximum(x, -80.0)))


def _silu(x: np.ndarray) -> np.ndarray:
    return x * _sigmoid(x)


class ExpressionHead:
    """The MLP and what it needs to read a face: its landmark set, their mirror pairing and the input scaling."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]], landmarks: np.ndarray, mirror: np.ndarray,
                 in_mean: np.ndarray, in_std: np.ndarray, model_id: str, meta: dict | None = None) -> None:
        self.layers = [(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in layers]
        # (out, in) weights and column biases: one face (and its mirror image) is 5-10x faster than (in, out)
        self._columns = [(np.ascontiguousarray(w.T), b[:, None]) for w, b in self.layers]
        self.landmarks = np.asarray(landmarks, np.int64)
        pos = {int(v): i for i, v in enumerate(self.landmarks)}
        self.mirror = mirror = np.asarray(mirror, np.int64)
        try:  # row of each feature landmark's mirror partner within the landmark set
            self._mirror_rows = np.array([pos[int(mirror[v])] for v in self.landmarks])
        except KeyError as exc:
            raise ModelError(f"the expression head's landmark set is not closed under mirroring ({exc})") from None
        self.in_mean = np.asarray(in_mean, np.float32)
        self.in_std = np.asarray(in_std, np.float32)
        self.model_id = model_id
        self.meta = meta or {}
        self._out_mirror = arkit_mirror()
        n_in, n_out = self.layers[0][0].shape[0], self.layers[-1][0].shape[1]
        if n_in != 3 * len(self.landmarks) or n_out != len(ARKIT_BLENDSHAPES):
            raise ModelError("the expression head's layers do not match its landmark set and the 52 ARKit weights")

    def features(self, observed: np.ndarray, neutral: np.ndarray, radius: float) -> np.ndarray:
        """(..., L, 3) head-frame landmarks and the track's neutral -> (..., 3L) scaled displacements."""
        d = (np.asarray(observed) - np.asarray(neutral)) / radius
        return d.reshape(*d.shape[:-2], -1).astype(np.float32)

    def mirror_features(self, feats: np.ndarray) -> np.ndarray:
        """The features of the mirror image: x negated, each landmark swapped with its partner."""
        d = feats.reshape(*feats.shape[:-1], feats.shape[-1] // 3, 3)[..., self._mirror_rows, :]
        d = d * np.float32([-1, 1, 1])
        return d.reshape(feats.shape)

    def raw(self, feats: np.ndarray) -> np.ndarray:
        """The MLP alone (no mirror averaging): (B, 3L) -> (B, 52) in [0, 1]."""
        x = ((feats - self.in_mean) / self.in_std).T  # columns: BLAS's matrix-vector path for a few faces
        for w, b in self._columns[:-1]:
            x = _silu(w @ x + b)
        w, b = self._columns[-1]
        return _sigmoid(w @ x + b).T

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        """(B, 3L) or (3L,) features -> 52 ARKit weights, the mean of the face's and its mirror image's answers."""
        f = np.atleast_2d(np.asarray(feats, np.float32))
        both = self.raw(np.concatenate([f, self.mirror_features(f)]))
        out = 0.5 * (both[: len(f)] + both[len(f):][:, self._out_mirror])
        return out[0] if np.ndim(feats) == 1 else out

    def save(self, path: str | Path) -> Path:
        """Write the head as plain arrays (read back with `load_head`)."""
        path = Path(path)
        arrays = {f"w{i}": w for i, (w, _) in enumerate(self.layers)}
        arrays |= {f"b{i}": b for i, (_, b) in enumerate(self.layers)}
        meta = {"format": HEAD_FORMAT, "model_id": self.model_id, "layers": len(self.layers), **self.meta}
        np.savez_compressed(path, metadata=np.array(json.dumps(meta)), landmarks=self.landmarks.astype(np.int32),
                            mirror=self.mirror.astype(np.int32), in_mean=self.in_mean, in_std=self.in_std,
                            **{k: v.astype(np.float16) if k.startswith("w") else v for k, v in arrays.items()})
        return path


def load_head(path: str | Path | None = None) -> ExpressionHead:
    """The packaged head (default) or one written by `ExpressionHead.save`; plain arrays only."""
    path = Path(path) if path is not None else packaged_data_path(HEAD_FILE)

    def build(meta: dict, z: dict[str, np.ndarray]) -> ExpressionHead:
        layers = [(z[f"w{i}"].astype(np.float32), z[f"b{i}"].astype(np.float32)) for i in range(meta["layers"])]
        return ExpressionHead(layers, z["landmarks"], z["mirror"], z["in_mean"], z["in_std"], meta["model_id"],
                              {k: v for k, v in meta.items() if k not in ("format", "model_id", "layers")})

    return load_plain_arrays(path, HEAD_FORMAT, "expression head", "rebuild it with scripts/train_expression_head.py",
                             build)


@functools.lru_cache(maxsize=1)
def packaged_head() -> ExpressionHead | None:
    """The packaged head, loaded once; None when the package holds none."""
    path = packaged_data_path(HEAD_FILE)
    return load_head(path) if path.is_file() else None


def head_for_model(model_id: str, landmarks: np.ndarray) -> ExpressionHead | None:
    """The packaged head when it was trained on this model and these fitted landmarks; None otherwise."""
    head = packaged_head()
    if head is None or head.model_id != model_id or not np.array_equal(head.landmarks, landmarks):
        return None
    return head
