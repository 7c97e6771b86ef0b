"""Install the ICT Face Model Light (USC ICT, MIT licence) as a facetrack model.

Sources, all read by path or downloaded to a cache, never bundled:
- the upstream release: a folder holding `FaceXModel/` (or its contents):
  `generic_neutral_mesh.obj`, `identityNNN.obj`, one OBJ per expression and
  `vertex_indices.json`; or a URL/zip of the GitHub archive (the default source);
- a converted `.npz` of the narrow face area (arrays mean, id_basis, exp_basis,
  exp_names, triangles, lmk68), as kept for development in ../shared/assets.

The model is cropped to the release's "narrow face area" (vertices 0..6705: forehead
to chin, lids and lips) which is what landmarks can see. The 478-landmark embedding is
computed here, at install time, by rendering the neutral face from a few viewpoints,
running mediapipe's face mesh on the renders and casting every landmark back onto the
surface (see `compute_landmark_embedding`), so no third-party correspondence is needed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from facetrack.tracker.core.paths import data_dir
from facetrack.tracker.facemodel.archive import (
    check_digest,
    check_https,
    download,
    safe_extract,
    scratch_folder,
    verify_file,
    verify_tree,
)
from facetrack.tracker.facemodel.format import ModelError, MorphableModel, arkit_map_for, vertex_embedding
from facetrack.tracker.facemodel.registry import install_model
from facetrack.tracker.facemodel.render import cast, closest_on_mesh, fill_holes, project, render

ICT_ID = "ict"
ICT_COMMIT = "da5f95a607f5e6b37755b38d3385d7f2853732e5"
"""The upstream release we install (ICT-FaceKit's master of 2020-12-01): an archive of a commit cannot change."""
ICT_URL = f"https://github.com/ICT-VGL/ICT-FaceKit/archive/{ICT_COMMIT}.zip"
ICT_FACEXMODEL_SHA256 = "26595cfc96f5516713db635db4d3a120f1d60170301a18f8f2627fa33ee01ec0"
"""`tree_digest` of that commit's `FaceXModel/` (160 files): the default download is refused unless it matches.
Check it by hand: `sha256sum` every file in FaceXModel/ (run inside it, sorted by name), then sha256 the listing."""
ICT_LICENCE = "MIT (ICT Face Model Light, USC Institute for Creative Technologies)"
NARROW_FACE_VERTICES = 6706
"""The release's 'Narrow face area': vertices 0..6705 of the 26,719-vertex head."""

ICT_ALIASES = {"browInnerUp": ["browInnerUp_L", "browInnerUp_R"], "cheekPuff": ["cheekPuff_L", "cheekPuff_R"]}
"""ICT splits these two ARKit shapes per side; the ARKit weight is the mean of the halves."""

IRIS = np.arange(468, 478)


@dataclass
class IctData:
    """The ICT model arrays we use, in the head frame, centimetres."""

    neutral: np.ndarray
    id_basis: np.ndarray
    exp_basis: np.ndarray
    exp_names: list[str]
    triangles: np.ndarray
    lmk68: np.ndarray
    source: str = ""


class EmbeddingReport(BaseModel):
    """How well the computed 478-landmark embedding agrees with the renders."""

    views: list[str]
    valid_landmarks: int
    reprojection_px_median: list[float]
    reprojection_iod_pct_median: list[float]
    reprojection_iod_pct_p95: list[float]
    symmetry_pairs: int
    symmetry_mm_mean: float
    symmetry_mm_p95: float


@dataclass
class Embedding:
    vertices: np.ndarray  # (478, 3) int32
    bary: np.ndarray  # (478, 3) float32
    valid: np.ndarray  # (478,) bool
    report: EmbeddingReport
    detections: dict[str, np.ndarray] = field(default_factory=dict)


# -- reading sources --------------------------------------------------------------------
def read_ict_npz(path: str | os.PathLike[str]) -> IctData:
    """Read the converted narrow-face `.npz` (plain arrays, no pickle)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return IctData(
                neutral=z["mean"].astype(np.float32), id_basis=z["id_basis"].astype(np.float32),
                exp_basis=z["exp_basis"].astype(np.float32), exp_names=[str(n) for n in z["exp_names"]],
                triangles=z["triangles"].astype(np.int32), lmk68=z["lmk68"].astype(np.int32), source=str(path),
            )
    except KeyError as exc:
        raise ModelError(
            f"{path} is not an ICT narrow-face npz (missing {exc}); use the release folder instead"
        ) from exc
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from exc


def read_obj_vertices(path: Path) -> np.ndarray:
    """Vertex positions of an OBJ file (fast: only the `v ` lines are parsed)."""
    raw = path.read_bytes().split(b"\n")
    vs = [ln[2:] for ln in raw if ln.startswith(b"v ")]
    arr = np.array(b" ".join(vs).split(), dtype=np.float64)
    return arr.reshape(-1, 3)[:, :3] if arr.size % 3 == 0 else np.array([ln.split()[:3] for ln in vs], np.float64)


def read_obj_faces(path: Path) -> list[list[int]]:
    """Polygon faces of an OBJ (0-based vertex indices; texture/normal indices dropped)."""
    out = []
    for ln in path.read_bytes().split(b"\n"):
        if ln.startswith(b"f "):
            out.append([int(t.split(b"/")[0]) - 1 for t in ln.split()[1:]])
    return out


def triangulate(faces: list[list[int]], keep_below: int) -> np.ndarray:
    """Fan-triangulate polygons whose vertices all lie in 0..keep_below-1."""
    tris = []
    for f in faces:
        if max(f) < keep_below:
            tris.extend([f[0], f[k], f[k + 1]] for k in range(1, len(f) - 1))
    return np.asarray(tris, np.int32)


def _release_folder(path: Path) -> Path:
    for cand in (path, path / "FaceXModel", *path.glob("*/FaceXModel")):
        if (cand / "vertex_indices.json").is_file() and (cand / "generic_neutral_mesh.obj").is_file():
            return cand
    raise ModelError(f"{path} holds no ICT release (expected FaceXModel/ with generic_neutral_mesh.obj and "
                     "vertex_indices.json); pass the ICT-FaceKit folder, its zip, or the converted .npz")


def read_ict_release(path: str | os.PathLike[str]) -> IctData:
    """Read the upstream `FaceXModel/` OBJs, cropped to the narrow face area."""
    folder = _release_folder(Path(path))
    meta = json.loads((folder / "vertex_indices.json").read_text())
    names = [str(n) for n in meta["expressions"]]
    ids = sorted(folder.glob("identity[0-9][0-9][0-9].obj"))
    missing = [f"{n}.obj" for n in names if not (folder / f"{n}.obj").is_file()]
    if missing or not ids:
        what = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "") if missing else "identityNNN.obj"
        raise ModelError(f"the ICT release in {folder} is incomplete (missing {what}); "
                         "download the whole FaceXModel folder (`facetrack models install ict` does it)")
    n = NARROW_FACE_VERTICES
    neutral_full = read_obj_vertices(folder / "generic_neutral_mesh.obj")
    neutral = neutral_full[:n]
    id_basis = np.stack([read_obj_vertices(p)[:n] - neutral for p in ids])
    exp_basis = np.stack([read_obj_vertices(folder / f"{e}.obj")[:n] - neutral for e in names])
    tris = triangulate(read_obj_faces(folder / "generic_neutral_mesh.obj"), n)
    lmk68 = np.asarray(meta["idx_to_landmark_verts"], np.int32)
    return IctData(neutral.astype(np.float32), id_basis.astype(np.float32), exp_basis.astype(np.float32), names,
                   tris, lmk68, source=str(folder))


def _facexmodel_entry(name: str) -> str | None:
    """`<anything>/FaceXModel/<path>` -> `FaceXModel/<path>`; other entries are skipped."""
    if "FaceXModel/" not in name:
        return None
    return "FaceXModel/" + name.split("FaceXModel/", 1)[1]


def fetch_ict(url: str = ICT_URL, cache: Path | None = None, sha256: str | None = None) -> Path:
    """Download and unpack an ICT-FaceKit archive into the user cache; returns its FaceXModel/.

    https only; every download is pinned: the default release by `ICT_FACEXMODEL_SHA256` (its files),
    any other URL by the archive's `sha256`, which must be given (else refused before any request). The
    archive is unpacked into a scratch folder (every entry kept inside it), checked, and only then moved
    into a cache folder of its own (the default release's, or one per pinned digest): a failed download
    or a refused archive leaves nothing behind, and no other archive can take the default's place.
    """
    check_https(url)
    pin = check_digest(sha256, url) if sha256 is not None or url != ICT_URL else None
    base = cache or data_dir() / "cache" / "ict"
    cache = base if url == ICT_URL and pin is None else base.parent / f"ict-sha256-{pin}"
    with contextlib.suppress(ModelError):  # already downloaded, checked and unpacked
        return _release_folder(cache)
    scratch = scratch_folder(cache.parent, ".ict-download-")
    try:
        archive = download(url, scratch / "ict.zip")
        if pin is not None:
            verify_file(archive, pin, url)
        safe_extract(archive, scratch / "unpacked", _facexmodel_entry)
        folder = scratch / "unpacked" / "FaceXModel"
        if url == ICT_URL:
            verify_tree(folder, ICT_FACEXMODEL_SHA256, url)
        _release_folder(folder)
        cache.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(cache / "FaceXModel", ignore_errors=True)
        os.replace(folder, cache / "FaceXModel")
    except ModelError as exc:
        raise ModelError(f"{exc}; or download ICT-FaceKit yourself and run "
                         "`facetrack models install ict --from PATH`") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return _release_folder(cache)


def read_ict(source: str | os.PathLike[str] | None = None, sha256: str | None = None) -> IctData:
    """Read ICT from an https URL (default: the pinned upstream release; another needs `sha256`), a release
    folder or zip, or a converted npz (checked against `sha256` when given). A zip is unpacked into a
    scratch folder that is removed afterwards, whatever happens."""
    s = str(source) if source is not None else ICT_URL
    if "://" in s:
        return read_ict_release(fetch_ict(s, sha256=sha256))
    p = Path(s).expanduser()
    if not p.exists():
        raise ModelError(f"ICT source {p} does not exist; pass the ICT-FaceKit folder, its zip or the .npz")
    if sha256 is not None:
        if not p.is_file():
            raise ModelError(f"--sha256 checks an archive or an .npz file; {p} is a folder")
        verify_file(p, check_digest(sha256, str(p)), str(p))
    if p.suffix == ".npz":
        return read_ict_npz(p)
    if p.suffix == ".zip":
        scratch = scratch_folder(data_dir() / "cache", ".ict-zip-")
        try:
            safe_extract(p, scratch)
            return read_ict_release(scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return read_ict_release(p)


# -- landmark correspondence ------------------------------------------------------------
def _rot(yaw: float, pitch: float) -> np.ndarray:
    a, b = np.deg2rad(yaw), np.deg2rad(pitch)
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rx @ ry


DEFAULT_VIEWS: tuple[tuple[str, float, float], ...] = (
    ("front", 0.0, 0.0), ("yaw+20", 20.0, 0.0), ("yaw-20", -20.0, 0.0), ("pitch+12", 0.0, 12.0),
    ("pitch-12", 0.0, -12.0),
)


def _detect(images: list[np.ndarray]) -> list[np.ndarray | None]:
    """mediapipe face mesh (478 points, pixels) on each RGB image."""
    import mediapipe as mp  # imported here: only installing needs it

    out: list[np.ndarray | None] = []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True) as fm:
        for img in images:
            r = fm.process(img)
            if not r.multi_face_landmarks:
                out.append(None)
                continue
            lm = np.array([[p.x, p.y] for p in r.multi_face_landmarks[0].landmark], np.float64)
            out.append(lm * [img.shape[1], img.shape[0]])
    return out


def compute_landmark_embedding(neutral: np.ndarray, triangles: np.ndarray,
                               views: tuple[tuple[str, float, float], ...] = DEFAULT_VIEWS,
                               size: int = 512) -> Embedding:
    """Map mediapipe's 478 landmarks onto a neutral mesh by render + detect + back-project.

    Each view's detections are cast onto the mesh; a landmark's surface point is the
    median of its hits over the views where the surface faces the camera, snapped back
    onto the mesh. Landmarks that only hit the eye holes (the irises, as the narrow ICT
    face has no eyeballs) or nothing are marked invalid.
    """
    mesh = fill_holes(neutral, triangles)
    centre = neutral.mean(0)
    mesh.vertices = mesh.vertices - centre
    distance = 45.0
    rends = [render(mesh, _rot(y, p), distance, size) for _, y, p in views]
    dets = _detect([r.image for r in rends])
    if dets[0] is None:
        raise ModelError("mediapipe found no face on the frontal render of the model; the mesh is not a face "
                         "in the head frame (x = subject's left, y up, z out of the face)")
    hits, good, eye_hole, any_hit = [], [], [], []
    for rend, det in zip(rends, dets):
        if det is None:
            continue
        tri, bary, head = cast(rend, mesh, det)
        hole = np.where(tri >= 0, mesh.hole_of[np.maximum(tri, 0)], 0)
        # facing test on the hit triangle: normal . view direction
        t = mesh.triangles[np.maximum(tri, 0)]
        a, b, c = (rend.cam_vertices[t[:, k]] for k in range(3))
        n = np.cross(b - a, c - a)
        n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
        ray = a / np.linalg.norm(a, axis=1, keepdims=True)
        facing = np.abs(np.einsum("ij,ij->i", n, ray))
        hits.append(head)
        good.append((tri >= 0) & (facing > 0.35))
        any_hit.append(tri >= 0)
        is_eye = np.zeros(len(tri), bool)
        for k, kind in enumerate(mesh.hole_kind, start=1):
            if kind == "eye":
                is_eye |= hole == k
        eye_hole.append(is_eye & (tri >= 0))
    hits_a, good_a, eye_a = np.stack(hits), np.stack(good), np.stack(eye_hole)
    any_a = np.stack(any_hit)
    # landmarks no view sees face-on (silhouette points) fall back to any hit
    use = np.where(good_a.any(0)[None, :], good_a, any_a)
    masked = np.where(use[..., None], hits_a, np.nan)
    valid = use.any(0)
    point = np.zeros((hits_a.shape[1], 3))
    with np.errstate(all="ignore"):
        point[valid] = np.nanmedian(masked[:, valid], axis=0)
    # the irises lie in the eye holes of a model without eyeballs: not on its surface
    if eye_a[:, IRIS].mean() > 0.25:
        valid[IRIS] = False
    point = np.where(valid[:, None], point, 0.0)
    tri_idx, bary, _ = closest_on_mesh(point + centre, neutral, triangles)
    verts = np.asarray(triangles)[tri_idx].astype(np.int32)
    emb = Embedding(verts, bary.astype(np.float32), valid, report=None, detections={})  # type: ignore[arg-type]
    emb.detections = {name: d for (name, _, _), d in zip(views, dets) if d is not None}
    emb.report = _validate(emb, neutral, views, rends, dets, centre, distance, size)
    return emb


def _validate(emb: Embedding, neutral: np.ndarray, views, rends, dets, centre, distance: float,
              size: int) -> EmbeddingReport:
    """Reprojection error on each render and left/right symmetry of the embedding."""
    pts = np.einsum("nkc,nk->nc", neutral[emb.vertices].astype(np.float64), emb.bary) - centre
    names, med_px, med_pct, p95_pct = [], [], [], []
    for (name, y, p), rend, det in zip(views, rends, dets):
        if det is None:
            continue
        cam = pts @ _rot(y, p).T
        cam[:, 2] -= distance
        err = np.linalg.norm(project(cam, rend.focal, size) - det, axis=1)[emb.valid]
        iod = np.linalg.norm(det[33] - det[263])
        names.append(name)
        med_px.append(round(float(np.median(err)), 3))
        med_pct.append(round(float(100 * np.median(err) / iod), 3))
        p95_pct.append(round(float(100 * np.percentile(err, 95) / iod), 3))
    # symmetric pairs from the frontal detection itself: mirror about the face's midline
    det = dets[0]
    mid = 0.5 * (det[33] + det[263])
    mirrored = det.copy()
    mirrored[:, 0] = 2 * mid[0] - det[:, 0]
    d = np.linalg.norm(mirrored[:, None, :] - det[None, :, :], axis=2)
    j = np.argmin(d, axis=1)
    mutual = (j[j] == np.arange(len(j))) & (j != np.arange(len(j))) & emb.valid & emb.valid[j]
    i = np.nonzero(mutual & (np.arange(len(j)) < j))[0]
    sym = np.linalg.norm(pts[i] * [-1, 1, 1] - pts[j[i]], axis=1) * 10.0  # cm -> mm
    return EmbeddingReport(
        views=names, valid_landmarks=int(emb.valid.sum()), reprojection_px_median=med_px,
        reprojection_iod_pct_median=med_pct, reprojection_iod_pct_p95=p95_pct, symmetry_pairs=int(len(i)),
        symmetry_mm_mean=round(float(sym.mean()), 3) if len(i) else float("nan"),
        symmetry_mm_p95=round(float(np.percentile(sym, 95)), 3) if len(i) else float("nan"),
    )


# -- model ------------------------------------------------------------------------------
def build_ict_model(data: IctData, embedding: Embedding | None = None) -> MorphableModel:
    """A facetrack model from ICT arrays (computes the landmark embedding when not given)."""
    if data.exp_basis.shape[0] != len(data.exp_names):
        raise ModelError("ICT data is inconsistent: expression names and shapes differ in number")
    emb = embedding or compute_landmark_embedding(data.neutral, data.triangles)
    v68, b68 = vertex_embedding(data.lmk68)
    return MorphableModel(
        id=ICT_ID, name="ICT Face Model Light (narrow face)", neutral=data.neutral, id_basis=data.id_basis,
        exp_basis=data.exp_basis, exp_names=data.exp_names, triangles=data.triangles,
        lmk_vertices=emb.vertices, lmk_bary=emb.bary, lmk_valid=emb.valid, lmk68_vertices=v68, lmk68_bary=b68,
        arkit_map=arkit_map_for(data.exp_names, ICT_ALIASES), licence=ICT_LICENCE, units="cm",
        source=data.source,
        description="100 identity modes (~N(0,1)), 53 ARKit-style expressions (split browInnerUp/cheekPuff "
                    "merged for ARKit output; no tongueOut); landmark embedding computed at install time.",
        extra={"embedding_report": emb.report.model_dump()},
    )


def install_ict(source: str | os.PathLike[str] | None = None,
                sha256: str | None = None) -> tuple[Path, EmbeddingReport]:
    """Read ICT from `source` (default: the pinned upstream archive), build and install it."""
    data = read_ict(source, sha256)
    emb = compute_landmark_embedding(data.neutral, data.triangles)
    model = build_ict_model(data, emb)
    return install_model(model), emb.report
