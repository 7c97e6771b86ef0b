"""CURVE: only authorised clients receive the stream, and the CLI sets it up (real sockets, loopback)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq.auth
from synthetic import synthetic_metadata, synthetic_result

from facetrack.adapters.curve import CurveClientKeys, create_key_folder
from facetrack.adapters.zmq_publisher import PublisherConfig, ZmqPublisher
from facetrack.adapters.zmq_subscriber import Subscriber
from facetrack.tracker.core.errors import SinkError
from facetrack.tracker.core.schema import FrameResult


def _received(pub: ZmqPublisher, subscriber: Subscriber, seconds: float = 1.5) -> list[FrameResult]:
    """Publish frames for a while (late joiners need time to handshake) and collect what arrives."""
    rng = np.random.default_rng(0)
    frames: list[FrameResult] = []
    deadline = time.monotonic() + seconds
    index = 0
    while time.monotonic() < deadline:
        pub.write(synthetic_result(rng, index))
        index += 1
        message = subscriber.recv(timeout=0.02)
        if isinstance(message, FrameResult):
            frames.append(message)
    return frames


@pytest.fixture()
def keys(tmp_path: Path) -> Path:
    folder = tmp_path / "keys"
    create_key_folder(folder, ["alice"])
    return folder


def test_only_authorised_clients_receive(keys: Path, tmp_path: Path) -> None:
    _, stranger_secret = zmq.auth.create_certificates(tmp_path, "stranger")
    server_public = keys / "server.key"
    pub = ZmqPublisher(PublisherConfig(endpoint="tcp://127.0.0.1:*", curve_keys=keys, linger_ms=0))
    pub.start(synthetic_metadata())
    authorised = Subscriber(pub.endpoint, curve=CurveClientKeys(keys / "clients" / "alice.key_secret", server_public))
    unauthorised = Subscriber(pub.endpoint, curve=CurveClientKeys(Path(stranger_secret), server_public))
    plain = Subscriber(pub.endpoint)
    try:
        assert _received(pub, authorised), "the authorised client received nothing"
        for outsider in (unauthorised, plain):
            assert outsider.recv(timeout=0.3) is None and outsider.received == 0
    finally:
        for closable in (authorised, unauthorised, plain, pub):
            closable.close()


def test_folder_without_authorised_clients_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    create_key_folder(folder, [])
    with pytest.raises(SinkError, match="no authorised client keys"):
        ZmqPublisher(PublisherConfig(endpoint="tcp://127.0.0.1:*", curve_keys=folder))


def test_bad_client_name_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="client name"):
        create_key_folder(tmp_path / "keys", ["../escape"])


def test_keys_init_cli_writes_private_secret_files(tmp_path: Path) -> None:
    folder = tmp_path / "k"
    done = subprocess.run([sys.executable, "-m", "facetrack.tracker.cli", "keys", "init", str(folder),
                           "--client", "unity", "--client", "blender"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (folder / "authorized").iterdir()) == ["blender.key", "unity.key"]
    for secret in [folder / "server.key_secret", *(folder / "clients").glob("*.key_secret")]:
        assert secret.stat().st_mode & 0o077 == 0, secret
