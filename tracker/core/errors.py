"""Exceptions a user can act on: each message says what went wrong and what to do."""

from __future__ import annotations


class FacetrackError(Exception):
    """Base class of every error facetrack raises on purpose."""


class SourceOpenError(FacetrackError):
    """A source could not be opened: missing path, not a video, camera busy or absent."""


class SourceDecodeError(FacetrackError):
    """A source failed part-way (corrupt or truncated file); frames before it were delivered."""


class SourceLostError(FacetrackError):
    """A live source (camera, network stream) went away and did not come back in time."""


class SinkError(FacetrackError):
    """A sink could not open or write (endpoint in use, unwritable path, disk full)."""


class ProtocolError(FacetrackError):
    """A message on the wire is not a valid facetrack message."""
