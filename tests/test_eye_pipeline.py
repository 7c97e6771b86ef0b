"""The eye stages in the pipeline on a real clip: state, openness, ELAM'd blinks, events, timings, wire."""

from __future__ import annotations

import numpy as np
import pytest

from facetrack.tracker.config import TrackerConfig
from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES, EyeEvent, FrameResult
from facetrack.tracker.pipeline import Tracker
from facetrack.tracker.stages.eye_options import EyeOptions

BL, BR = ARKIT_BLENDSHAPES.index("eyeBlinkLeft"), ARKIT_BLENDSHAPES.index("eyeBlinkRight")


@pytest.fixture(scope="module")
def tracked(short_face_clip):
    tracker = Tracker(TrackerConfig())
    results = list(tracker.track(short_face_clip))
    return tracker, results


def test_every_face_has_eyes_and_mouth(tracked) -> None:
    _, results = tracked
    assert len(results) == 40
    for r in results:
        (face,) = r.faces
        for eye in (face.eyes.left, face.eyes.right):
            assert 0 <= eye.p_closed <= 1 and 0 <= eye.openness <= 1
        assert face.mouth_openness is not None and face.mouth_openness >= 0
        assert face.blendshapes.shape == (52,)


def test_labelled_closures_reach_the_blendshapes(tracked) -> None:
    """Frames 24 and 32-33 of this clip: both eyes closed (labels/WDA_KatieHill_000.csv); 0-20 open."""
    _, results = tracked
    bs = np.array([r.faces[0].blendshapes[[BL, BR]] for r in results])
    assert (bs[[24, 32, 33]] >= 0.8).all()
    assert (bs[:20] < 0.5).all()
    events = [e for r in results for e in (r.eye_events or [])]
    assert events and all(isinstance(e, EyeEvent) for e in events)
    assert any(e.start_frame <= 24 <= e.end_frame for e in events)
    assert any(e.start_frame <= 32 <= e.end_frame for e in events)


def test_stage_timings_are_named(tracked) -> None:
    tracker, _ = tracked
    stages = tracker.timings.summary()
    for name in ("landmarks", "eyes", "fit", "dynamics", "gaze", "filter", "events"):
        assert name in stages and stages[name].frames == 40


def test_eye_events_travel_on_the_wire(tracked) -> None:
    from facetrack.adapters.codec import decode_message, encode_message

    _, results = tracked
    with_events = next(r for r in results if r.eye_events)
    for enc in ("msgpack", "json"):
        back = decode_message(encode_message(with_events, enc), enc)
        assert isinstance(back, FrameResult)
        assert back.eye_events[0].kind == with_events.eye_events[0].kind
        assert back.faces[0].eyes.left.p_closed == pytest.approx(with_events.faces[0].eyes.left.p_closed)


def test_eye_stages_can_be_switched_off(short_face_clip) -> None:
    tracker = Tracker(TrackerConfig(max_frames=3, eyes=EyeOptions(enabled=False)))
    for r in tracker.track(short_face_clip):
        assert r.faces[0].eyes is None and r.eye_events is None
    assert "eyes" not in tracker.timings.summary()


def test_every_eye_of_every_frame_has_one_verdict(tracked) -> None:
    """The first frame of the track included: P(closed), eyeBlink, the lids and the verdict agree."""
    _, results = tracked
    options = EyeOptions()
    for r in results:
        face = r.faces[0]
        for eye, weight in ((face.eyes.left, face.blendshapes[BL]), (face.eyes.right, face.blendshapes[BR])):
            assert eye.visible and eye.quality == 1.0  # a frontal 512 px face
            assert eye.closed == (eye.p_closed >= options.p_closed_closed) == (weight >= options.blink_weight_closed)
            if eye.closed:  # ELAM closed its lids (the filter may keep them a little behind on a closing frame)
                assert eye.openness < options.openness_closed


@pytest.mark.media
@pytest.mark.parametrize("folder, name, closed", [
    ("cew_closed_faces", "closed_eye_0043.jpg_face_2.jpg", True),
    ("utkface_open_unverified", "face_0.jpg", False),
])
def test_a_photo_says_closed_or_open_everywhere_mesh_included(media_dir, folder, name, closed) -> None:
    from facetrack.tracker.stages import eyes as E

    result = next(iter(Tracker(TrackerConfig(mesh=True)).track(media_dir / "eye_state" / folder / name)))
    (face,) = result.faces
    vertices, _ = face.mesh
    mesh_opening = E.relative_openings(vertices)  # the built-in rig's mesh is the 478-point topology
    eyes = ((face.eyes.left, face.blendshapes[BL]), (face.eyes.right, face.blendshapes[BR]))
    for k, (eye, weight) in enumerate(eyes):
        assert eye.closed is closed and bool(eye.p_closed >= 0.5) is closed and bool(weight >= 0.5) is closed
        # closed: the mesh's lid gap is a small fraction of the open eye's (ICT's eyeBlink leaves ~0.1 on some faces)
        assert bool(mesh_opening[k] < 0.15) is closed and bool(eye.openness < 0.5) is closed
    assert [e.kind for e in result.eye_events or []] == (["blink"] if closed else [])
