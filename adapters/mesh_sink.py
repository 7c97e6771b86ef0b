"""Dense-mesh outputs for `facetrack run --mesh PATH`: an .npz of vertices per face per frame,
or a folder with one PLY/OBJ file per face per frame (written with open3d).

The mesh comes from `FaceResult.mesh`, which the tracker fills only when `TrackerConfig.mesh`
is on; it never travels on the wire.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from facetrack.tracker.core.errors import SinkError
from facetrack.tracker.core.schema import FrameResult, StreamMetadata

MESH_FORMATS = ("ply", "obj")
_PARTIAL = ".partial"


class MeshNpzSink:
    """Collects every face's vertices and writes one .npz at close (`NAME.partial` then renamed).

    Arrays: frame_index (R,), track_id (R,), pts (R,) (NaN if unknown), vertices (R, V, 3)
    float32 in cm in the camera frame, triangles (T, 3), metadata_json.
    """

    stage = "mesh"

    def __init__(self, path: Path) -> None:
        if path.suffix != ".npz":
            raise SinkError(f"mesh file {path}: use an .npz name, or a folder for a PLY/OBJ sequence")
        self.path = path
        self._rows: list[tuple[int, int, float, np.ndarray]] = []
        self._triangles: np.ndarray | None = None
        self._metadata: StreamMetadata | None = None

    def start(self, metadata: StreamMetadata) -> None:
        self._metadata = metadata

    def write(self, result: FrameResult) -> None:
        for face in result.faces:
            if face.mesh is None:
                raise SinkError("mesh output needs the tracker to evaluate meshes (TrackerConfig.mesh=True, a model)")
            vertices, triangles = face.mesh
            self._triangles = triangles
            pts = np.nan if result.pts is None else result.pts
            self._rows.append((result.frame_index, face.track_id, pts, vertices))

    def discard(self) -> None:
        """A run that ended before its first frame: write nothing."""
        self._rows, self._metadata = [], None

    def close(self) -> None:
        if self._metadata is None:
            return
        partial = self.path.with_name(self.path.name + _PARTIAL)
        vertex_count = self._rows[0][3].shape[0] if self._rows else 0
        try:
            with open(partial, "wb") as out:
                np.savez(
                    out,
                    frame_index=np.array([r[0] for r in self._rows], np.int64),
                    track_id=np.array([r[1] for r in self._rows], np.int64),
                    pts=np.array([r[2] for r in self._rows], np.float64),
                    vertices=np.stack([r[3] for r in self._rows]) if self._rows
                    else np.zeros((0, vertex_count, 3), np.float32),
                    triangles=self._triangles if self._triangles is not None else np.zeros((0, 3), np.int32),
                    metadata_json=np.array(self._metadata.model_dump_json(by_alias=True)),
                )
            os.replace(partial, self.path)
        except OSError as exc:
            raise SinkError(f"cannot write {partial}: {exc.strerror or exc}") from None
        finally:
            self._metadata = None


class MeshSequenceSink:
    """Writes `frame_NNNNNN_faceT.ply` (or .obj) per face per frame into a folder, with open3d."""

    stage = "mesh"

    def __init__(self, folder: Path, mesh_format: str = "ply") -> None:
        if mesh_format not in MESH_FORMATS:
            raise SinkError(f"mesh format {mesh_format!r}: choose one of {', '.join(MESH_FORMATS)}")
        try:
            import open3d
        except ImportError:
            raise SinkError('PLY/OBJ mesh sequences need open3d: pip install "facetrack[mesh]" '
                            "(or write an .npz with --mesh NAME.npz)") from None
        self._o3d = open3d
        self.folder = folder
        self.mesh_format = mesh_format
        self.files_written = 0
        self._pending: str | None = None

    def start(self, metadata: StreamMetadata) -> None:
        """Keep the metadata; stream.json is written with the first mesh file (or at the close of a complete
        run), so a run refused before its first frame leaves nothing behind."""
        self._pending = json.dumps(metadata.model_dump(mode="json", by_alias=True), indent=2)
        if self.files_written:
            self._write_stream_json()

    def _write_stream_json(self) -> None:
        if self._pending is None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / "stream.json").write_text(self._pending)
        except OSError as exc:
            raise SinkError(f"cannot write the mesh folder {self.folder}: {exc.strerror or exc}") from None
        self._pending = None

    def write(self, result: FrameResult) -> None:
        o3d = self._o3d
        for face in result.faces:
            if face.mesh is None:
                raise SinkError("mesh output needs the tracker to evaluate meshes (TrackerConfig.mesh=True, a model)")
            vertices, triangles = face.mesh
            self._write_stream_json()
            mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(vertices.astype(np.float64)),
                                             o3d.utility.Vector3iVector(triangles.astype(np.int32)))
            path = self.folder / f"frame_{result.frame_index:06d}_face{face.track_id}.{self.mesh_format}"
            if not o3d.io.write_triangle_mesh(str(path), mesh, write_ascii=False, write_vertex_normals=False):
                raise SinkError(f"open3d could not write {path}")
            self.files_written += 1

    def close(self) -> None:
        """Every mesh file is complete when written; a complete run without faces still gets its stream.json."""
        self._write_stream_json()

    def discard(self) -> None:
        """A run that ended before its first frame: nothing was written, nothing will be."""
        self._pending = None


def open_mesh_sink(path: Path, mesh_format: str = "ply") -> MeshNpzSink | MeshSequenceSink:
    """`NAME.npz` -> one archive; anything else -> a folder of per-frame PLY/OBJ files."""
    return MeshNpzSink(path) if path.suffix == ".npz" else MeshSequenceSink(path, mesh_format)
