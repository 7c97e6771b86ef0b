"""The Parquet columns beyond CSV's layout, so a Parquet file carries everything JSON lines carries.

Appended after the CSV-like columns of `file_sinks.parquet_schema` (files written before
they existed read back as before):

| column | per | holds |
|---|---|---|
| `publish_time`, `dropped_frames` | row (its frame's) | `FrameResult` fields |
| `eye_events` | the first row of a frame | the frame's `eye_events` as a JSON list; null when None |
| `has_eyes` | face row | whether the face has `eyes` |
| `eye_left_` and `eye_right_` + `p_closed`, `openness`, `closed`, `visible`, `quality` | face row | `eyes.left/right` |
| `mouth_openness` | face row | `mouth_openness` |
| `coefficients_model_id`, `identity`, `expression` | face row | `coefficients` (lists of float32; null when None) |
| `landmarks68` | face row | (68, 2) iBUG points, flat x,y; all-NaN when None |
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from facetrack.tracker.core.schema import EyeEvent, Eyes, EyeState, FaceCoefficients, FaceResult, FrameResult

EYE_FIELDS = ("p_closed", "openness", "closed", "visible", "quality")
"""The `EyeState` fields, each a column per eye: `eye_left_p_closed` ... `eye_right_quality`."""
EYE_COLUMNS = tuple(f"eye_{side}_{name}" for side in ("left", "right") for name in EYE_FIELDS)
_EYE_TYPES = {"p_closed": "float64", "openness": "float64", "closed": "bool_", "visible": "bool_", "quality": "float64"}
LANDMARKS68_SIZE = 68 * 2

Row = tuple[FrameResult, bool, FaceResult | None]
"""A Parquet row: its frame, whether it is the frame's first row, its face (None: a no-face row)."""


def extra_fields() -> list[pa.Field]:
    return [
        pa.field("publish_time", pa.float64()),
        pa.field("dropped_frames", pa.int64()),
        pa.field("eye_events", pa.string()),
        pa.field("has_eyes", pa.bool_()),
        *(pa.field(f"eye_{side}_{name}", getattr(pa, _EYE_TYPES[name])()) for side in ("left", "right")
          for name in EYE_FIELDS),
        pa.field("mouth_openness", pa.float64()),
        pa.field("coefficients_model_id", pa.string()),
        pa.field("identity", pa.list_(pa.float32())),
        pa.field("expression", pa.list_(pa.float32())),
        pa.field("landmarks68", pa.list_(pa.float32(), LANDMARKS68_SIZE), nullable=False),
    ]


def _events(frame: FrameResult) -> str | None:
    if frame.eye_events is None:
        return None
    return json.dumps([event.model_dump() for event in frame.eye_events])


def _eye_values(face: FaceResult | None) -> tuple[float | None, ...]:
    if face is None or face.eyes is None:
        return (None,) * len(EYE_COLUMNS)
    return tuple(getattr(eye, name) for eye in (face.eyes.left, face.eyes.right) for name in EYE_FIELDS)


def _eye_state(values: dict[str, list[Any]], row: int, side: str) -> EyeState:
    """One eye of a row (a column missing from an older file leaves its field None)."""
    columns = {name: f"eye_{side}_{name}" for name in EYE_FIELDS}
    return EyeState(**{name: values[column][row] for name, column in columns.items() if column in values})


def extra_columns(rows: Sequence[Row]) -> dict[str, Any]:
    """The extra columns' values for a row group."""
    faces = [face for _, _, face in rows]
    coefficients = [None if f is None else f.coefficients for f in faces]
    landmarks68 = np.full((len(rows), LANDMARKS68_SIZE), np.nan, dtype=np.float32)
    for i, face in enumerate(faces):
        if face is not None and face.landmarks68 is not None:
            landmarks68[i] = np.asarray(face.landmarks68, dtype=np.float32).reshape(-1)
    columns: dict[str, Any] = {
        "publish_time": [frame.publish_time for frame, _, _ in rows],
        "dropped_frames": [int(frame.dropped_frames) for frame, _, _ in rows],
        "eye_events": [_events(frame) if first else None for frame, first, _ in rows],
        "has_eyes": [None if f is None else f.eyes is not None for f in faces],
        "mouth_openness": [None if f is None else f.mouth_openness for f in faces],
        "coefficients_model_id": [None if c is None else c.model_id for c in coefficients],
        "identity": [None if c is None else np.asarray(c.identity, np.float32) for c in coefficients],
        "expression": [None if c is None else np.asarray(c.expression, np.float32) for c in coefficients],
        "landmarks68": pa.FixedSizeListArray.from_arrays(pa.array(landmarks68.reshape(-1)), LANDMARKS68_SIZE),
    }
    eyes = list(zip(*(_eye_values(f) for f in faces), strict=True)) or [()] * len(EYE_COLUMNS)
    for name, values in zip(EYE_COLUMNS, eyes, strict=True):
        columns[name] = list(values)
    return columns


def apply_extras(table: pa.Table, frame_keys: list[tuple[Any, ...]], results: list[FrameResult]) -> None:
    """Fill `results` (grouped from `table`'s rows, whose frame tuples are `frame_keys`) from the extra columns."""
    if "has_eyes" not in table.column_names:  # written before these columns existed
        return
    values = {name: table.column(name).to_pylist() for name in table.column_names if name in _NAMES}
    landmarks68 = table.column("landmarks68").combine_chunks()
    flat = landmarks68.values.to_numpy()[landmarks68.offset * LANDMARKS68_SIZE :]
    firsts = [i for i, key in enumerate(frame_keys) if i == 0 or key != frame_keys[i - 1]]
    for result, row in zip(results, firsts, strict=True):
        result.publish_time = values["publish_time"][row]
        result.dropped_frames = values["dropped_frames"][row] or 0
        events = values["eye_events"][row]
        result.eye_events = None if events is None else [EyeEvent.model_validate(e) for e in json.loads(events)]
    face_rows = [i for i, has in enumerate(values["has_eyes"]) if has is not None]
    faces = [face for result in results for face in result.faces]
    for face, row in zip(faces, face_rows, strict=True):
        if values["has_eyes"][row]:
            face.eyes = Eyes(left=_eye_state(values, row, "left"), right=_eye_state(values, row, "right"))
        face.mouth_openness = values["mouth_openness"][row]
        if values["coefficients_model_id"][row] is not None:
            face.coefficients = FaceCoefficients(
                model_id=values["coefficients_model_id"][row],
                identity=np.array(values["identity"][row], dtype=np.float32),
                expression=np.array(values["expression"][row], dtype=np.float32),
            )
        points = flat[row * LANDMARKS68_SIZE : (row + 1) * LANDMARKS68_SIZE]
        if not np.isnan(points).all():
            face.landmarks68 = points.reshape(68, 2).copy()


_NAMES = frozenset(field.name for field in extra_fields()) - {"landmarks68"}
