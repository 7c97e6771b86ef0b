"""Write (or check) the `.meta` files of the Unity package in adapters/unity.

Unity ignores package folders and assets that have no `.meta` (installed from a git URL a
package is read-only, so Unity cannot create them): every folder and file needs one with a
GUID that is unique and never changes, because scenes and prefabs refer to scripts by it.
The GUID is derived from the asset's path in the package (uuid5), so re-running this
script gives the same GUIDs, and a new asset gets its own.

    python scripts/unity_meta.py           # write missing or outdated .meta files
    python scripts/unity_meta.py --check   # exit 1 and list what is missing or outdated

Folders ending in `~` are not imported by Unity and get no `.meta`, except the contents
of `Samples~`, which Unity copies into the project when the user imports a sample (the
sample scene refers to the sample script by its GUID).
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "adapters" / "unity"
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "facetrack:adapters/unity")
_IMPORTED_TILDE_FOLDERS = ("Samples~",)

_IMPORTERS = {
    ".cs": "MonoImporter:\n  externalObjects: {}\n  serializedVersion: 2\n  defaultReferences: []\n"
           "  executionOrder: 0\n  icon: {instanceID: 0}\n",
    ".asmdef": "AssemblyDefinitionImporter:\n  externalObjects: {}\n",
    ".json": "TextScriptImporter:\n  externalObjects: {}\n",
    ".md": "TextScriptImporter:\n  externalObjects: {}\n",
}
_DEFAULT_IMPORTER = "DefaultImporter:\n  externalObjects: {}\n"
_COMMON_TAIL = "  userData: \n  assetBundleName: \n  assetBundleVariant: \n"


def guid_for(relative: str) -> str:
    """The asset's GUID: 32 hex digits from its POSIX path inside the package."""
    return uuid.uuid5(_NAMESPACE, relative).hex


def meta_text(relative: str, folder: bool) -> str:
    """The `.meta` file Unity expects for a folder or a file of this type."""
    importer = _DEFAULT_IMPORTER if folder else _IMPORTERS.get(Path(relative).suffix, _DEFAULT_IMPORTER)
    head = f"fileFormatVersion: 2\nguid: {guid_for(relative)}\n" + ("folderAsset: yes\n" if folder else "")
    return head + importer + _COMMON_TAIL


def assets(package: Path = PACKAGE) -> list[tuple[Path, bool]]:
    """Every folder and file Unity imports from the package, with whether it is a folder."""
    found = []
    for path in sorted(package.rglob("*")):
        parts = path.relative_to(package).parts
        tilde = [p for p in parts[:-1] if p.endswith("~")]
        if path.suffix == ".meta" or path.name.startswith("."):
            continue
        if parts[-1].endswith("~") or any(p not in _IMPORTED_TILDE_FOLDERS for p in tilde):
            continue
        found.append((path, path.is_dir()))
    return found


def expected_metas(package: Path = PACKAGE) -> dict[Path, str]:
    """`.meta` path -> its text, for every asset."""
    return {path.with_name(path.name + ".meta"): meta_text(path.relative_to(package).as_posix(), folder)
            for path, folder in assets(package)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Only report missing, outdated or orphaned .meta files.")
    args = parser.parse_args(argv)
    expected = expected_metas()
    stale = [p for p, text in expected.items() if not p.exists() or p.read_text() != text]
    orphans = [p for p in PACKAGE.rglob("*.meta") if p not in expected]
    if args.check:
        for path in stale:
            print(f"missing or outdated: {path.relative_to(PACKAGE)}")
        for path in orphans:
            print(f"orphaned: {path.relative_to(PACKAGE)}")
        return 1 if stale or orphans else 0
    for path in stale:
        path.write_text(expected[path])
    for path in orphans:
        path.unlink()
    print(f"{len(stale)} .meta written, {len(orphans)} orphaned removed, {len(expected)} assets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
