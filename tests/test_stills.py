"""Images are stills: every photo of a folder, glob or single image is tracked on its own, and every record
names the image it came from; `sequence` tracks numbered images as one video."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.tracker.config import TrackerConfig
from facetrack.tracker.pipeline import Tracker
from facetrack.tracker.sources.config import SourceConfig
from facetrack.tracker.sources.frame_source import open_source


def _write(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((24, 32, 3), value, np.uint8))
    return path


def _frames(spec: str, **config) -> tuple[bool, list]:
    with open_source(spec, SourceConfig(**config)) as source:
        return source.stills, [(f.index, f.source) for f in source]


def test_image_sources_name_each_frame_relative_to_the_input(tmp_path: Path) -> None:
    for i, name in enumerate(("a/img1.png", "a/img2.png", "a/sub/img10.png")):
        _write(tmp_path / name, 40 * i)
    stills, frames = _frames(str(tmp_path / "a"), recursive=True)
    assert stills and frames == [(0, "img1.png"), (1, "img2.png"), (2, "sub/img10.png")]
    assert _frames(str(tmp_path / "a" / "img*.png"))[1] == [(0, "img1.png"), (1, "img2.png")]
    assert _frames(str(tmp_path / "a" / "sub" / "img10.png"))[1] == [(0, "img10.png")]
    sequence, frames = _frames(str(tmp_path / "a"), sequence=True, sequence_fps=25.0)
    assert not sequence and [name for _, name in frames] == ["img1.png", "img2.png"]
    with open_source(str(tmp_path / "a"), SourceConfig(sequence=True, sequence_fps=25.0)) as source:
        assert source.info.fps == 25.0


def test_a_video_names_its_file(short_face_clip: Path) -> None:
    stills, frames = _frames(str(short_face_clip))
    assert not stills and {name for _, name in frames} == {str(short_face_clip)}


@pytest.fixture(scope="module")
def photos(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three photos of different people: two closed-eye CEW faces and a two-face picture (two real photos side
    by side) in a subfolder."""
    folder = tmp_path_factory.mktemp("photos")
    cew = sorted((media_dir / "eye_state" / "cew_closed_faces").glob("*.jpg"))
    for name in ("closed_eye_0002.jpg_face_2.jpg", "closed_eye_0043.jpg_face_2.jpg"):
        (folder / name).write_bytes((cew[0].parent / name).read_bytes())
    people = media_dir / "images" / "face_recognition_tests"
    a, b = (cv2.imread(str(people / n)) for n in ("obama.jpg", "biden.jpg"))
    h = min(a.shape[0], b.shape[0])
    pair = np.hstack([cv2.resize(im, (int(im.shape[1] * h / im.shape[0]), h)) for im in (a, b)])
    (folder / "two").mkdir()
    cv2.imwrite(str(folder / "two" / "pair.jpg"), pair)
    return folder


@pytest.mark.media
def test_photos_are_tracked_on_their_own(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "photos.jsonl"
    result = subprocess.run([sys.executable, "-m", "facetrack.tracker.cli", "run", str(photos), "--recursive",
                             "--max-faces", "2", "--out", str(out), "--quiet"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    header, records = lines[0], lines[1:]
    assert header["schema"] == "facetrack.meta/1" and "eyeBlinkLeft" in header["blendshape_names"]
    assert [r["source"] for r in records] == ["closed_eye_0002.jpg_face_2.jpg", "closed_eye_0043.jpg_face_2.jpg",
                                              "two/pair.jpg"]
    ids = [[f["track_id"] for f in r["faces"]] for r in records]
    assert [len(i) for i in ids] == [1, 1, 2]
    flat = [i for group in ids for i in group]
    assert len(set(flat)) == len(flat)  # no track carried from one photo to the next
    for record in records[:2]:  # closed eyes: the photo's own closure, on its own record
        assert [e["kind"] for e in record["eye_events"]] == ["blink"]
        event = record["eye_events"][0]
        assert event["start_frame"] == event["end_frame"] == record["frame_index"]


@pytest.mark.media
def test_a_photo_gives_the_same_result_alone_or_after_others(photos: Path) -> None:
    """No calibration, warm start or identity from another photo."""
    config = TrackerConfig(source=SourceConfig(recursive=True))
    together = [r for r in Tracker(config).track(str(photos)) if r.source == "closed_eye_0043.jpg_face_2.jpg"][0]
    alone = next(iter(Tracker(config).track(str(photos / "closed_eye_0043.jpg_face_2.jpg"))))
    a, b = together.faces[0], alone.faces[0]
    np.testing.assert_allclose(a.blendshapes, b.blendshapes, atol=1e-5)
    assert a.eyes.left.p_closed == pytest.approx(b.eyes.left.p_closed, abs=1e-6)


@pytest.mark.media
def test_a_face_crop_cut_tight_at_the_face_is_found(media_dir: Path) -> None:
    """The detector misses this CEW crop as it is; with the still's border it finds it, in the photo's pixels."""
    photo = media_dir / "eye_state" / "cew_closed_faces" / "closed_eye_0469.jpg_face_1.jpg"
    height, width = cv2.imread(str(photo)).shape[:2]
    bare = next(iter(Tracker(TrackerConfig(source=SourceConfig(still_pad=0))).track(photo)))
    assert bare.faces == []
    (face,) = next(iter(Tracker(TrackerConfig()).track(photo))).faces
    centre = np.asarray(face.landmarks)[:, :2].mean(0)
    assert 0 < centre[0] < width and 0 < centre[1] < height
    assert face.eyes.left.closed and face.eyes.right.closed


@pytest.mark.media
def test_a_numbered_sequence_is_tracked_as_video_only_when_asked(short_face_clip: Path, tmp_path: Path) -> None:
    import av

    with av.open(str(short_face_clip)) as clip:
        for i, frame in enumerate(clip.decode(video=0)):
            if i == 4:
                break
            cv2.imwrite(str(tmp_path / f"frame{i + 1}.png"), frame.to_ndarray(format="bgr24"))
    stills = [r.faces[0].track_id for r in Tracker(TrackerConfig()).track(tmp_path)]
    video = [r.faces[0].track_id for r in Tracker(TrackerConfig(source=SourceConfig(sequence=True))).track(tmp_path)]
    assert len(set(stills)) == 4 and len(set(video)) == 1
