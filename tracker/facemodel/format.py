"""The on-disk and in-memory form of a morphable face model (`facetrack.facemodel/1`).

A model is data, so one fitter serves every model. On disk it is ONE `.npz` file of
plain numeric arrays plus a `metadata` JSON string; it is read with
`allow_pickle=False`, so opening a model file can never run code. The metadata holds a
sha256 over the arrays' canonical bytes, checked on load, so a truncated or edited
file fails loudly instead of producing silently wrong fits.

Arrays (V vertices, F triangles, K_id / K_exp modes):

==================  ===============  ================================================
name                shape, dtype     meaning
==================  ===============  ================================================
neutral             (V, 3) f32       mean face, head frame (x = subject's left, y up,
                                     z out of the face), in `units` (cm)
id_basis            (K_id, V, 3) f32 identity deltas, coefficients ~ N(0, 1)
exp_basis           (K_exp, V, 3)    expression deltas, coefficients in [0, 1]
triangles           (F, 3) i32       counter-clockwise seen from the front
lmk_vertices        (478, 3) i32     per mediapipe landmark: the 3 vertices of its
                                     triangle (a vertex embedding repeats one index)
lmk_bary            (478, 3) f32     barycentric weights of those vertices
lmk_valid           (478,) bool      False where the landmark is not on the surface
                                     (e.g. irises of a model without eyeballs)
lmk68_vertices      (68, 3) i32      iBUG-68 embedding, same convention
lmk68_bary          (68, 3) f32
arkit_map           (52, K_exp) f32  ARKit weights = arkit_map @ expression
==================  ===============  ================================================

Metadata keys: format, id, name, licence, units, source, description, exp_names,
sha256, and free-form `extra`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from facetrack.tracker.core.errors import FacetrackError
from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES, LANDMARK_COUNT

T = TypeVar("T")

FORMAT_ID = "facetrack.facemodel/1"
"""Written into every model file; bumped when the layout changes incompatibly."""

_ARRAYS: tuple[tuple[str, type], ...] = (
    ("neutral", np.float32),
    ("id_basis", np.float32),
    ("exp_basis", np.float32),
    ("triangles", np.int32),
    ("lmk_vertices", np.int32),
    ("lmk_bary", np.float32),
    ("lmk_valid", np.bool_),
    ("lmk68_vertices", np.int32),
    ("lmk68_bary", np.float32),
    ("arkit_map", np.float32),
)


class ModelError(FacetrackError):
    """A face model is missing, corrupt, inconsistent or cannot be installed."""


def _digest(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> str:
    """sha256 over every array (name, dtype, shape, bytes) and the metadata sans digest."""
    h = hashlib.sha256()
    for name, _ in _ARRAYS:
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    rest = {k: v for k, v in meta.items() if k != "sha256"}
    h.update(json.dumps(rest, sort_keys=True).encode())
    return h.hexdigest()


@dataclass
class MorphableModel:
    """A linear face model: neutral + id_basis . identity + exp_basis . expression."""

    id: str
    name: str
    neutral: np.ndarray
    id_basis: np.ndarray
    exp_basis: np.ndarray
    exp_names: list[str]
    triangles: np.ndarray
    lmk_vertices: np.ndarray
    lmk_bary: np.ndarray
    lmk_valid: np.ndarray
    lmk68_vertices: np.ndarray
    lmk68_bary: np.ndarray
    arkit_map: np.ndarray
    licence: str = "unknown"
    units: str = "cm"
    source: str = ""
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.neutral = np.ascontiguousarray(self.neutral, np.float32)
        v = self.neutral.shape[0]
        self.id_basis = np.ascontiguousarray(self.id_basis, np.float32).reshape(-1, v, 3)
        self.exp_basis = np.ascontiguousarray(self.exp_basis, np.float32).reshape(-1, v, 3)
        self.triangles = np.ascontiguousarray(self.triangles, np.int32).reshape(-1, 3)
        self.lmk_vertices = np.ascontiguousarray(self.lmk_vertices, np.int32)
        self.lmk_bary = np.ascontiguousarray(self.lmk_bary, np.float32)
        self.lmk_valid = np.ascontiguousarray(self.lmk_valid, np.bool_)
        self.lmk68_vertices = np.ascontiguousarray(self.lmk68_vertices, np.int32)
        self.lmk68_bary = np.ascontiguousarray(self.lmk68_bary, np.float32)
        self.arkit_map = np.ascontiguousarray(self.arkit_map, np.float32)
        self.exp_names = [str(n) for n in self.exp_names]
        self.validate()

    # -- shape ---------------------------------------------------------------------------
    @property
    def n_vertices(self) -> int:
        return int(self.neutral.shape[0])

    @property
    def n_identity(self) -> int:
        return int(self.id_basis.shape[0])

    @property
    def n_expression(self) -> int:
        return int(self.exp_basis.shape[0])

    def validate(self) -> None:
        """Raise ModelError naming the first inconsistency (shapes, indices, weights)."""
        v = self.n_vertices
        checks = [
            (self.neutral.ndim == 2 and self.neutral.shape[1] == 3, "neutral must be (V, 3)"),
            (self.exp_basis.shape[0] == len(self.exp_names), "exp_names must name every expression mode"),
            (self.lmk_vertices.shape == (LANDMARK_COUNT, 3), f"lmk_vertices must be ({LANDMARK_COUNT}, 3)"),
            (self.lmk_bary.shape == (LANDMARK_COUNT, 3), f"lmk_bary must be ({LANDMARK_COUNT}, 3)"),
            (self.lmk_valid.shape == (LANDMARK_COUNT,), f"lmk_valid must be ({LANDMARK_COUNT},)"),
            (self.lmk68_vertices.shape == (68, 3) and self.lmk68_bary.shape == (68, 3), "lmk68 must be (68, 3)"),
            (self.arkit_map.shape == (len(ARKIT_BLENDSHAPES), self.n_expression), "arkit_map must be (52, K_exp)"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ModelError(f"model {self.id!r} is inconsistent: {msg}")
        for name in ("triangles", "lmk_vertices", "lmk68_vertices"):
            a = getattr(self, name)
            if a.size and (a.min() < 0 or a.max() >= v):
                raise ModelError(f"model {self.id!r}: {name} index outside 0..{v - 1}")
        if not np.all(np.isfinite(self.neutral)):
            raise ModelError(f"model {self.id!r}: neutral has non-finite values")

    # -- evaluation ----------------------------------------------------------------------
    def shape(self, identity: np.ndarray | None = None, expression: np.ndarray | None = None) -> np.ndarray:
        """Vertices (V, 3) in the head frame for the given coefficients (zeros when None)."""
        out = self.neutral.copy()
        if identity is not None and self.n_identity:
            out += np.tensordot(np.asarray(identity, np.float32), self.id_basis, axes=1)
        if expression is not None and self.n_expression:
            out += np.tensordot(np.asarray(expression, np.float32), self.exp_basis, axes=1)
        return out

    def embed(self, vertices: np.ndarray, which: str = "478") -> np.ndarray:
        """Landmark positions on a vertex array (..., V, 3) via the barycentric embedding."""
        idx, w = (self.lmk_vertices, self.lmk_bary) if which == "478" else (self.lmk68_vertices, self.lmk68_bary)
        return np.einsum("...nkc,nk->...nc", vertices[..., idx, :], w)

    # -- persistence ---------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(getattr(self, name), dtype) for name, dtype in _ARRAYS}

    def metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT_ID,
            "id": self.id,
            "name": self.name,
            "licence": self.licence,
            "units": self.units,
            "source": self.source,
            "description": self.description,
            "exp_names": list(self.exp_names),
            "extra": self.extra,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model atomically (temp file + rename) with its checksum."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = self._arrays()
        meta = self.metadata()
        meta["sha256"] = _digest(arrays, meta)
        buf = io.BytesIO()
        np.savez(buf, metadata=np.array(json.dumps(meta, sort_keys=True)), **arrays)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], verify: bool = True) -> "MorphableModel":
        """Read a model file (never unpickles) and check its sha256 unless verify=False."""
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist; run `facetrack models list` to see installed models")
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except Exception as exc:  # noqa: BLE001 - zip and .npy parsers fail in many ways on damaged files
            raise ModelError(f"{path} is not a readable facetrack model ({exc}); reinstall it") from exc
        missing = [n for n, _ in _ARRAYS if n not in data] + ([] if "metadata" in data else ["metadata"])
        if missing:
            raise ModelError(f"{path} lacks {', '.join(missing)}; it is not a {FORMAT_ID} file, reinstall it")
        try:
            meta = json.loads(str(data.pop("metadata")))
        except ValueError as exc:
            raise ModelError(f"{path} has unreadable metadata ({exc}); reinstall the model") from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_ID:
            found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise ModelError(f"{path} has format {found!r}, this facetrack reads {FORMAT_ID}")
        if verify and _digest(data, meta) != meta.get("sha256"):
            raise ModelError(f"checksum mismatch in {path}: the file is corrupt or was modified; reinstall the model")
        return cls(
            id=meta["id"], name=meta["name"], licence=meta.get("licence", "unknown"), units=meta.get("units", "cm"),
            source=meta.get("source", ""), description=meta.get("description", ""),
            exp_names=meta["exp_names"], extra=meta.get("extra", {}),
            **{n: data[n] for n, _ in _ARRAYS},
        )


def packaged_data_path(name: str) -> Path:
    """Where a file the package ships beside the face models (tracker/facemodel/data/) lies."""
    return Path(str(resources.files("facetrack.tracker.facemodel") / "data" / name))


def load_plain_arrays(path: Path, fmt: str, what: str, how: str,
                      build: Callable[[dict[str, Any], dict[str, np.ndarray]], T]) -> T:
    """`build(metadata, arrays)` from a .npz of plain arrays (no pickle) whose JSON `metadata` names format `fmt`;
    a missing, foreign or unreadable file is a ModelError naming `what` and `how` to make it."""
    if not path.is_file():
        raise ModelError(f"{what} {path} does not exist; {how}")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["metadata"]))
            if meta.get("format") != fmt:
                raise ModelError(f"{path} has format {meta.get('format')!r}, expected {fmt}")
            return build(meta, {k: z[k] for k in z.files if k != "metadata"})
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot read the {what} {path} ({exc})") from exc


def vertex_embedding(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Embedding (vertices, barycentric) that pins each landmark to one vertex."""
    idx = np.asarray(indices, np.int32)
    bary = np.zeros((idx.shape[0], 3), np.float32)
    bary[:, 0] = 1.0
    return np.repeat(idx[:, None], 3, axis=1), bary


def arkit_map_for(exp_names: list[str], aliases: dict[str, list[str]] | None = None) -> np.ndarray:
    """(52, K) map from a model's expression names to ARKit's.

    A name matches directly, or through `_L`/`_R` suffixes (`eyeBlink_L` -> eyeBlinkLeft);
    `aliases` lists several model names averaged into one ARKit name (split shapes).
    ARKit names the model lacks get a zero row.
    """
    m = np.zeros((len(ARKIT_BLENDSHAPES), len(exp_names)), np.float32)
    canon = {}
    for j, n in enumerate(exp_names):
        c = n[:-2] + "Left" if n.endswith("_L") else n[:-2] + "Right" if n.endswith("_R") else n
        canon[c] = j
    pos = {n: j for j, n in enumerate(exp_names)}
    for i, a in enumerate(ARKIT_BLENDSHAPES):
        if aliases and a in aliases:
            src = [pos[s] for s in aliases[a] if s in pos]
            for j in src:
                m[i, j] = 1.0 / len(src)
        elif a in canon:
            m[i, canon[a]] = 1.0
    return m
