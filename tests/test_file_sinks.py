"""File sinks: every format written and read back, .partial handling, and the errors a user sees."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from synthetic import synthetic_metadata, synthetic_result

from facetrack.adapters.file_sinks import (
    PARQUET_ROW_GROUP,
    SUPPORTED_EXTENSIONS,
    csv_columns,
    open_file_sink,
    read_metadata,
    read_results,
)
from facetrack.tracker.core.errors import SinkError
from facetrack.tracker.core.schema import EyeEvent, Eyes, EyeState, FrameResult
from facetrack.tracker.core.sinks import Sink

STREAM = 'cam "A", left'  # needs CSV quoting


def comparable(result: FrameResult) -> Any:
    """A dump with arrays as float32 lists, so results compare with ==."""

    def convert(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return value.astype(np.float32).tolist()
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        return value

    return convert(result.model_dump(by_alias=True))


def make_frames(count: int, full: bool) -> list[FrameResult]:
    """Frames with 0, 1 and 2 faces in turn; frame 0 has no pts; odd frames name their source (one needing CSV
    quoting), even ones none."""
    rng = np.random.default_rng(count)
    frames = [synthetic_result(rng, i, faces=(0, 1, 2)[i % 3], stream_id=STREAM, full=full) for i in range(count)]
    frames[0].pts = None
    for frame in frames[1::2]:
        frame.source = f'sub/photo "{frame.frame_index}", left.jpg'
    return frames


def write_all(path: Path, frames: list[FrameResult], close: bool = True) -> Sink:
    sink = open_file_sink(path)
    sink.start(synthetic_metadata(STREAM))
    for frame in frames:
        sink.write(frame)
    if close:
        sink.close()
    return sink


@pytest.mark.parametrize("extension", SUPPORTED_EXTENSIONS)
def test_round_trip(tmp_path: Path, extension: str) -> None:
    # JSON lines and Parquet are lossless; CSV and NPZ carry the fields in csv_columns().
    frames = make_frames(40, full=extension in (".jsonl", ".parquet"))
    path = tmp_path / f"out{extension}"
    write_all(path, frames)
    assert path.exists() and not (tmp_path / f"out{extension}.partial").exists()
    back = read_results(path)
    assert [comparable(b) for b in back] == [comparable(f) for f in frames]
    assert any(not f.faces for f in back) and any(len(f.faces) == 2 for f in back)
    assert any(f.blendshapes is None for r in back for f in r.faces) == (extension not in (".jsonl", ".parquet"))


def test_parquet_carries_everything_json_lines_carries(tmp_path: Path) -> None:
    """Eye state, mouth, coefficients, the 68 points, eye events, dropped frames, publish time."""
    frames = make_frames(30, full=True)
    frames[4].eye_events = [EyeEvent(track_id=1, kind="blink", start_frame=1, end_frame=3)]
    frames[5].eye_events = []
    frames[6].publish_time, frames[6].dropped_frames = 123.5, 7
    frames[7].faces[0].eyes = Eyes(
        left=EyeState(p_closed=0.9, closed=True, visible=True, quality=0.75),
        right=EyeState(openness=0.2, closed=False, visible=False),
    )
    frames[8].faces[0].eyes = None
    write_all(tmp_path / "out.parquet", frames)
    write_all(tmp_path / "out.jsonl", frames)
    parquet, jsonl = read_results(tmp_path / "out.parquet"), read_results(tmp_path / "out.jsonl")
    assert [comparable(b) for b in parquet] == [comparable(b) for b in jsonl] == [comparable(f) for f in frames]
    columns = pq.read_schema(tmp_path / "out.parquet").names
    assert {
        "eye_left_p_closed",
        "eye_right_openness",
        "eye_left_closed",
        "eye_right_visible",
        "eye_left_quality",
        "mouth_openness",
        "identity",
        "expression",
        "landmarks68",
    } <= set(columns)


@pytest.mark.parametrize("extension", SUPPORTED_EXTENSIONS)
def test_empty_run_is_a_valid_file(tmp_path: Path, extension: str) -> None:
    path = tmp_path / f"empty{extension}"
    write_all(path, [])
    assert read_results(path) == []


@pytest.mark.parametrize("extension", [".parquet", ".npz", ".jsonl"])
def test_metadata_is_recorded(tmp_path: Path, extension: str) -> None:
    path = tmp_path / f"out{extension}"
    write_all(path, make_frames(3, full=False))
    metadata = read_metadata(path)
    assert metadata is not None and metadata.stream_id == STREAM and metadata.model_id == "builtin-478"


def test_csv_layout(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    write_all(path, make_frames(3, full=False))
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    assert tuple(header) == csv_columns()
    assert header[:9] == ["frame_index", "pts", "capture_time", "stream_id", "width", "height", "source", "track_id",
                          "score"]
    assert header[23:25] == ["eyeBlinkLeft", "eyeLookDownLeft"] and header[-1] == "lm477_z"
    assert len(header) == 23 + 52 + 478 * 3
    assert len(lines) == 1 + 1 + 1 + 2  # no-face row, one face, two faces
    assert lines[1].split(",")[0] == "0" and ",-1," in lines[1]


def test_partial_while_running_and_readable_after_a_crash(tmp_path: Path) -> None:
    frames = make_frames(10, full=True)
    for extension in (".jsonl", ".csv"):
        path = tmp_path / f"run{extension}"
        write_all(path, frames, close=False)  # the process "dies" here
        partial = tmp_path / f"run{extension}.partial"
        assert partial.exists() and not path.exists()
        with partial.open("ab") as f:
            f.write(b'{"schema": "facetrack.fra')  # a line cut short by the crash
        assert [r.frame_index for r in read_results(partial)] == list(range(10))


def test_parquet_writes_row_groups_while_running(tmp_path: Path) -> None:
    frames = make_frames(PARQUET_ROW_GROUP + 100, full=False)
    path = tmp_path / "out.parquet"
    sink = write_all(path, frames, close=False)
    assert (tmp_path / "out.parquet.partial").stat().st_size > 100_000  # the first row group is on disk
    sink.close()
    sink.close()  # idempotent
    rows = sum(max(1, len(f.faces)) for f in frames)
    assert pq.ParquetFile(path).metadata.num_rows == rows
    assert pq.ParquetFile(path).metadata.num_row_groups == -(-rows // PARQUET_ROW_GROUP)


def test_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match=r"unknown extension '\.txt'.*\.jsonl, \.csv, \.parquet, \.npz"):
        open_file_sink(tmp_path / "out.txt")


def test_unwritable_path(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "out.jsonl"
    with pytest.raises(SinkError, match=r"missing/out\.jsonl\.partial.*No such file"):
        open_file_sink(target)


def test_write_after_close(tmp_path: Path) -> None:
    sink = write_all(tmp_path / "out.jsonl", [])
    with pytest.raises(SinkError, match="closed"):
        sink.write(make_frames(1, full=True)[0])


_DISK_FULL = textwrap.dedent(
    """
    import json, resource, signal, sys
    from pathlib import Path
    import numpy as np
    from facetrack.adapters.file_sinks import open_file_sink
    from facetrack.tracker.core.errors import SinkError
    sys.path.insert(0, sys.argv[2])
    from synthetic import synthetic_metadata, synthetic_result

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the limit, write() fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
    report = {}
    for ext in (".jsonl", ".csv", ".parquet", ".npz"):
        sink = open_file_sink(Path(sys.argv[1]) / f"out{ext}")
        sink.start(synthetic_metadata())
        rng = np.random.default_rng(0)
        error = None
        try:
            for i in range(2000):
                sink.write(synthetic_result(rng, i, faces=1, full=False))
        except SinkError as exc:
            error = str(exc)
        try:
            sink.close()
        except SinkError as exc:
            error = error or str(exc)
        sink.close()
        report[ext] = error
    print(json.dumps(report))
    """
)


def test_disk_full_is_a_sink_error_and_keeps_what_was_written(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", _DISK_FULL, str(tmp_path), str(Path(__file__).parent)],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    for extension, error in report.items():
        assert error is not None and f"out{extension}.partial" in error and "too large" in error, (extension, error)
        assert not (tmp_path / f"out{extension}").exists()
    salvaged = read_results(tmp_path / "out.jsonl.partial")
    assert len(salvaged) > 0 and [r.frame_index for r in salvaged] == list(range(len(salvaged)))
    assert len(read_results(tmp_path / "out.csv.partial")) > 0


def test_every_format_names_the_blendshapes(tmp_path: Path) -> None:
    """A user reads eyeBlinkLeft without the protocol doc: Parquet columns, the JSON lines header, NPZ names."""
    frames = make_frames(6, full=False)
    frame, face = next((r, f) for r in frames for f in r.faces if f.blendshapes is not None)
    for extension in (".parquet", ".jsonl", ".npz"):
        write_all(tmp_path / f"out{extension}", frames)
    table = pq.read_table(tmp_path / "out.parquet")
    assert "blendshapes" not in table.column_names and table.schema.field("eyeBlinkLeft").type == "float"
    rows = table.to_pylist()
    row = next(r for r in rows if r["track_id"] == face.track_id and r["frame_index"] == frame.frame_index)
    assert row["eyeBlinkLeft"] == pytest.approx(float(face.blendshape_dict()["eyeBlinkLeft"]))
    assert row["source"] == frame.source
    again = open_file_sink(tmp_path / "again.jsonl")
    metadata = synthetic_metadata(STREAM)
    again.start(metadata)
    again.start(metadata.model_copy(update={"frames_published": 40}))  # heard again: no second header
    again.close()
    assert len((tmp_path / "again.jsonl").read_text().splitlines()) == 1
    header = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[0])
    assert header["schema"] == "facetrack.meta/1" and header["frame_schema"] == "facetrack.frame/1"
    assert header["blendshape_names"][0] == "eyeBlinkLeft" and len(header["blendshape_names"]) == 52
    with np.load(tmp_path / "out.npz", allow_pickle=False) as data:
        assert data["blendshape_names"][7] == "eyeBlinkRight" and data["source"][1] == frames[1].source


def test_parquet_written_before_the_named_columns_still_reads(tmp_path: Path) -> None:
    """Files with one `blendshapes` list column (and no `source`) read back as before."""
    import pyarrow as pa

    frames = make_frames(4, full=False)
    path = tmp_path / "new.parquet"
    write_all(path, frames)
    table = pq.read_table(path)
    values = np.stack([table.column(n).to_numpy(zero_copy_only=False) for n in csv_columns()[23:75]], axis=1)
    old = table.drop_columns(["source", *csv_columns()[23:75]])
    old = old.append_column("blendshapes", pa.FixedSizeListArray.from_arrays(
        pa.array(values.astype(np.float32).reshape(-1)), 52))
    pq.write_table(old, tmp_path / "old.parquet")
    back = read_results(tmp_path / "old.parquet")
    for a, b in zip(back, read_results(path), strict=True):
        assert a.source is None and [f.track_id for f in a.faces] == [f.track_id for f in b.faces]
        for fa, fb in zip(a.faces, b.faces, strict=True):
            assert (fa.blendshapes is None) == (fb.blendshapes is None)
            if fa.blendshapes is not None:
                np.testing.assert_array_equal(fa.blendshapes, fb.blendshapes)
