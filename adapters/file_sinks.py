"""File sinks (.jsonl, .csv, .parquet, .npz) and `read_results` to load them back.

Every sink writes `<name>.partial` and renames it to `<name>` on close(), so an
incomplete file is never mistaken for a complete one; `discard()` (a run that ended before
its first frame) removes the `.partial` and leaves an earlier `<name>` as it was. JSON lines and CSV are flushed
every frame (a crash loses at most the line being written); Parquet is written in row
groups of `PARQUET_ROW_GROUP` rows; NPZ cannot append, so it is written at close.

JSON lines and Parquet are lossless; a JSON-lines file's first line is the stream's `facetrack.meta/1`
record (schema version, the 52 blendshape names in the order of every face's `blendshapes`, the source),
and a line like it follows wherever the layout changes. The tabular formats (CSV, Parquet, NPZ) hold one
row per face per frame (a frame without faces gets one row with `track_id` -1) and carry the frame
fields (with `source`: the image or file the frame came from), track id, score, bbox, pose,
blendshapes (CSV and Parquet: one column per ARKit name, `eyeBlinkLeft` ...; NPZ: an array and its
`blendshape_names`) and landmarks; Parquet also carries eye state, mouth openness, coefficients,
landmarks68, eye events, dropped_frames and publish_time (`parquet_extras`); in CSV and NPZ those
are left out.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from facetrack.adapters.codec import decode_message, encode_message
from facetrack.tracker.core.errors import ProtocolError, SinkError
from facetrack.tracker.core.schema import (
    ARKIT_BLENDSHAPES,
    LANDMARK_COUNT,
    FaceResult,
    FrameResult,
    HeadPose,
    StreamMetadata,
)
from facetrack.tracker.core.sinks import PARTIAL_SUFFIX, Sink

if TYPE_CHECKING:  # pyarrow (about 45 MB resident) loads with the first Parquet file, not with this module
    import pyarrow as pa
    import pyarrow.parquet as pq

    from facetrack.adapters.parquet_extras import Row

SUPPORTED_EXTENSIONS = (".jsonl", ".csv", ".parquet", ".npz")
PARQUET_ROW_GROUP = 256
PARQUET_METADATA_KEY = b"facetrack.meta"

FRAME_COLUMNS = ("frame_index", "pts", "capture_time", "stream_id", "width", "height", "source")
FACE_COLUMNS = (
    "track_id", "score", "x0", "y0", "x1", "y1", "yaw", "pitch", "roll",
    "qx", "qy", "qz", "qw", "tx", "ty", "tz",
)  # fmt: skip
_FACE_FLOATS = FACE_COLUMNS[1:]
_NO_FACE_ID = -1
_BLEND_FORMAT = ",".join(["%.9g"] * len(ARKIT_BLENDSHAPES))
_NAN_BLENDSHAPES = np.full(len(ARKIT_BLENDSHAPES), np.nan, dtype=np.float32)


def csv_columns(landmark_count: int = LANDMARK_COUNT) -> tuple[str, ...]:
    """The CSV header: frame fields, face fields, the 52 blendshapes by ARKit name, then lm{i}_x/y/z."""
    landmarks = tuple(f"lm{i}_{axis}" for i in range(landmark_count) for axis in "xyz")
    return FRAME_COLUMNS + FACE_COLUMNS + ARKIT_BLENDSHAPES + landmarks


def _face_scalars(face: FaceResult) -> tuple[float, ...]:
    """score, bbox, yaw/pitch/roll, quaternion, translation: the order of `_FACE_FLOATS`."""
    pose = face.pose
    return (face.score, *face.bbox, pose.yaw, pose.pitch, pose.roll, *pose.rotation, *pose.translation)


def _flat_landmarks(face: FaceResult, landmark_count: int) -> np.ndarray:
    flat = np.asarray(face.landmarks, dtype=np.float32).reshape(-1)
    if flat.size != landmark_count * 3:
        raise SinkError(
            f"face {face.track_id} has landmarks of shape {np.shape(face.landmarks)}; "
            f"this file's layout has {landmark_count} points (from the stream metadata)"
        )
    return flat


def _blendshapes(face: FaceResult) -> np.ndarray | None:
    if face.blendshapes is None:
        return None
    values = np.asarray(face.blendshapes, dtype=np.float32).reshape(-1)
    if values.size != len(ARKIT_BLENDSHAPES):
        raise SinkError(f"face {face.track_id} has {values.size} blendshapes, files hold the 52 ARKit ones")
    return values


def _sink_errors() -> tuple[type[Exception], ...]:
    """What a failed write raises: OSError, and Arrow's errors once a Parquet file has loaded pyarrow."""
    arrow = sys.modules.get("pyarrow")
    return (OSError,) if arrow is None else (OSError, arrow.ArrowException)


class _FileSink(ABC):
    """Writes into `<path>.partial`, renames on a clean close; OS errors become SinkError."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial_path = path.with_name(path.name + PARTIAL_SUFFIX)
        self.metadata: StreamMetadata | None = None
        self.frames_written = 0
        self._failed = False
        self._closed = False
        try:
            self._file: BinaryIO = open(self.partial_path, "wb")  # noqa: SIM115 - lives until close()
        except OSError as exc:
            raise SinkError(f"cannot create {self.partial_path}: {exc.strerror or exc}") from None

    @property
    def landmark_count(self) -> int:
        return self.metadata.landmark_count if self.metadata is not None else LANDMARK_COUNT

    def start(self, metadata: StreamMetadata) -> None:
        """Remember the layout (the last one given is what the file records)."""
        self.metadata = metadata

    def write(self, result: FrameResult) -> None:
        """Append one frame; an OS error (disk full...) raises SinkError and leaves the .partial."""
        if self._closed or self._failed:
            raise SinkError(f"{self.partial_path} is {'closed' if self._closed else 'broken by an earlier error'}")
        try:
            self._write(result)
        except _sink_errors() as exc:
            self._fail(exc)
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file and rename it to its final name; idempotent, safe after an error."""
        if self._closed:
            return
        self._closed = True
        if self._failed:  # _fail() already released the file, keeping it as .partial
            return
        try:
            self._finish()
            self._file.close()
            os.replace(self.partial_path, self.path)
        except _sink_errors() as exc:
            self._fail(exc)

    def discard(self) -> None:
        """End without a result (a run that stopped before its first frame): the `.partial` is removed and
        an earlier file under the final name is left as it was; idempotent."""
        if self._closed:
            return
        self._closed = True
        if not self._failed:
            self._release()
        with suppress(OSError):
            self.partial_path.unlink()

    def _fail(self, exc: BaseException) -> None:
        self._failed = True
        self._release()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SinkError(f"cannot write {self.partial_path}: {reason} (what was flushed before stays in it)") from None

    def _release(self) -> None:
        """Close quietly after an error: keep what was flushed, don't mask the first error."""
        with suppress(*_sink_errors()):
            self._abort()
        with suppress(OSError):
            self._file.close()

    @abstractmethod
    def _write(self, result: FrameResult) -> None:
        """Append one frame to the open .partial file."""

    def _finish(self) -> None:  # noqa: B027 - formats that write as they go have nothing to finish
        """Write whatever is buffered (and any footer) before the rename."""

    def _abort(self) -> None:
        """Best effort to leave the .partial readable after an error."""
        self._file.flush()


class JsonlSink(_FileSink):
    """One `facetrack.frame/1` JSON object per line, flushed every frame, after a `facetrack.meta/1` line that
    names the blendshapes (written at start and again when the layout changes)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._layout: str | None = None

    def start(self, metadata: StreamMetadata) -> None:
        """Record the layout: a header line, again only when it changed (a subscriber hears it every few seconds)."""
        super().start(metadata)
        layout = metadata.model_dump_json(exclude={"frames_published", "dropped_frames"})
        if self._closed or self._failed or layout == self._layout:
            return
        self._layout = layout
        try:
            self._file.write(encode_message(metadata, "json") + b"\n")
            self._file.flush()
        except OSError as exc:
            self._fail(exc)

    def _write(self, result: FrameResult) -> None:
        self._file.write(encode_message(result, "json") + b"\n")
        self._file.flush()


def _csv_text(value: str) -> str:
    if any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


class CsvSink(_FileSink):
    """One row per face per frame (a `track_id` -1 row for a frame without faces), flushed every frame."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._header_written = False

    def _write_header(self) -> None:
        self._file.write((",".join(csv_columns(self.landmark_count)) + "\n").encode())
        self._header_written = True

    def _write(self, result: FrameResult) -> None:
        count = self.landmark_count
        if not self._header_written:
            self._write_header()
        pts = "" if result.pts is None else repr(float(result.pts))
        frame = f"{result.frame_index},{pts},{float(result.capture_time)!r},{_csv_text(result.stream_id)},"
        frame += f"{result.width},{result.height},{_csv_text(result.source or '')},"
        if not result.faces:
            empty = len(FACE_COLUMNS) - 1 + len(ARKIT_BLENDSHAPES) + 3 * count
            lines = [frame + str(_NO_FACE_ID) + "," * empty + "\n"]
        else:
            landmark_format = ",".join(["%.9g"] * (3 * count))
            lines = []
            for face in result.faces:
                scalars = ",".join(repr(float(v)) for v in _face_scalars(face))
                shapes = _blendshapes(face)
                blend = "," * (len(ARKIT_BLENDSHAPES) - 1) if shapes is None else _BLEND_FORMAT % tuple(shapes.tolist())
                landmarks = landmark_format % tuple(_flat_landmarks(face, count).tolist())
                lines.append(f"{frame}{int(face.track_id)},{scalars},{blend},{landmarks}\n")
        self._file.write("".join(lines).encode())
        self._file.flush()

    def _finish(self) -> None:
        if not self._header_written:  # a run without frames still gets a readable file
            self._write_header()


def parquet_schema(landmark_count: int = LANDMARK_COUNT) -> pa.Schema:
    """CSV's columns (a float32 column per ARKit blendshape name), but landmarks (x,y,z per point, flat) as a
    fixed-size list, then the columns of `parquet_extras` (eye state, coefficients, landmarks68, events...).

    Face columns are null on a no-face row and the blendshape columns when not fitted; the landmark list is
    all-NaN on a no-face row (see `_fixed_lists` for why not null). Files written before the named columns
    hold one `blendshapes` list column instead: `read_results` reads both.
    """
    import pyarrow as pa

    from facetrack.adapters import parquet_extras

    fields = [
        pa.field("frame_index", pa.int64(), nullable=False),
        pa.field("pts", pa.float64()),
        pa.field("capture_time", pa.float64(), nullable=False),
        pa.field("stream_id", pa.string(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("source", pa.string()),
        pa.field("track_id", pa.int64(), nullable=False),
        *(pa.field(name, pa.float64()) for name in _FACE_FLOATS),
        *(pa.field(name, pa.float32()) for name in ARKIT_BLENDSHAPES),
        pa.field("landmarks", pa.list_(pa.float32(), 3 * landmark_count), nullable=False),
        *parquet_extras.extra_fields(),
    ]
    return pa.schema(fields)


def _fixed_lists(rows: Sequence[np.ndarray | None], size: int) -> pa.FixedSizeListArray:
    """Rows of `size` float32 as one fixed-size list array; None rows become all-NaN.

    Not nulls: Arrow C++ before pyarrow 26 cannot read null fixed-size lists back from
    Parquet (apache/arrow GH-35692), and pyarrow 26 needs numpy 2.
    """
    import pyarrow as pa

    values = np.full((len(rows), size), np.nan, dtype=np.float32)
    for i, row in enumerate(rows):
        if row is not None:
            values[i] = row
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), size)


class ParquetSink(_FileSink):
    """CSV's rows in row groups of `PARQUET_ROW_GROUP`; the stream metadata goes in the file's key-value metadata.

    Parquet's footer is written at close (also after an error); a process killed hard
    leaves a .partial without it, which Parquet readers refuse: use .jsonl or .csv when
    a run must survive that.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._writer: pq.ParquetWriter | None = None
        self._frames: list[tuple[int, float | None, float, str, int, int, str | None]] = []
        self._faces: list[FaceResult | None] = []
        self._rows: list[Row] = []

    def _write(self, result: FrameResult) -> None:
        frame = (
            int(result.frame_index),
            None if result.pts is None else float(result.pts),
            float(result.capture_time),
            result.stream_id,
            int(result.width),
            int(result.height),
            result.source,
        )
        for i, face in enumerate(result.faces or [None]):
            self._frames.append(frame)
            self._faces.append(face)
            self._rows.append((result, i == 0, face))
        if len(self._faces) >= PARQUET_ROW_GROUP:
            self._flush_rows()

    def _open_writer(self) -> pq.ParquetWriter:
        if self._writer is None:
            import pyarrow.parquet as pq

            # Dictionary-encoding float lists costs ~6x the time for a bigger file; byte-stream
            # split + zstd is what compresses float32 coordinates.
            self._writer = pq.ParquetWriter(
                self._file,
                parquet_schema(self.landmark_count),
                compression="zstd",
                use_dictionary=["stream_id", "source"],
                use_byte_stream_split=["landmarks.list.element", *ARKIT_BLENDSHAPES],
            )
        return self._writer

    def _flush_rows(self) -> None:
        import pyarrow as pa

        from facetrack.adapters import parquet_extras

        count = self.landmark_count
        writer = self._open_writer()
        faces, frames, rows = self._faces, self._frames, self._rows
        self._faces, self._frames, self._rows = [], [], []
        columns: dict[str, Any] = {
            name: list(values) for name, values in zip(FRAME_COLUMNS, zip(*frames, strict=True), strict=True)
        }
        columns["track_id"] = [_NO_FACE_ID if f is None else int(f.track_id) for f in faces]
        scalars = [(None,) * len(_FACE_FLOATS) if f is None else _face_scalars(f) for f in faces]
        for name, values in zip(_FACE_FLOATS, zip(*scalars, strict=True), strict=True):
            columns[name] = [None if v is None else float(v) for v in values]
        shapes = [None if f is None else _blendshapes(f) for f in faces]
        fitted = np.array([s is not None for s in shapes])
        values = np.stack([np.full(len(ARKIT_BLENDSHAPES), np.nan, np.float32) if s is None else s for s in shapes])
        for k, name in enumerate(ARKIT_BLENDSHAPES):
            columns[name] = pa.array(values[:, k], mask=~fitted)
        columns["landmarks"] = _fixed_lists(
            [None if f is None else _flat_landmarks(f, count) for f in faces], 3 * count
        )
        columns.update(parquet_extras.extra_columns(rows))
        writer.write_table(pa.table(columns, schema=writer.schema), row_group_size=len(faces))
        self._file.flush()

    def _finish(self) -> None:
        if self._faces:
            self._flush_rows()
        writer = self._open_writer()  # a run without frames still gets a valid, empty file
        if self.metadata is not None:
            writer.add_key_value_metadata({PARQUET_METADATA_KEY: self.metadata.model_dump_json(by_alias=True)})
        writer.close()

    def _abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._file.flush()


class NpzSink(_FileSink):
    """Frame and face-row arrays kept in memory and written at close (NPZ cannot append).

    Arrays: per frame `frame_index`, `pts` (NaN if None), `capture_time`, `stream_id`,
    `width`, `height`, `source` ("" if None); per face row `face_frame` (row -> frame position), `track_id`,
    `score`, `bbox` (R,4), `landmarks` (R,N,3) float32, `rotation` (R,4) xyzw, `ypr` (R,3),
    `translation` (R,3), `blendshapes` (R,52) NaN when not fitted; `blendshape_names` (52,) and `metadata_json`.
    Memory grows ~6 KB per face-frame (about 650 MB per hour of one face at 30 fps).
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._frames: list[tuple[int, float, float, str, int, int, str]] = []
        self._rows: list[tuple[int, int, tuple[float, ...]]] = []
        self._landmarks: list[np.ndarray] = []
        self._blendshapes: list[np.ndarray] = []

    def _write(self, result: FrameResult) -> None:
        position = len(self._frames)
        count = self.landmark_count
        for face in result.faces:
            landmarks = _flat_landmarks(face, count).reshape(count, 3).copy()
            shapes = _blendshapes(face)
            self._rows.append((position, int(face.track_id), _face_scalars(face)))
            self._landmarks.append(landmarks)
            self._blendshapes.append(_NAN_BLENDSHAPES if shapes is None else shapes.copy())
        pts = math.nan if result.pts is None else float(result.pts)
        self._frames.append(
            (int(result.frame_index), pts, float(result.capture_time), result.stream_id, result.width, result.height,
             result.source or "")
        )

    def _finish(self) -> None:
        count = self.landmark_count
        frame_index, pts, capture, stream, width, height, source = (
            zip(*self._frames, strict=True) if self._frames else ((),) * len(FRAME_COLUMNS)
        )
        scalars = np.array([row[2] for row in self._rows], dtype=np.float64).reshape(-1, len(_FACE_FLOATS))
        arrays = {
            "frame_index": np.array(frame_index, dtype=np.int64),
            "pts": np.array(pts, dtype=np.float64),
            "capture_time": np.array(capture, dtype=np.float64),
            "stream_id": np.array(stream, dtype=np.str_),
            "width": np.array(width, dtype=np.int32),
            "height": np.array(height, dtype=np.int32),
            "source": np.array(source, dtype=np.str_),
            "face_frame": np.array([row[0] for row in self._rows], dtype=np.int64),
            "track_id": np.array([row[1] for row in self._rows], dtype=np.int64),
            "score": scalars[:, 0],
            "bbox": scalars[:, 1:5],
            "ypr": scalars[:, 5:8],
            "rotation": scalars[:, 8:12],
            "translation": scalars[:, 12:15],
            "landmarks": np.stack(self._landmarks) if self._landmarks else np.zeros((0, count, 3), np.float32),
            "blendshapes": np.stack(self._blendshapes)
            if self._blendshapes
            else np.zeros((0, len(ARKIT_BLENDSHAPES)), np.float32),
            "blendshape_names": np.array(ARKIT_BLENDSHAPES, dtype=np.str_),
            "metadata_json": np.array("" if self.metadata is None else self.metadata.model_dump_json(by_alias=True)),
        }
        np.savez(self._file, **arrays)
        self._file.flush()


_SINKS: dict[str, type[_FileSink]] = {".jsonl": JsonlSink, ".csv": CsvSink, ".parquet": ParquetSink, ".npz": NpzSink}


def _extension(path: Path) -> str:
    name = path.name[: -len(PARTIAL_SUFFIX)] if path.name.endswith(PARTIAL_SUFFIX) else path.name
    return Path(name).suffix.lower()


def open_file_sink(path: str | os.PathLike[str]) -> Sink:
    """A sink for `path`, chosen by its extension; creates `<path>.partial` right away.

    Raises SinkError for an unknown extension or a path that cannot be written.
    """
    target = Path(path)
    sink = _SINKS.get(target.suffix.lower())
    if sink is None:
        raise SinkError(
            f"cannot write results to {target}: unknown extension {target.suffix!r}; "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    return sink(target)


# ---- readers ---------------------------------------------------------------------------------


def read_results(path: str | os.PathLike[str]) -> list[FrameResult]:
    """Load a results file (also a `.partial` one) back as FrameResults, in file order.

    Tabular rows are grouped back into frames; a `track_id` -1 row is a frame with no face.
    Fields the format does not carry come back as their defaults.
    """
    source = Path(path)
    extension = _extension(source)
    if extension == ".jsonl":
        return _read_jsonl(source)
    if extension == ".csv":
        return _group(_csv_rows(source))
    if extension == ".parquet":
        import pyarrow.parquet as pq

        from facetrack.adapters import parquet_extras

        table = pq.read_table(source)
        rows = list(_parquet_rows(source, table))
        results = _group(iter(rows))
        parquet_extras.apply_extras(table, [frame for frame, _ in rows], results)
        return results
    if extension == ".npz":
        return _read_npz(source)
    raise ValueError(f"cannot read {source}: unknown extension {extension!r}; supported: {SUPPORTED_EXTENSIONS}")


def _complete_lines(path: Path) -> bytes:
    """The file up to its last newline: an interrupted run's last line may be cut short."""
    data = path.read_bytes()
    return data[: data.rfind(b"\n") + 1]


def _read_jsonl(path: Path) -> list[FrameResult]:
    results = []
    for number, line in enumerate(_complete_lines(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            message = decode_message(line, "json")
        except ProtocolError as exc:
            raise ProtocolError(f"{path}:{number}: {exc}") from None
        if isinstance(message, StreamMetadata):  # the header naming the layout
            continue
        if not isinstance(message, FrameResult):
            raise ProtocolError(f"{path}:{number}: expected a facetrack.frame/1 line, got {message.schema_id}")
        results.append(message)
    return results


_Row = tuple[tuple[int, float | None, float, str, int, int, str | None], FaceResult | None]


def _face(
    track_id: int,
    scalars: Sequence[float],
    blendshapes: np.ndarray | None,
    landmarks: np.ndarray,
) -> FaceResult:
    score, x0, y0, x1, y1, yaw, pitch, roll, qx, qy, qz, qw, tx, ty, tz = scalars
    return FaceResult(
        track_id=track_id,
        score=score,
        bbox=(x0, y0, x1, y1),
        landmarks=landmarks.reshape(-1, 3),
        pose=HeadPose(rotation=(qx, qy, qz, qw), yaw=yaw, pitch=pitch, roll=roll, translation=(tx, ty, tz)),
        blendshapes=blendshapes,
    )


def _group(rows: Iterator[_Row]) -> list[FrameResult]:
    results: list[FrameResult] = []
    previous = None
    for frame, face in rows:
        if frame != previous:
            frame_index, pts, capture_time, stream_id, width, height, source = frame
            results.append(
                FrameResult(
                    stream_id=stream_id,
                    frame_index=frame_index,
                    pts=pts,
                    capture_time=capture_time,
                    width=width,
                    height=height,
                    source=source,
                )
            )
            previous = frame
        if face is not None:
            results[-1].faces.append(face)
    return results


def _csv_rows(path: Path) -> Iterator[_Row]:
    reader = csv.reader(io.StringIO(_complete_lines(path).decode()))
    header = next(reader, None)
    if header is None:
        return
    frame_columns = len(FRAME_COLUMNS) if header[len(FRAME_COLUMNS) - 1] == "source" else len(FRAME_COLUMNS) - 1
    blend_start = frame_columns + len(FACE_COLUMNS)
    landmark_start = blend_start + len(ARKIT_BLENDSHAPES)
    for row in reader:
        frame_index, pts, capture_time, stream_id, width, height, *source = row[:frame_columns]
        frame = (int(frame_index), float(pts) if pts else None, float(capture_time), stream_id, int(width), int(height),
                 source[0] or None if source else None)
        track_id = int(row[frame_columns])
        if track_id == _NO_FACE_ID:
            yield frame, None
            continue
        scalars = [float(v) for v in row[frame_columns + 1 : blend_start]]
        blend = row[blend_start:landmark_start]
        shapes = np.array(blend, dtype=np.float32) if blend[0] else None
        yield frame, _face(track_id, scalars, shapes, np.array(row[landmark_start:], dtype=np.float32))


def _list_rows(column: pa.ChunkedArray) -> np.ndarray:
    """A fixed-size list column as (rows, size) float32 values."""
    array = column.combine_chunks()
    size = array.type.list_size
    values = array.values.to_numpy()[array.offset * size : (array.offset + len(array)) * size]
    return values.reshape(len(array), size)


def _parquet_rows(path: Path, table: pa.Table | None = None) -> Iterator[_Row]:
    import pyarrow.parquet as pq

    table = pq.read_table(path) if table is None else table
    names = table.column_names
    frames = zip(*(table.column(name).to_pylist() if name in names else [None] * table.num_rows
                   for name in FRAME_COLUMNS), strict=True)
    track_ids = table.column("track_id").to_pylist()
    scalars = zip(*(table.column(name).to_pylist() for name in _FACE_FLOATS), strict=True)
    if "blendshapes" in names:  # written before the named columns
        blendshapes = _list_rows(table.column("blendshapes"))
    else:
        blendshapes = np.stack([table.column(name).to_numpy(zero_copy_only=False).astype(np.float32)
                                for name in ARKIT_BLENDSHAPES], axis=1)
    landmarks = _list_rows(table.column("landmarks"))
    for i, (frame, track_id, values) in enumerate(zip(frames, track_ids, scalars, strict=True)):
        if track_id == _NO_FACE_ID:
            yield frame, None
            continue
        shapes = None if np.isnan(blendshapes[i]).all() else blendshapes[i].copy()
        yield frame, _face(track_id, values, shapes, landmarks[i].copy())


def _read_npz(path: Path) -> list[FrameResult]:
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    results = [
        FrameResult(
            stream_id=str(stream_id),
            frame_index=int(index),
            pts=None if math.isnan(pts) else float(pts),
            capture_time=float(capture),
            width=int(width),
            height=int(height),
            source=str(source) or None,
        )
        for index, pts, capture, stream_id, width, height, source in zip(
            arrays["frame_index"], arrays["pts"], arrays["capture_time"],
            arrays["stream_id"], arrays["width"], arrays["height"],
            arrays.get("source", np.full(len(arrays["frame_index"]), "")), strict=True,
        )
    ]  # fmt: skip
    scalars = np.concatenate(
        [arrays["score"][:, None], arrays["bbox"], arrays["ypr"], arrays["rotation"], arrays["translation"]], axis=1
    )
    for row, position in enumerate(arrays["face_frame"]):
        shapes = arrays["blendshapes"][row]
        results[int(position)].faces.append(
            _face(
                int(arrays["track_id"][row]),
                scalars[row].tolist(),
                None if np.isnan(shapes).all() else shapes.copy(),
                arrays["landmarks"][row].copy(),
            )
        )
    return results


def read_metadata(path: str | os.PathLike[str]) -> StreamMetadata | None:
    """The stream metadata a .parquet, .npz or .jsonl file recorded (None for CSV or none recorded)."""
    source = Path(path)
    extension = _extension(source)
    if extension == ".jsonl":
        for line in _complete_lines(source).splitlines():
            message = decode_message(line, "json") if line.strip() else None
            if isinstance(message, StreamMetadata):
                return message
        return None
    if extension == ".parquet":
        import pyarrow.parquet as pq

        raw = (pq.read_metadata(source).metadata or {}).get(PARQUET_METADATA_KEY)
    elif extension == ".npz":
        with np.load(source, allow_pickle=False) as data:
            raw = str(data["metadata_json"]) or None
    else:
        return None
    return None if raw is None else StreamMetadata.model_validate(json.loads(raw))
