"""Loaders for licensed morphable models a user may hold: BFM 2009, Deep3DFaceRecon's BFM, FLAME.

facetrack never ships these files; a user points `facetrack models install` at their
own copy. Reading never executes code from the file: `.mat` files go through
`scipy.io.loadmat` (data only) and FLAME's `generic_model.pkl` through a restricted
unpickler that resolves only numpy reconstruction, scipy sparse matrices and a
chumpy stand-in; anything else in the pickle raises `ModelError`.

These models have no ARKit semantics (BFM 2009 has no expressions; Deep3D and FLAME
have signed PCA expressions), so their `arkit_map` is zero and the expression bounds
are stored in the model's `extra["exp_bounds"]`; the fitter honours them.
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.facemodel.format import ModelError, MorphableModel


@dataclass
class RawModel:
    """A model read from a third-party file, before the landmark embedding is attached."""

    id: str
    name: str
    licence: str
    neutral: np.ndarray  # (V, 3) cm
    id_basis: np.ndarray  # (K_id, V, 3) cm per unit coefficient
    exp_basis: np.ndarray  # (K_exp, V, 3)
    triangles: np.ndarray  # (F, 3) 0-based
    exp_bounds: tuple[float, float]
    lmk68: np.ndarray | None = None  # iBUG-68 vertex indices, when the file has them
    source: str = ""


def to_cm_scale(vertices: np.ndarray) -> float:
    """Power-of-ten factor that makes a face mesh 5..50 cm wide (files use m, mm, um...)."""
    width = float(np.ptp(np.asarray(vertices)[:, 0]))
    if width <= 0:
        raise ModelError("the mesh has zero width; it is not a face model")
    p = np.ceil(np.log10(5.0 / width))
    return float(10.0**p)


def _basis(flat: np.ndarray, n_vertices: int) -> np.ndarray:
    """(3V, K) column basis (x0 y0 z0 x1 ...) -> (K, V, 3)."""
    return np.ascontiguousarray(np.asarray(flat, np.float64).T.reshape(-1, n_vertices, 3))


def _loadmat(path: Path) -> dict[str, Any]:
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        return loadmat(str(path))
    except (OSError, ValueError, NotImplementedError, MatReadError) as exc:
        raise ModelError(f"cannot read {path} as a MATLAB file ({exc}); v7.3/HDF5 files need re-saving as v7") from exc


def _require(contents: dict[str, Any], keys: tuple[str, ...], path: str | os.PathLike[str], what: str) -> None:
    missing = [k for k in keys if k not in contents]
    if missing:
        raise ModelError(f"{path} lacks {', '.join(missing)}: not a {what}")


def read_bfm2009(path: str | os.PathLike[str]) -> RawModel:
    """Basel Face Model 2009 `01_MorphableModel.mat` (identity only, 199 modes)."""
    m = _loadmat(Path(path))
    _require(m, ("shapeMU", "shapePC", "shapeEV", "tl"), path, "BFM 2009 01_MorphableModel.mat")
    mu = np.asarray(m["shapeMU"], np.float64).reshape(-1, 3)
    scale = to_cm_scale(mu)
    pcs = np.asarray(m["shapePC"], np.float64) * np.asarray(m["shapeEV"], np.float64).reshape(1, -1)
    return RawModel(
        id="bfm2009", name="Basel Face Model 2009", licence="BFM 2009 licence (non-commercial research)",
        neutral=mu * scale, id_basis=_basis(pcs, len(mu)) * scale, exp_basis=np.zeros((0, len(mu), 3)),
        triangles=np.asarray(m["tl"], np.int64) - 1, exp_bounds=(0.0, 1.0), source=str(path),
    )


def read_bfm_front(path: str | os.PathLike[str]) -> RawModel:
    """Deep3DFaceRecon's `BFM_model_front.mat` (80 identity, 64 expression modes)."""
    m = _loadmat(Path(path))
    _require(m, ("meanshape", "idBase", "exBase", "tri"), path, "Deep3DFaceRecon BFM_model_front.mat")
    mu = np.asarray(m["meanshape"], np.float64).reshape(-1, 3)
    scale = to_cm_scale(mu)
    kp = np.asarray(m["keypoints"], np.int64).ravel() - 1 if "keypoints" in m else None
    return RawModel(
        id="bfm-front", name="BFM 2009 front (Deep3DFaceRecon)", licence="BFM 2009 licence (non-commercial research)",
        neutral=mu * scale, id_basis=_basis(m["idBase"], len(mu)) * scale,
        exp_basis=_basis(m["exBase"], len(mu)) * scale, triangles=np.asarray(m["tri"], np.int64) - 1,
        exp_bounds=(-np.inf, np.inf), lmk68=kp, source=str(path),
    )


class ChumpyStandIn:
    """Takes the place of chumpy's `Ch` objects in FLAME pickles: keeps their array only."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.x: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            for key in ("x", "a", "_x"):
                if key in state and isinstance(state[key], np.ndarray):
                    self.x = state[key]
                    return
            arrays = [v for v in state.values() if isinstance(v, np.ndarray)]
            self.x = arrays[0] if arrays else None

    @property
    def r(self) -> np.ndarray | None:
        return self.x


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only data types; any other global (os.system, eval, ...) is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
        ("__builtin__", "object"), ("builtins", "object"), ("_codecs", "encode"),
    }
    SPARSE = {"csc_matrix", "csr_matrix", "coo_matrix"}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            if name == "encode":  # Python 3 protocol-2 pickles wrap array bytes in it
                import codecs

                return codecs.encode
            if name == "_reconstructor":
                import copyreg

                return copyreg._reconstructor
            if name == "object":
                return object
            if name == "_reconstruct":
                return np.core.multiarray._reconstruct
            if name == "scalar":
                return np.core.multiarray.scalar
            return getattr(np, name)
        if module.startswith("scipy.sparse") and name in self.SPARSE:
            import scipy.sparse

            return getattr(scipy.sparse, name)
        if module.startswith("chumpy"):
            return ChumpyStandIn
        raise ModelError(f"refusing to load {module}.{name} from a pickle: model files may only hold arrays "
                         "(is this really FLAME's generic_model.pkl?)")


def safe_unpickle(data: bytes) -> Any:
    """Unpickle numeric data without running code (latin1 for Python 2 pickles)."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - any malformed pickle is a user-facing model error
        raise ModelError(f"cannot read the pickle ({type(exc).__name__}: {exc})") from exc


def _arr(v: Any) -> np.ndarray:
    if isinstance(v, ChumpyStandIn):
        if v.x is None:
            raise ModelError("a chumpy array in the FLAME file holds no data")
        return np.asarray(v.x)
    return np.asarray(v)


def read_flame(path: str | os.PathLike[str], n_shape: int = 300, n_expression: int = 100) -> RawModel:
    """FLAME `generic_model.pkl` (shape and expression blendshapes; pose correctives ignored)."""
    d = safe_unpickle(Path(path).read_bytes())
    if not isinstance(d, dict) or "v_template" not in d or "shapedirs" not in d or "f" not in d:
        raise ModelError(f"{path} is not a FLAME model (needs v_template, shapedirs and f)")
    v = _arr(d["v_template"]).astype(np.float64)
    sd = _arr(d["shapedirs"]).astype(np.float64)  # (V, 3, n_shape + n_expression)
    scale = to_cm_scale(v)
    n_shape = min(n_shape, sd.shape[2])
    return RawModel(
        id="flame", name="FLAME", licence="FLAME licence (non-commercial scientific research)",
        neutral=v * scale, id_basis=np.ascontiguousarray(sd[:, :, :n_shape].transpose(2, 0, 1)) * scale,
        exp_basis=np.ascontiguousarray(sd[:, :, n_shape:n_shape + n_expression].transpose(2, 0, 1)) * scale,
        triangles=_arr(d["f"]).astype(np.int64), exp_bounds=(-np.inf, np.inf), source=str(path),
    )


def build_model(raw: RawModel, embedding: Any | None = None) -> MorphableModel:
    """A MorphableModel from raw data; computes the 478 embedding by rendering when not given.

    The iBUG-68 embedding is the file's own keypoints when present, else the 478
    embedding composed with mediapipe's 68-point subset.
    """
    from facetrack.tracker.facemodel.builtin_rig import IBUG68_FROM_MEDIAPIPE
    from facetrack.tracker.facemodel.format import vertex_embedding
    from facetrack.tracker.facemodel.ict import compute_landmark_embedding

    emb = embedding or compute_landmark_embedding(raw.neutral, raw.triangles)
    if raw.lmk68 is not None:
        v68, b68 = vertex_embedding(raw.lmk68)
    else:
        sel = np.array(IBUG68_FROM_MEDIAPIPE)
        v68, b68 = emb.vertices[sel], emb.bary[sel]
    k_exp = raw.exp_basis.shape[0]
    return MorphableModel(
        id=raw.id, name=raw.name, neutral=raw.neutral, id_basis=raw.id_basis, exp_basis=raw.exp_basis,
        exp_names=[f"exp{i:03d}" for i in range(k_exp)], triangles=raw.triangles, lmk_vertices=emb.vertices,
        lmk_bary=emb.bary, lmk_valid=emb.valid, lmk68_vertices=v68, lmk68_bary=b68,
        arkit_map=np.zeros((len(ARKIT_BLENDSHAPES), k_exp), np.float32), licence=raw.licence, source=raw.source,
        extra={"exp_bounds": [float(raw.exp_bounds[0]), float(raw.exp_bounds[1])],
               "embedding_report": emb.report.model_dump()},
    )
