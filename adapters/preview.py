"""Live preview: watch the overlay while tracking (`facetrack preview`, `facetrack run ... --preview`).

Where a display exists the overlay goes to an OpenCV window (q or Esc stops the run).
Otherwise (a server, a container, SSH) a small web server from the standard library
serves it on 127.0.0.1: a page that shows the latest overlay frame and the pose, eye
state and all 52 blendshapes as bars, polling twice the display rate. Nothing leaves the
machine unless you bind another host yourself.

Endpoints: `/` the page, `/frame.jpg` the latest overlay, `/state.json` the latest
values, `/stream.mjpg` an MJPEG stream (for OBS, VLC or an <img>); `POST /calibrate` with the
header `X-Facetrack-Action: calibrate` (the page's Calibrate button; the window's `c` key) takes
every track's rest face afresh from the next seconds, while the person holds a neutral face. A
page on another site cannot send that header (the browser would first ask the server, which never
allows it), so it cannot recalibrate a run.

The server answers only requests whose Host header names it (127.0.0.1, localhost or [::1]
with its port: a page on another site that rebinds its DNS name to 127.0.0.1 gets 421),
gives every connection `CONNECTION_TIMEOUT_S` to send its request and to take each write,
serves at most `MAX_CONNECTIONS` at once (more are closed at once: no thread each), keeps a
listen backlog of `BACKLOG`, and logs clients that go away at debug level only.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import cv2
import numpy as np

from facetrack.adapters.render_sink import FrameTap
from facetrack.tracker.core.errors import SinkError
from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES, FrameResult, StreamMetadata
from facetrack.tracker.viz.overlay import OverlayStyle, blendshape_values, draw_overlay

log = logging.getLogger("facetrack.preview")

DEFAULT_PORT = 8765
WINDOW_TITLE = "facetrack preview (q: stop, c: rest face from a neutral face)"
WEB_MAX_SIDE = 960
"""Long side of the JPEGs the page gets: enough to judge the fit, cheap to encode at 15 fps."""
PreviewMode = Literal["auto", "window", "web"]
CONNECTION_TIMEOUT_S = 10.0
"""How long a connection may take to send its request, or to take one write of the stream, before it is closed."""
MAX_CONNECTIONS = 32
"""Connections served at once (each holds a thread); a browser tab needs two or three."""
BACKLOG = 128
"""Connections the kernel queues before the server accepts them."""
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
ACTION_HEADER = "X-Facetrack-Action"
"""The header a POST /calibrate must carry (a cross-site page cannot set it)."""


def display_available() -> bool:
    """Whether a display is configured: an X11/Wayland display on Linux; always on macOS and Windows."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def window_opens() -> bool:
    """Whether an OpenCV window really opens, tried in a child process.

    OpenCV's Qt backend aborts the whole process (no exception) when the display is
    unreachable, e.g. a stale DISPLAY over SSH; a child that dies costs nothing.
    """
    if not display_available():
        return False
    probe = "import cv2; cv2.namedWindow('probe'); cv2.waitKey(1); cv2.destroyAllWindows()"
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=20)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def frame_state(result: FrameResult, sequence: int) -> dict[str, Any]:
    """What `/state.json` serves for one frame: the values the page shows as text and bars."""
    faces = []
    for face in result.faces:
        eyes = {side: {"p_closed": getattr(face.eyes, side).p_closed if face.eyes else None,
                       "openness": getattr(face.eyes, side).openness if face.eyes else None}
                for side in ("left", "right")}
        faces.append({
            "track_id": face.track_id,
            "yaw": face.pose.yaw, "pitch": face.pose.pitch, "roll": face.pose.roll,
            "eyes": eyes,
            "mouth_openness": face.mouth_openness,
            "blendshapes": blendshape_values(face) if face.blendshapes is not None else None,
        })  # fmt: skip
    return {
        "seq": sequence,
        "frame_index": result.frame_index,
        "pts": result.pts,
        "dropped_frames": result.dropped_frames,
        "faces": faces,
        "events": [event.model_dump() for event in result.eye_events or ()],
    }


class _Latest:
    """The newest JPEG and state, handed from the tracking thread to the HTTP threads."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.jpeg: bytes | None = None
        self.state: dict[str, Any] = {"seq": 0, "frame_index": None, "faces": [], "events": []}
        self.closed = False

    def publish(self, jpeg: bytes, state: dict[str, Any]) -> None:
        with self.changed:
            self.jpeg, self.state = jpeg, state
            self.changed.notify_all()

    def newer_than(self, sequence: int, timeout: float) -> tuple[bytes | None, int] | None:
        """The latest JPEG and its number once newer than `sequence` (or at `timeout`); None once closed."""
        with self.changed:
            self.changed.wait_for(lambda: self.closed or self.state["seq"] != sequence, timeout)
            return None if self.closed else (self.jpeg, self.state["seq"])

    def close(self) -> None:
        with self.changed:
            self.closed = True
            self.changed.notify_all()


class _Handler(BaseHTTPRequestHandler):
    server: _PreviewHTTPServer

    def setup(self) -> None:
        self.timeout = self.server.connection_timeout  # StreamRequestHandler puts it on the socket
        super().setup()

    def _from_here(self) -> bool:
        """True for a request naming this server (else it is answered 421)."""
        if self.headers.get("Host", "").lower() in self.server.allowed_hosts:
            return True
        self._send(HTTPStatus.MISDIRECTED_REQUEST, "text/plain", b"this preview answers only to its own address")
        return False

    def do_POST(self) -> None:
        if not self._from_here():
            return
        if self.path.split("?", 1)[0] != "/calibrate":
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found")
        elif self.server.calibrate is None:
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"this run has no face model to calibrate")
        elif self.headers.get(ACTION_HEADER, "") != "calibrate":
            self._send(HTTPStatus.FORBIDDEN, "text/plain", f"send the header {ACTION_HEADER}: calibrate".encode())
        else:
            self.server.calibrate.set()
            self._send(HTTPStatus.ACCEPTED, "text/plain", b"calibrating: hold a neutral face")

    def do_GET(self) -> None:
        if not self._from_here():
            return
        path = self.path.split("?", 1)[0]
        latest = self.server.latest
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, "text/html; charset=utf-8", PAGE.encode())
        elif path == "/state.json":
            with latest.changed:
                body = json.dumps(latest.state).encode()
            self._send(HTTPStatus.OK, "application/json", body)
        elif path == "/frame.jpg":
            jpeg = latest.jpeg
            if jpeg is None:
                self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"no frame yet")
            else:
                self._send(HTTPStatus.OK, "image/jpeg", jpeg)
        elif path == "/stream.mjpg":
            self._stream(latest)
        else:
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found")

    def _send(self, status: HTTPStatus, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, latest: _Latest) -> None:
        """multipart/x-mixed-replace: a part per new frame (the last again each idle second, as a keep-alive)."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        sent = -1
        try:
            while (newer := latest.newer_than(sent, timeout=1.0)) is not None:
                jpeg, sent = newer
                if jpeg is None:
                    continue
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                 + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
        except OSError:  # the client went away or stopped reading (timeout): nothing to report
            return

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class _PreviewHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = BACKLOG
    latest: _Latest
    allowed_hosts: frozenset[str]
    connection_timeout: float
    calibrate: threading.Event | None  # set by POST /calibrate; None when the run cannot calibrate

    def __init__(self, address: tuple[str, int], max_connections: int) -> None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread per connection up to the limit; past it the connection is closed at once."""
        if not self._slots.acquire(blocking=False):
            log.debug("preview: %d connections already open; closing one from %s", MAX_CONNECTIONS, client_address)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that leave or stall are routine: one debug line, never a traceback on the console."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            log.debug("preview client %s: %s", client_address, exc)
        else:
            log.warning("preview request from %s failed: %r", client_address, exc)


class PreviewServer:
    """The web preview: an HTTP server on its own daemon thread; `port=0` picks a free port."""

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 connection_timeout: float = CONNECTION_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS,
                 calibration: bool = False) -> None:
        try:
            self._http = _PreviewHTTPServer((host.strip("[]"), port), max_connections)
        except OSError as exc:
            raise SinkError(f"cannot serve the preview on {host}:{port} ({exc.strerror}); pick another port") from None
        self.latest = _Latest()
        self._http.latest = self.latest
        self._http.connection_timeout = connection_timeout
        self._http.calibrate = threading.Event() if calibration else None
        bound = self._http.server_address[1]
        names = {*LOOPBACK_NAMES, host if ":" not in host else f"[{host.strip('[]')}]"}
        self._http.allowed_hosts = frozenset(f"{name}:{bound}".lower() for name in names) | (
            frozenset(names) if bound == 80 else frozenset())
        self._thread = threading.Thread(target=self._http.serve_forever, name="facetrack-preview", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def calibration_requested(self) -> bool:
        """True once for each POST /calibrate since the last call."""
        event = self._http.calibrate
        if event is None or not event.is_set():
            return False
        event.clear()
        return True

    def publish(self, image: np.ndarray, state: dict[str, Any], quality: int = 80) -> None:
        """Make an RGB overlay and its values the page's latest."""
        height, width = image.shape[:2]
        scale = WEB_MAX_SIDE / max(height, width)
        if scale < 1.0:
            image = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            self.latest.publish(jpeg.tobytes(), state)

    def close(self) -> None:
        self.latest.close()
        self._http.shutdown()
        self._http.server_close()


class PreviewSink:
    """Shows each result over its frame, in a window or on the web page, at most `max_fps` times a second.

    Frames come from the run's `FrameTap`. Skipping frames above `max_fps` keeps the
    preview from slowing tracking; the skipped results still reach every other sink.
    `on_calibrate` (e.g. `Tracker.recalibrate`) is called on the tracking thread, between two
    frames, when the window's `c` key or the page's Calibrate button asks for it.
    """

    stage = "preview"

    def __init__(self, tap: FrameTap, mode: PreviewMode = "auto", host: str = "127.0.0.1",
                 port: int = DEFAULT_PORT, style: OverlayStyle | None = None, max_fps: float = 15.0,
                 on_calibrate: Callable[[], None] | None = None) -> None:
        self._tap = tap
        self._on_calibrate = on_calibrate
        self._style = style or OverlayStyle()
        self._interval = 1.0 / max_fps
        self._last_shown = -np.inf
        self._shown = 0
        window = mode == "window" or (mode == "auto" and display_available())
        if window and not window_opens():
            if mode == "window":
                raise RuntimeError("an OpenCV window cannot open here (no usable display); use the web preview")
            log.warning("no usable display for a preview window; serving the preview on the web instead")
            window = False
        self.mode: Literal["window", "web"] = "window" if window else "web"
        self.server: PreviewServer | None = None
        if window:
            cv2.namedWindow(WINDOW_TITLE, cv2.WINDOW_NORMAL)
        else:
            self.server = PreviewServer(host, port, calibration=on_calibrate is not None)

    @property
    def url(self) -> str | None:
        """The page's address in web mode."""
        return None if self.server is None else self.server.url

    def start(self, metadata: StreamMetadata) -> None:
        if self.server is not None:
            log.info("preview of %s at %s", metadata.source.uri, self.server.url)

    def write(self, result: FrameResult) -> None:
        if self._on_calibrate is not None and self.server is not None and self.server.calibration_requested():
            self._on_calibrate()
        now = time.monotonic()
        if now - self._last_shown < self._interval:
            return
        frame = self._tap.frame(result.frame_index)
        if frame is None:
            return
        self._last_shown = now
        self._shown += 1
        overlay = draw_overlay(frame.image, result, self._style)
        if self.server is not None:
            self.server.publish(overlay, frame_state(result, self._shown))
            return
        cv2.imshow(WINDOW_TITLE, cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            raise KeyboardInterrupt("preview window closed")
        if key == ord("c") and self._on_calibrate is not None:
            self._on_calibrate()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        elif self.mode == "window":
            cv2.destroyWindow(WINDOW_TITLE)
            cv2.waitKey(1)


_BAR_ROWS = "".join(
    f'<div class="bar"><span class="name">{name}</span><span class="track"><span class="fill" id="bar-{name}">'
    f'</span></span><span class="value" id="val-{name}">0.00</span></div>'
    for name in ARKIT_BLENDSHAPES
)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>facetrack preview</title>
<style>
body { margin: 0; font: 13px system-ui, sans-serif; background: #15171a; color: #e8e8e8; display: flex; gap: 16px;
       padding: 12px; }
#video { flex: 0 1 auto; } #video img { max-width: 62vw; max-height: 92vh; background: #000; display: block; }
#side { flex: 1 1 340px; min-width: 300px; }
.facts { display: grid; grid-template-columns: auto 1fr; gap: 2px 10px; margin-bottom: 10px; }
.facts b { color: #9ab; font-weight: normal; }
.bars { display: grid; grid-template-columns: 1fr 1fr; grid-template-rows: repeat(26, auto); grid-auto-flow: column;
        gap: 1px 14px; }
.bar { display: flex; align-items: center; gap: 6px; }
.name { width: 132px; font-size: 11px; white-space: nowrap; overflow: hidden; }
.track { flex: 1; height: 9px; background: #2b2f35; }
.fill { display: block; height: 100%; width: 0; background: #5ab4ff; }
.value { width: 30px; font-size: 11px; text-align: right; font-variant-numeric: tabular-nums; }
#status.off { color: #f66; } .closed { color: #ff5c5c; }
</style></head>
<body>
<div id="video"><img id="frame" alt="latest overlay frame"></div>
<div id="side">
<div class="facts">
<b>status</b><span id="status">waiting for the first frame</span>
<b>frame</b><span id="frame-index">-</span>
<b>track</b><span id="track">-</span>
<b>head</b><span id="pose">-</span>
<b>left eye</b><span id="eye-left">-</span>
<b>right eye</b><span id="eye-right">-</span>
<b>mouth open</b><span id="mouth">-</span>
<b>events</b><span id="events">-</span>
<b>rest face</b><span><button id="calibrate">Calibrate</button> <span id="calibration">hold a neutral face, then
press</span></span>
</div>
<div class="bars">""" + _BAR_ROWS + """</div>
</div>
<script>
let seq = -1;
const $ = (id) => document.getElementById(id);
const fmt = (v, d = 2) => (v === null || v === undefined) ? "-" : Number(v).toFixed(d);
function eye(e) {
  const closed = e.p_closed !== null && e.p_closed >= 0.5;
  return [`P closed ${fmt(e.p_closed)}, openness ${fmt(e.openness)}`, closed];
}
function show(s) {
  $("frame-index").textContent = s.frame_index + (s.pts === null ? "" : `  (${fmt(s.pts, 3)} s)`);
  const face = s.faces.length ? s.faces[0] : null;
  $("status").textContent = face ? `tracking ${s.faces.length} face(s)` : "no face";
  $("status").className = "";
  $("track").textContent = face ? "#" + face.track_id : "-";
  $("pose").textContent = face
    ? `yaw ${fmt(face.yaw, 1)}  pitch ${fmt(face.pitch, 1)}  roll ${fmt(face.roll, 1)}` : "-";
  for (const side of ["left", "right"]) {
    const [text, closed] = face ? eye(face.eyes[side]) : ["-", false];
    $("eye-" + side).textContent = text;
    $("eye-" + side).className = closed ? "closed" : "";
  }
  $("mouth").textContent = face ? fmt(face.mouth_openness) : "-";
  if (s.events.length) $("events").textContent = s.events.map((e) => `#${e.track_id} ${e.kind}`).join(", ");
  const shapes = face && face.blendshapes ? face.blendshapes : {};
  for (const fill of document.querySelectorAll(".fill")) {
    const name = fill.id.slice(4);
    const v = shapes[name] || 0;
    fill.style.width = (100 * Math.min(1, Math.max(0, v))).toFixed(1) + "%";
    $("val-" + name).textContent = v.toFixed(2);
  }
}
async function tick() {
  try {
    const s = await (await fetch("state.json", {cache: "no-store"})).json();
    if (s.seq !== seq && s.frame_index !== null) {
      seq = s.seq;
      $("frame").src = "frame.jpg?seq=" + seq;
      show(s);
    }
  } catch (e) {
    $("status").textContent = "disconnected: is facetrack still running?";
    $("status").className = "off";
  }
  setTimeout(tick, 33);
}
$("calibrate").onclick = async () => {
  const r = await fetch("calibrate", {method: "POST", headers: {"X-Facetrack-Action": "calibrate"}});
  $("calibration").textContent = await r.text();
};
tick();
</script>
</body></html>
"""
