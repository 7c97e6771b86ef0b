"""The live preview's web page: served on 127.0.0.1, loaded in headless Chromium, values changing."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import encode_clip
from PIL import Image

from facetrack.adapters.preview import PreviewServer, PreviewSink, frame_state
from facetrack.adapters.render_sink import FrameTap
from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES, Eyes, EyeState, FaceResult, FrameResult, HeadPose
from facetrack.tracker.sources.frame_source import open_source
from facetrack.tracker.viz.overlay import draw_overlay

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip
SIZE = (320, 240)


def _result(i: int) -> FrameResult:
    """Frame i of a synthetic take: a grid of 478 points in a box, jaw and yaw moving with i."""
    gx, gy = np.meshgrid(np.linspace(100, 220, 22), np.linspace(60, 200, 22))
    landmarks = np.column_stack([gx.ravel()[:478], gy.ravel()[:478], np.zeros(478)])
    weights = np.zeros(len(ARKIT_BLENDSHAPES), np.float32)
    weights[ARKIT_BLENDSHAPES.index("jawOpen")] = (i % 20) / 19
    weights[ARKIT_BLENDSHAPES.index("mouthSmileLeft")] = 0.5
    eye = EyeState(p_closed=float(i % 10 == 0), openness=1.0 - float(i % 10 == 0))
    face = FaceResult(
        track_id=0, bbox=(100, 60, 220, 200), score=1.0, landmarks=landmarks,
        pose=HeadPose(rotation=(0, 0, 0, 1), yaw=float(i % 30), pitch=0, roll=0, translation=(0, 0, -40)),
        blendshapes=weights, eyes=Eyes(left=eye, right=eye), mouth_openness=0.1,
    )  # fmt: skip
    return FrameResult(stream_id="main", frame_index=i, pts=i / 25, capture_time=time.time(), width=SIZE[0],
                       height=SIZE[1], faces=[face])


def _image(i: int) -> np.ndarray:
    image = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    image[:, :, 2] = np.linspace(40, 200, SIZE[0], dtype=np.uint8)
    image[:, :, 1] = (5 * i) % 256
    return image


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


@pytest.fixture()
def live_server() -> Iterator[PreviewServer]:
    """A preview server fed a new overlay frame every 40 ms, as a tracking webcam would."""
    server = PreviewServer(port=0)
    stop = threading.Event()

    def feed() -> None:
        i = 0
        while not stop.is_set() and i < 2000:
            result = _result(i)
            server.publish(draw_overlay(_image(i), result), frame_state(result, i + 1))
            i += 1
            stop.wait(0.04)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    yield server
    stop.set()
    feeder.join(5)
    server.close()


def test_endpoints_serve_the_latest_frame_and_values() -> None:
    server = PreviewServer(port=0)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        status, kind, page = _get(server.url)
        assert status == 200 and kind.startswith("text/html") and b'id="bar-jawOpen"' in page
        assert _get(server.url + "frame.jpg")[0] == 503  # nothing tracked yet
        server.publish(draw_overlay(_image(3), _result(3)), frame_state(_result(3), 1))
        status, kind, jpeg = _get(server.url + "frame.jpg")
        assert status == 200 and kind == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
        state = json.loads(_get(server.url + "state.json")[2])
        assert state["frame_index"] == 3 and len(state["faces"][0]["blendshapes"]) == 52
        assert state["faces"][0]["blendshapes"]["jawOpen"] == pytest.approx(3 / 19)
        with urllib.request.urlopen(server.url + "stream.mjpg", timeout=5) as stream:
            assert stream.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            head = stream.read(200)
        assert head.startswith(b"--frame\r\nContent-Type: image/jpeg") and b"\xff\xd8" in head
        assert _get(server.url + "nothing")[0] == 404
    finally:
        server.close()


def test_sink_serves_the_runs_frames_on_the_web_without_a_display(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    clip = encode_clip(tmp_path / "clip.mp4", [_image(i) for i in range(6)])
    tap = FrameTap(open_source(clip))
    sink = PreviewSink(tap, port=0, max_fps=1000.0)
    try:
        assert sink.mode == "web" and sink.url is not None
        for frame in tap:
            sink.write(_result(frame.index))
        state = json.loads(_get(sink.url + "state.json")[2])
        assert state["frame_index"] == 5 and state["seq"] == 6
        _, _, jpeg = _get(sink.url + "frame.jpg")
        with Image.open(io.BytesIO(jpeg)) as image:
            assert image.size == SIZE
    finally:
        sink.close()
        tap.close()


def test_an_unusable_display_falls_back_to_the_web_instead_of_aborting(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", ":97")  # set, but nothing there: OpenCV's Qt would abort this process
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    tap = FrameTap(open_source(encode_clip(tmp_path / "clip.mp4", [_image(0)] * 2)))
    try:
        with pytest.raises(RuntimeError, match="web preview"):
            PreviewSink(tap, mode="window", port=0)
        sink = PreviewSink(tap, port=0)
        assert sink.mode == "web" and sink.url is not None
        sink.close()
    finally:
        tap.close()


class _WebDriver:
    """Headless Chromium driven through chromedriver's W3C WebDriver HTTP API (stdlib only, no selenium)."""

    def __init__(self, profile: Path, size: tuple[int, int]) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self._driver = subprocess.Popen([CHROMEDRIVER, f"--port={port}"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        self._base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError):  # not listening yet
                if self._call("GET", "/status")["ready"]:
                    break
            if time.monotonic() > deadline:
                self._driver.kill()
                raise RuntimeError("chromedriver did not start in 20 s")
            time.sleep(0.1)
        options = {"binary": CHROMIUM, "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                                 f"--window-size={size[0]},{size[1]}"]}
        session = self._call("POST", "/session", {"capabilities": {"alwaysMatch": {"goog:chromeOptions": options}}})
        self._session = f"/session/{session['sessionId']}"

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self._base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())["value"]

    def open(self, url: str) -> None:
        self._call("POST", self._session + "/url", {"url": url})

    def text(self, element: str) -> str:
        return self.texts(element)[element]

    def texts(self, *elements: str) -> dict[str, str]:
        """Several elements' text read at one instant (one script run)."""
        script = "return Object.fromEntries(arguments[0].map((id) => [id, document.getElementById(id).textContent]))"
        return self._call("POST", self._session + "/execute/sync", {"script": script, "args": [list(elements)]})

    def click(self, element: str) -> None:
        self._call("POST", self._session + "/execute/sync",
                   {"script": "document.getElementById(arguments[0]).click()", "args": [element]})

    def screenshot(self) -> np.ndarray:
        png = base64.b64decode(self._call("GET", self._session + "/screenshot"))
        with Image.open(io.BytesIO(png)) as image:
            return np.asarray(image.convert("RGB")).astype(int)

    def close(self) -> None:
        try:
            self._call("DELETE", self._session)
        finally:
            self._driver.terminate()
            self._driver.wait(10)


def _until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                    reason="chromium or chromedriver not installed (apt-get install chromium chromium-driver)")
def test_page_in_headless_chromium_shows_changing_values(live_server: PreviewServer, tmp_path: Path) -> None:
    browser = _WebDriver(tmp_path / "profile", (1100, 700))
    try:
        browser.open(live_server.url)
        assert _until(lambda: browser.text("status") == "tracking 1 face(s)"), browser.text("status")
        snapshots: dict[int, dict[str, str]] = {}

        def three_frames_seen() -> bool:
            shown = browser.texts("frame-index", "pose", "val-jawOpen")
            snapshots[int(shown["frame-index"].split()[0])] = shown
            return len(snapshots) >= 3

        assert _until(three_frames_seen, 10.0), snapshots
        for index, shown in snapshots.items():  # each frame's own values, as the feeder made them
            assert shown["pose"] == f"yaw {index % 30:.1f}  pitch 0.0  roll 0.0", index
            assert shown["val-jawOpen"] == f"{(index % 20) / 19:.2f}", index
        assert len({shown["val-jawOpen"] for shown in snapshots.values()}) > 1
        pixels = browser.screenshot()
    finally:
        browser.close()
    Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "preview.png")  # to look at when this fails
    assert pixels.shape[1] == 1100
    frame = pixels[12 : 12 + SIZE[1], 12 : 12 + SIZE[0]]  # the overlay image, top left of the page
    assert frame[:, :, 2].std() > 20  # its blue ramp arrived: the JPEG loaded
    bar_blue = (np.abs(pixels - np.array([0x5A, 0xB4, 0xFF])).max(axis=2) < 12).sum()
    assert bar_blue > 100  # bars are filled (mouthSmileLeft at 0.5 at least)


@pytest.mark.media
def test_the_calibrate_button_recalibrates_the_running_tracker(short_face_clip: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The page's Calibrate request reaches the real tracker between two frames: every track's rest face is taken
    afresh (on demand) from the next seconds, as `facetrack run --preview` wires it."""
    from facetrack.tracker.pipeline import Tracker

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    tracker = Tracker()
    assert tracker.calibrates
    tap = FrameTap(open_source(short_face_clip))
    sink = PreviewSink(tap, port=0, max_fps=1000.0, on_calibrate=lambda: tracker.recalibrate(0.4))
    results: list[FrameResult] = []

    def ask_at_frame_5(result: FrameResult) -> None:
        results.append(result)
        if result.frame_index == 5:
            request = urllib.request.Request(sink.url + "calibrate", method="POST",
                                             headers={"X-Facetrack-Action": "calibrate"})
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.status == 202

    tracker.run(tap, [sink], on_result=ask_at_frame_5)
    calibration = {r.frame_index: r.faces[0].coefficients.calibration for r in results if r.faces}
    asked = [i for i, c in calibration.items() if c == "on demand"]
    assert asked and min(asked) > 6, calibration  # 0.4 s (10 frames at 25 fps) after the request
    assert all(c != "on demand" for i, c in calibration.items() if i <= 6)


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                    reason="chromium or chromedriver not installed (apt-get install chromium chromium-driver)")
def test_the_pages_calibrate_button_asks_the_run(tmp_path: Path) -> None:
    server = PreviewServer(port=0, calibration=True)
    server.publish(_image(0), frame_state(_result(0), 1))
    browser = _WebDriver(tmp_path / "profile", (1100, 700))
    try:
        browser.open(server.url)
        browser.click("calibrate")
        assert _until(lambda: "neutral face" in browser.text("calibration") and "press" not in
                      browser.text("calibration")), browser.text("calibration")
        assert server.calibration_requested()
    finally:
        browser.close()
        server.close()
