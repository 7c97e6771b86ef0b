"""Build the Blender extension zip: the add-on plus pyzmq and msgpack wheels for Blender's Python.

    python adapters/blender/build_extension.py --platform linux-x64 --platform windows-x64 --out dist/

Blender 4.2+ installs extensions from a zip (Edit > Preferences > Get Extensions > Install
from Disk) and installs the wheels the manifest lists; Blender 4.2 to 5.0 run Python 3.11.
`--no-wheels` builds a zip without them (for a Blender whose Python already has pyzmq and
msgpack). Wheels are downloaded with pip from PyPI.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ADDON = Path(__file__).resolve().parent / "facetrack_blender"
PYTHON_VERSION = "3.11"
REQUIREMENTS = ("pyzmq>=26", "msgpack>=1.0")
PLATFORM_TAGS = {  # Blender platform -> pip --platform tags, newest first
    "linux-x64": ("manylinux_2_28_x86_64", "manylinux2014_x86_64", "manylinux_2_17_x86_64"),
    "windows-x64": ("win_amd64",),
    "macos-arm64": ("macosx_11_0_arm64", "macosx_10_15_universal2", "macosx_10_9_universal2"),
    "macos-x64": ("macosx_10_15_x86_64", "macosx_10_9_x86_64", "macosx_10_15_universal2", "macosx_10_9_universal2"),
}


def download_wheels(platform: str, dest: Path) -> list[Path]:
    """pyzmq and msgpack wheels for Blender's Python on `platform`, via pip."""
    platform_args = [arg for tag in PLATFORM_TAGS[platform] for arg in ("--platform", tag)]
    before = set(dest.glob("*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--no-deps",
         "--python-version", PYTHON_VERSION, "--implementation", "cp", *platform_args, "--dest", str(dest),
         *REQUIREMENTS],
        check=True,
    )
    return sorted(set(dest.glob("*.whl")) - before)


def manifest_with(wheels: list[str], platforms: list[str]) -> str:
    """The add-on's manifest with the wheels (and the platforms they cover) appended."""
    text = (ADDON / "blender_manifest.toml").read_text()
    head, sep, tail = text.partition("\n[permissions]")
    extra = ""
    if wheels:
        listed = ",\n".join(f'  "./wheels/{name}"' for name in wheels)
        extra += f"platforms = [{', '.join(repr(p).replace(chr(39), chr(34)) for p in platforms)}]\n"
        extra += f"wheels = [\n{listed},\n]\n"
    return head.rstrip("\n") + "\n" + extra + sep + tail


def build(out_dir: Path, platforms: list[str], with_wheels: bool) -> Path:
    """Write `facetrack-<version>.zip` into `out_dir` and return its path."""
    version = next(line.split("=")[1].strip().strip('"') for line in (ADDON / "blender_manifest.toml").read_text()
                   .splitlines() if line.startswith("version"))
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = "" if not with_wheels else "-" + "-".join(platforms)
    target = out_dir / f"facetrack-{version}{suffix}.zip"
    with tempfile.TemporaryDirectory() as tmp:
        wheels: list[Path] = []
        if with_wheels:
            for platform in platforms:
                wheels += download_wheels(platform, Path(tmp))
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(ADDON.glob("*.py")):
                archive.write(path, path.name)
            archive.writestr("blender_manifest.toml", manifest_with([w.name for w in wheels], platforms))
            for wheel in wheels:
                archive.write(wheel, f"wheels/{wheel.name}")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--platform", action="append", choices=sorted(PLATFORM_TAGS),
                        help="Blender platform to bundle wheels for (repeatable; default: linux-x64)")
    parser.add_argument("--no-wheels", action="store_true", help="Do not bundle pyzmq and msgpack.")
    parser.add_argument("--out", type=Path, default=Path("dist"), help="Output folder (default: dist)")
    args = parser.parse_args()
    print(build(args.out, args.platform or ["linux-x64"], not args.no_wheels))


if __name__ == "__main__":
    main()
