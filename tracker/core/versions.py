"""The one place installed versions are looked up (the CLI's --version, doctor, bench and batch reports)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version(distribution: str) -> str | None:
    """The installed version of a distribution, None when it is not installed."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None
