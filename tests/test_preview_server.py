"""The preview server against hostile and careless clients: real sockets on loopback."""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from facetrack.adapters.preview import ACTION_HEADER, PreviewServer


@pytest.fixture()
def server() -> PreviewServer:
    server = PreviewServer(port=0, connection_timeout=0.5, max_connections=4)
    server.publish(np.full((48, 64, 3), 90, np.uint8), {"seq": 1, "frame_index": 0, "faces": [], "events": []})
    yield server
    server.close()


def _port(server: PreviewServer) -> int:
    return int(server.url.rsplit(":", 1)[1].strip("/"))


def _get(port: int, path: str, host: str | None) -> tuple[int, bytes]:
    """A raw GET with exactly the Host header given (None: no Host header at all)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        head = f"GET {path} HTTP/1.0\r\n" + (f"Host: {host}\r\n" if host is not None else "") + "\r\n"
        conn.sendall(head.encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def test_only_requests_naming_the_server_are_answered(server: PreviewServer) -> None:
    port = _port(server)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", f"LOCALHOST:{port}"):
        status, body = _get(port, "/frame.jpg", host)
        assert status == 200 and body[:2] == b"\xff\xd8", host
    for host in ("attacker.example", f"attacker.example:{port}", f"127.0.0.1:{port + 1}", "127.0.0.1", "", None):
        status, body = _get(port, "/frame.jpg", host)
        assert status == 421 and b"\xff\xd8" not in body, host


def test_a_half_open_connection_is_closed_after_its_timeout(server: PreviewServer) -> None:
    with socket.create_connection(("127.0.0.1", _port(server)), timeout=10) as idle:
        started = time.monotonic()
        idle.sendall(b"GET /frame.jpg HTTP/1.1\r\n")  # and never the rest
        assert idle.recv(1024) == b""  # closed by the server (a timeout here would raise)
        assert time.monotonic() - started < 5


def test_connections_past_the_limit_are_closed_without_a_thread_each(server: PreviewServer) -> None:
    port = _port(server)
    threads_before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(20)]
    try:
        time.sleep(0.2)
        assert threading.active_count() - threads_before <= 4
        closed = 0
        for conn in idle[4:]:
            conn.settimeout(2)
            closed += conn.recv(1) == b""
        assert closed == 16
    finally:
        for conn in idle:
            conn.close()
    time.sleep(0.8)  # the four held ones time out; the server answers again
    assert _get(port, "/state.json", f"127.0.0.1:{port}")[0] == 200


def test_clients_that_leave_mid_answer_are_not_reported(capfd: pytest.CaptureFixture) -> None:
    server = PreviewServer(port=0, connection_timeout=2.0)
    port = _port(server)
    noise = np.random.default_rng(0).integers(0, 256, (720, 960, 3), dtype=np.uint8)  # a JPEG of ~1 MB
    server.publish(noise, {"seq": 2, "frame_index": 1, "faces": [], "events": []})
    for path in ("/frame.jpg", "/stream.mjpg", "/") * 4:
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        assert conn.recv(16).startswith(b"HTTP/1.")
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, not a clean close
        conn.close()
    for i in range(5):
        server.publish(noise, {"seq": i + 3, "frame_index": i, "faces": [], "events": []})
        time.sleep(0.05)
    time.sleep(1.2)
    server.close()
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err and "Error" not in captured.err


def test_preview_exits_130_on_sigterm(blank_clip: Path) -> None:
    process = subprocess.Popen([sys.executable, "-m", "facetrack.tracker.cli", "preview", str(blank_clip), "--web",
                                "--port", "0", "--loop", "--model", "none", "--no-eyes"],
                               stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 60
        while "open" not in line and time.monotonic() < deadline:
            line = process.stderr.readline()
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 130
    finally:
        if process.poll() is None:
            process.kill()


def _post(port: int, path: str, host: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """A raw POST with no body, the Host header given and these headers."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        lines = [f"POST {path} HTTP/1.0", f"Host: {host}", "Content-Length: 0",
                 *(f"{k}: {v}" for k, v in (headers or {}).items())]
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data.split(b"\r\n\r\n", 1)[1]


def test_calibration_is_asked_only_by_a_post_from_this_address_with_the_header() -> None:
    """A form or a plain POST from another site's page cannot carry the header: it is refused, as is a request
    naming another host; each accepted request is taken once."""
    server = PreviewServer(port=0, calibration=True)
    try:
        port = _port(server)
        here, ask = f"127.0.0.1:{port}", {ACTION_HEADER: "calibrate"}
        assert _post(port, "/calibrate", f"attacker.example:{port}", ask)[0] == 421
        assert _post(port, "/calibrate", here)[0] == 403
        assert _post(port, "/calibrate", here, {ACTION_HEADER: "something else"})[0] == 403
        assert _post(port, "/elsewhere", here, ask)[0] == 404
        assert not server.calibration_requested()
        status, body = _post(port, "/calibrate", here, ask)
        assert status == 202 and b"neutral face" in body
        assert server.calibration_requested() and not server.calibration_requested()
    finally:
        server.close()


def test_a_run_that_cannot_calibrate_says_so(server: PreviewServer) -> None:
    port = _port(server)
    status, body = _post(port, "/calibrate", f"127.0.0.1:{port}", {ACTION_HEADER: "calibrate"})
    assert status == 404 and b"no face model" in body
    assert not server.calibration_requested()
