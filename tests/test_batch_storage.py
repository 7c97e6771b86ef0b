"""`facetrack batch --out-dir s3://...` against an S3 server on loopback (moto's server mode), and URL rules."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from facetrack.adapters.file_sinks import read_results
from facetrack.tracker.batch.run import BatchConfig
from facetrack.tracker.batch.storage import StorageError, filesystem, is_remote, local_path

BATCH = [sys.executable, "-c", "from facetrack.tracker.cli.batch import main; main()"]


def test_url_rules() -> None:
    assert is_remote("s3://bucket/out") and is_remote("gs://b") and not is_remote("file:///tmp/x")
    assert not is_remote("/data/out") and not is_remote("C:\\data")
    assert local_path("file:///tmp/x") == "/tmp/x"
    assert BatchConfig(inputs=[], out_dir="s3://bucket/out").out_dir == "s3://bucket/out"
    assert BatchConfig(inputs=[], out_dir="file:///tmp/out").out_dir == Path("/tmp/out")


def test_unknown_scheme_is_an_error_not_a_folder(tmp_path: Path, blank_clip: Path) -> None:
    pytest.importorskip("fsspec", reason='URLs need fsspec: pip install "facetrack[cloud]"')
    with pytest.raises(StorageError, match="unknown URL scheme nosuch://"):
        filesystem("nosuch://bucket/out")
    done = subprocess.run(
        [*BATCH, str(blank_clip), "--out-dir", "nosuch://bucket/out"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 2 and "unknown URL scheme" in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["blank.mp4"]  # no folder named after the URL


@pytest.fixture()
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A moto S3 server on 127.0.0.1 with an empty bucket; the environment a batch needs to reach it."""
    pytest.importorskip("s3fs", reason='S3 URLs need s3fs: pip install "facetrack[cloud]"')
    server_module = pytest.importorskip(
        "moto.server", reason='the S3 test server is moto[server]: pip install "moto[server]"'
    )
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    # The server keeps its buckets in this process: start each test from an empty store.
    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST")).close()
    env = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}", "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem(anon=False).mkdir("clips-out")
    yield env
    server.stop()


@pytest.mark.media
def test_outputs_on_s3_commit_atomically_and_resume(
    s3: dict[str, str], tmp_path: Path, short_face_clip: Path, blank_clip: Path
) -> None:
    import os

    import s3fs

    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "face.mp4").write_bytes(short_face_clip.read_bytes())
    (clips / "blank.mp4").write_bytes(blank_clip.read_bytes())
    env = {**os.environ, **s3}
    url = "s3://clips-out/run1"
    args = [*BATCH, str(clips), "--out-dir", url, "--max-frames", "5", "-j", "1", "--format", "jsonl"]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr
    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    names = sorted(Path(key).name for key in fs.find("clips-out/run1"))
    assert names == ["blank.jsonl", "face.jsonl", "manifest.json", "summary.csv", "summary.json"]
    fs.get_file("clips-out/run1/face.jsonl", str(tmp_path / "face.jsonl"))
    assert [frame.frame_index for frame in read_results(tmp_path / "face.jsonl")] == list(range(5))
    summary = json.loads(fs.cat_file("clips-out/run1/summary.json"))
    assert summary["totals"]["ok"] == 2 and summary["totals"]["frames"] == 10
    modified = {key: fs.info(key)["LastModified"] for key in fs.find("clips-out/run1") if key.endswith(".jsonl")}

    # Inputs on S3 too: a prefix of clips, downloaded by the worker that tracks each.
    fs.put(str(clips) + "/", "clips-out/in/", recursive=True)
    from_s3 = subprocess.run(
        [*BATCH, "s3://clips-out/in/", "--out-dir", "s3://clips-out/run2", "--max-frames", "3", "-j", "1"],
        capture_output=True, text=True, env=env, timeout=180,
    )  # fmt: skip
    assert from_s3.returncode == 0, from_s3.stderr
    fs.invalidate_cache()
    rows = {row["clip"]: row for row in json.loads(fs.cat_file("clips-out/run2/summary.json"))["clips"]}
    assert {name: (row["status"], row["frames"], row["input"]) for name, row in rows.items()} == {
        "blank": ("ok", 3, "s3://clips-out/in/blank.mp4"), "face": ("ok", 3, "s3://clips-out/in/face.mp4"),
    }  # fmt: skip
    again = subprocess.run(
        [*BATCH, "s3://clips-out/in/", "--out-dir", "s3://clips-out/run2", "--max-frames", "3", "--resume"],
        capture_output=True, text=True, env=env, timeout=180,
    )  # fmt: skip
    assert again.returncode == 0 and "2 skipped as already done" in again.stderr, again.stderr

    # The next resume on another machine: no local staging folder, the URL's manifest is the run.
    env["XDG_CACHE_HOME"] = str(tmp_path / "other-cache")
    resumed = subprocess.run([*args, "--resume"], capture_output=True, text=True, env=env, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert "2 skipped as already done" in resumed.stderr
    fs.invalidate_cache()
    assert {key: fs.info(key)["LastModified"] for key in modified} == modified


@pytest.mark.media
@pytest.mark.slow
def test_ray_workers_write_to_s3(s3: dict[str, str], tmp_path: Path, short_face_clip: Path) -> None:
    """The Ray path: task workers (in a private cluster) upload and commit the results themselves."""
    pytest.importorskip("ray", reason='Ray is an optional extra: pip install "facetrack[ray]"')
    import os

    import s3fs

    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update(s3, RAY_TMPDIR=str(tmp_path / "raytmp"))  # no other cluster on this machine is used
    done = subprocess.run(
        [*BATCH, str(short_face_clip), "--out-dir", "s3://clips-out/ray", "--max-frames", "4", "--ray", "-j", "1"],
        capture_output=True, text=True, env=env, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    assert sorted(Path(key).name for key in fs.find("clips-out/ray")) == [
        "face40.parquet", "manifest.json", "summary.csv", "summary.json",
    ]  # fmt: skip
    manifest = json.loads(fs.cat_file("clips-out/ray/manifest.json"))
    assert manifest["clips"]["face40"]["worker"] and manifest["runs"][0]["backend"].startswith("Ray")
