"""Wire compatibility: Node's `zeromq` + `@msgpack/msgpack` decode what our real publisher sends."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from facetrack.adapters.zmq_publisher import PublisherConfig, ZmqPublisher
from facetrack.tracker.core.schema import FaceResult, FrameResult, HeadPose, SourceInfo, StreamMetadata

CLIENT = Path(__file__).resolve().parents[1] / "adapters" / "clients" / "node"
FRAMES = 8

pytestmark = [
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
    pytest.mark.skipif(
        not (CLIENT / "node_modules" / "zeromq").is_dir(),
        reason=f"the Node client's packages are not installed (npm ci --prefix {CLIENT})",
    ),
]


def _face(i: int) -> FaceResult:
    landmarks = np.arange(478 * 3, dtype=np.float32).reshape(478, 3) / 7 + i
    angle = np.radians(3 * i) / 2
    return FaceResult(
        track_id=1, bbox=(0, 0, 1, 1), score=0.9, landmarks=landmarks,
        pose=HeadPose(rotation=(0.0, float(np.sin(angle)), 0.0, float(np.cos(angle))), yaw=3 * i, pitch=0, roll=0,
                      translation=(0, 0, -60)),
        blendshapes=(np.arange(52, dtype=np.float32) + i) % 52 / 51 if i % 2 == 0 else None,
    )


@pytest.mark.parametrize("wire", ["msgpack", "json"])
def test_node_client_decodes_our_frames(wire: str) -> None:
    publisher = ZmqPublisher(PublisherConfig(endpoint="tcp://127.0.0.1:*", encoding=wire, metadata_interval_s=0.1))
    publisher.start(StreamMetadata(stream_id="cam", source=SourceInfo(uri="x", live=True, width=640, height=480),
                                   started_at=time.time()))
    sent: dict[int, FaceResult] = {}
    node = subprocess.Popen(
        ["node", str(CLIENT / "subscribe.mjs"), publisher.endpoint,
         "--count", str(FRAMES), "--timeout", "10", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        i = 0
        while node.poll() is None and time.monotonic() < deadline:  # publish until the late joiner has N frames
            face = _face(i)
            sent[i] = face
            publisher.write(FrameResult(stream_id="cam", frame_index=i, pts=i / 30, capture_time=time.time(),
                                        width=640, height=480, faces=[face]))
            i += 1
            time.sleep(0.02)
        out, err = node.communicate(timeout=10)
    finally:
        if node.poll() is None:
            node.kill()
        publisher.close()
    assert node.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    frames = [line for line in lines if "frame_index" in line]
    assert len(frames) == FRAMES, err
    assert any("meta" in line and line["blendshape_names"] == 52 for line in lines)
    indices = [f["frame_index"] for f in frames]
    assert indices == sorted(indices) and len(set(indices)) == FRAMES
    for got in frames:
        face = sent[got["frame_index"]]
        assert got["topic"] == "frame.cam" and got["faces"] == 1 and got["landmarks_shape"] == [478, 3]
        np.testing.assert_allclose(got["landmark0"], face.landmarks[0], rtol=1e-6)
        np.testing.assert_allclose(got["rotation"], face.pose.rotation, rtol=1e-12)
        if face.blendshapes is None:
            assert got["blendshapes"] is None
        else:
            np.testing.assert_array_equal(np.array(got["blendshapes"], np.float32), face.blendshapes)
        assert got["received_time"] >= got["publish_time"] - 0.05
    assert "0 malformed" in err
