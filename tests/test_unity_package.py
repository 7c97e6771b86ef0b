"""The Unity package as Unity reads it from a git URL: a `.meta` with a unique, stable GUID for
every imported folder and file, a valid package.json, a sample scene whose scripts resolve,
and C# that Mono's compiler accepts (the plain-C# runtime compiled, every file parsed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNITY = ROOT / "adapters" / "unity"
_GUID = re.compile(r"^guid: ([0-9a-f]{32})$", re.MULTILINE)

needs_mcs = pytest.mark.skipif(shutil.which("mcs") is None,
                               reason="Mono's C# compiler is not installed (apt-get install mono-mcs)")


def _imported(package: Path) -> list[Path]:
    """What Unity imports: everything but `.meta` files, dot-files and `~` folders (Samples~ is
    copied into the project when its sample is imported, so its contents count)."""
    found = []
    for path in sorted(package.rglob("*")):
        parts = path.relative_to(package).parts
        if path.suffix == ".meta" or path.name.startswith(".") or parts[-1].endswith("~"):
            continue
        if any(p.endswith("~") and p != "Samples~" for p in parts[:-1]):
            continue
        found.append(path)
    return found


def _guid(meta: Path) -> str:
    match = _GUID.search(meta.read_text())
    assert match is not None, f"{meta} has no 32-hex guid line"
    return match.group(1)


def test_every_imported_asset_has_a_meta_with_a_unique_guid() -> None:
    assets = _imported(UNITY)
    assert any(p.name == "FacetrackSubscriber.cs" for p in assets) and any(p.name == "Runtime" for p in assets)
    missing = [str(p.relative_to(UNITY)) for p in assets if not p.with_name(p.name + ".meta").is_file()]
    assert not missing, f"no .meta (Unity would ignore them): {missing}; run python scripts/unity_meta.py"
    guids = {p: _guid(p.with_name(p.name + ".meta")) for p in assets}
    assert len(set(guids.values())) == len(guids), "duplicate GUIDs"
    folders = [p for p in assets if p.is_dir()]
    assert all("folderAsset: yes" in p.with_name(p.name + ".meta").read_text() for p in folders)
    orphans = [m for m in UNITY.rglob("*.meta") if not m.with_suffix("").exists()]
    assert not orphans, f".meta without its asset: {orphans}"
    assert not list((UNITY / "Tests~").rglob("*.meta")), "Tests~ is not imported: no .meta there"


def test_meta_files_are_what_the_script_derives() -> None:
    """GUIDs come from the asset paths (uuid5): re-running the script changes nothing."""
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "unity_meta.py"), "--check"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_package_json_and_assembly_definitions() -> None:
    package = json.loads((UNITY / "package.json").read_text())
    assert re.fullmatch(r"com(\.[a-z0-9-]+){2,}", package["name"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", package["version"])
    assert re.fullmatch(r"\d{4}\.\d", package["unity"])
    for sample in package["samples"]:
        assert (UNITY / sample["path"]).is_dir(), sample
    runtime = json.loads((UNITY / "Runtime" / "Facetrack.Runtime.asmdef").read_text())
    assert runtime["overrideReferences"] and {"NetMQ.dll", "AsyncIO.dll"} <= set(runtime["precompiledReferences"])
    tests = json.loads((UNITY / "Tests" / "Editor" / "Facetrack.Tests.Editor.asmdef").read_text())
    assert "Facetrack.Runtime" in tests["references"] and tests["includePlatforms"] == ["Editor"]


def test_sample_scene_refers_to_the_package_scripts_by_their_guids() -> None:
    scene = (UNITY / "Samples~" / "AvatarDriver" / "AvatarDriver.unity").read_text()
    referenced = set(re.findall(r"m_Script: \{fileID: 11500000, guid: ([0-9a-f]{32}), type: 3\}", scene))
    scripts = {_guid(p.with_name(p.name + ".meta")): p.stem for p in _imported(UNITY) if p.suffix == ".cs"}
    assert referenced and referenced <= scripts.keys(), "the scene names a script GUID no .cs has"
    assert {scripts[g] for g in referenced} == {"FacetrackSubscriber", "FacetrackAvatar"}
    for guid in referenced:  # each script declares the class its file is named after (Unity's rule)
        path = next(p for p in _imported(UNITY) if p.stem == scripts[guid] and p.suffix == ".cs")
        assert re.search(rf"class {scripts[guid]}\s*:\s*MonoBehaviour", path.read_text())


@needs_mcs
def test_runtime_compiles_with_mcs(tmp_path: Path) -> None:
    """The plain-C# runtime compiles to a library; every C# file (MonoBehaviours, sample, editor
    tests: they need UnityEngine and NetMQ, which are not installable here) parses."""
    protocol = sorted((UNITY / "Runtime" / "Protocol").glob("*.cs"))
    build = subprocess.run(["mcs", "-target:library", "-warnaserror", f"-out:{tmp_path / 'Facetrack.Protocol.dll'}",
                            *map(str, protocol)], capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stdout + build.stderr
    every = [p for p in UNITY.rglob("*.cs") if "Tests~" not in p.parts]
    assert len(every) > len(protocol)
    parsed = subprocess.run(["mcs", "--parse", *map(str, every)], capture_output=True, text=True, timeout=120)
    assert parsed.returncode == 0, parsed.stdout + parsed.stderr
