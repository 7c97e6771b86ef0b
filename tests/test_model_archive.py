"""`facetrack models install ict` with hostile archives: nothing written outside, https only, no debris."""

from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from facetrack.tracker.facemodel.archive import _entry_path, safe_extract, tree_digest, verify_tree
from facetrack.tracker.facemodel.format import ModelError
from facetrack.tracker.facemodel.ict import _facexmodel_entry

CLI = [sys.executable, "-m", "facetrack.tracker.cli"]


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(zipfile.ZipInfo(name), data)
    return path


def _install(source: str, data: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "FACETRACK_DATA": str(data)}
    return subprocess.run([*CLI, "models", "install", "ict", "--from", source], capture_output=True, text=True,
                          timeout=120, env=env)


def _hostile_names(outside: Path) -> list[str]:
    relative = "/".join([".."] * (len(outside.parts) + 2)) + str(outside)
    return [f"FaceXModel/{relative}", f"FaceXModel/{outside}", str(outside), f"FaceXModel/../{outside.name}"]


@pytest.mark.parametrize("which", range(4))
def test_a_hostile_zip_is_refused_and_writes_nothing_anywhere(tmp_path: Path, which: int) -> None:
    outside = tmp_path / "outside" / "planted"
    outside.parent.mkdir()
    name = _hostile_names(outside)[which]
    archive = _zip(tmp_path / "hostile.zip", {"FaceXModel/vertex_indices.json": b"{}", name: b"planted"})
    data = tmp_path / "data"
    done = _install(str(archive), data)
    assert done.returncode == 1, done.stderr
    assert "outside the folder" in done.stderr and "Traceback" not in done.stderr
    assert not outside.exists() and not (tmp_path / "planted").exists()
    assert not any(data.rglob("*.*")), "a refused archive leaves no files in the data folder"
    assert not (data / "cache" / "ict-zip").exists()
    assert list((data / "cache").iterdir()) == [], "no scratch folder is left behind"


def test_the_download_path_keeps_every_entry_inside_or_refuses(tmp_path: Path) -> None:
    """What `fetch_ict` does with an upstream-style archive (`ICT-FaceKit-<sha>/FaceXModel/...`)."""
    target = tmp_path / "unpacked"
    good = _zip(tmp_path / "good.zip", {"ICT-FaceKit-x/FaceXModel/a.obj": b"v 0 0 0\n", "ICT-FaceKit-x/README": b"r"})
    assert safe_extract(good, target, _facexmodel_entry) == 1
    assert (target / "FaceXModel" / "a.obj").read_bytes() == b"v 0 0 0\n"
    for hostile in ("x/FaceXModel//tmp/x", "x/FaceXModel/../../escape", "x/FaceXModel/a\\..\\..\\b"):
        archive = _zip(tmp_path / "bad.zip", {"x/FaceXModel/b.obj": b"b", hostile: b"planted"})
        with pytest.raises(ModelError, match="outside the folder"):
            safe_extract(archive, tmp_path / "bad", _facexmodel_entry)
        assert not (tmp_path / "bad").exists() and not Path("/tmp/x").exists()


def test_entry_names_that_leave_their_folder() -> None:
    assert _entry_path("FaceXModel/a.obj") is not None
    for name in ("/etc/x", "a/../../b", "a//b", "C:/x", "a\\b", "a/\x00b", ".."):
        assert _entry_path(name) is None, name


class _Counting(http.server.SimpleHTTPRequestHandler):
    requests = 0

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).requests += 1
        super().do_GET()

    def log_message(self, *_args: object) -> None:
        """Quiet: the test counts requests instead of reading a log."""


@pytest.fixture()
def http_server(tmp_path: Path) -> Iterator[tuple[str, type[_Counting]]]:
    _zip(tmp_path / "ict.zip", {"FaceXModel/vertex_indices.json": b"{}"})
    handler = type("Handler", (_Counting,), {"requests": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             lambda *a: handler(*a, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/ict.zip", handler
    server.shutdown()
    server.server_close()


def test_plain_http_is_refused_before_any_request(http_server: tuple[str, type[_Counting]], tmp_path: Path) -> None:
    url, handler = http_server
    data = tmp_path / "data"
    done = _install(url, data)
    assert done.returncode == 1
    assert "only https://" in done.stderr and "Traceback" not in done.stderr
    assert handler.requests == 0
    assert not data.exists() or not any(data.rglob("*"))


def test_tree_digest_is_sha256_of_the_sha256sum_listing(tmp_path: Path) -> None:
    folder = tmp_path / "FaceXModel"
    (folder / "sub").mkdir(parents=True)
    files = {"b.obj": b"bbb", "a.json": b"{}", "sub/c.obj": b"c"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    listing = "".join(f"{hashlib.sha256(files[n]).hexdigest()}  {n}\n" for n in sorted(files))
    expected = hashlib.sha256(listing.encode()).hexdigest()
    assert tree_digest(folder) == expected
    verify_tree(folder, expected, "here")
    (folder / "b.obj").write_bytes(b"bbB")
    with pytest.raises(ModelError, match="not the release facetrack pins"):
        verify_tree(folder, expected, "here")


def test_another_https_url_without_a_pin_is_refused_before_any_request(
        http_server: tuple[str, type[_Counting]], tmp_path: Path) -> None:
    url, handler = http_server
    data = tmp_path / "data"
    env = {**os.environ, "FACETRACK_DATA": str(data)}
    for extra in ([], ["--sha256", "not-a-digest"]):
        done = subprocess.run([*CLI, "models", "install", "ict", "--from", url.replace("http://", "https://"), *extra],
                              capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 1
        assert "--sha256" in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert handler.requests == 0
    assert not data.exists() or not any(data.rglob("*.*"))


@pytest.fixture()
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path, type[_Counting]]]:
    """A real TLS server on loopback whose self-signed certificate the CLI is told to trust (SSL_CERT_FILE)."""
    import shutil
    import ssl

    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make the test server's certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    served = tmp_path / "served"
    served.mkdir()
    _zip(served / "ict.zip", {"ICT-FaceKit-x/FaceXModel/vertex_indices.json": b"{}"})
    handler = type("Handler", (_Counting,), {"requests": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(served)))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/ict.zip", cert, handler
    server.shutdown()
    server.server_close()


def test_a_pinned_https_download_is_checked_against_its_digest(
        https_server: tuple[str, Path, type[_Counting]], tmp_path: Path) -> None:
    url, cert, handler = https_server
    data = tmp_path / "data"
    env = {**os.environ, "FACETRACK_DATA": str(data), "SSL_CERT_FILE": str(cert)}
    real = hashlib.sha256((tmp_path / "served" / "ict.zip").read_bytes()).hexdigest()

    def install(pin: str) -> subprocess.CompletedProcess:
        return subprocess.run([*CLI, "models", "install", "ict", "--from", url, "--sha256", pin],
                              capture_output=True, text=True, timeout=120, env=env)

    wrong = install("0" * 64)
    assert wrong.returncode == 1 and handler.requests == 1
    assert "is not the pinned one" in wrong.stderr and real in wrong.stderr and "Traceback" not in wrong.stderr
    assert not data.exists() or not any(data.rglob("*.*")), "a refused download leaves nothing behind"
    right = install(real.upper())
    assert right.returncode == 1 and handler.requests == 2  # the digest holds; the toy release is then incomplete
    assert "not the pinned one" not in right.stderr and "holds no ICT release" in right.stderr
    assert "Traceback" not in right.stderr
    assert not any(p for p in data.rglob("*") if p.is_file())


@pytest.mark.parametrize("kind", ["bfm2009", "bfm-front", "flame"])
def test_a_damaged_licensed_model_file_is_one_line_naming_it(tmp_path: Path, kind: str) -> None:
    damaged = tmp_path / ("model.pkl" if kind == "flame" else "model.mat")
    damaged.write_bytes(b"\x80\x04not a model")
    data = tmp_path / "data"
    done = subprocess.run([*CLI, "models", "install", kind, "--from", str(damaged)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "FACETRACK_DATA": str(data)})
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(damaged) in lines[0], done.stderr
    assert not data.exists() or not any(data.rglob("*.npz"))
