"""CURVE authentication and encryption for the ZeroMQ stream (optional, for use off-host).

A key folder holds everything the publisher needs; clients get their own secret key
and the server's public key:

    KEYS/server.key            the server's public key (give it to clients)
    KEYS/server.key_secret     the server's secret key (stays on the tracking machine)
    KEYS/authorized/NAME.key   public keys of the clients allowed to subscribe
    KEYS/clients/NAME.key_secret, NAME.key   a client's key pair (hand both to that client)

Only clients whose public key is in `authorized/` complete the handshake; everyone
else receives nothing, and everything on the wire is encrypted.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from facetrack.tracker.core.errors import SinkError

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class CurveClientKeys:
    """What a subscriber needs: its own key pair and the server's public key."""

    secret_file: Path
    """The client's `NAME.key_secret` (it holds the public key too)."""
    server_public_file: Path
    """The server's `server.key`."""


def create_key_folder(folder: Path, clients: list[str]) -> list[Path]:
    """Create the server key pair (if absent) and a key pair per client, authorised.

    Returns the clients' secret files.
    """
    for name in clients:
        if not _NAME.match(name):
            raise ValueError(f"client name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    authorized, client_dir = folder / "authorized", folder / "clients"
    for path in (folder, authorized, client_dir):
        path.mkdir(parents=True, exist_ok=True)
    if not (folder / "server.key_secret").exists():
        zmq.auth.create_certificates(folder, "server")
    secrets = []
    for name in clients:
        public, secret = zmq.auth.create_certificates(client_dir, name)
        shutil.copy(public, authorized / Path(public).name)
        os.chmod(secret, 0o600)
        secrets.append(Path(secret))
    os.chmod(folder / "server.key_secret", 0o600)
    return secrets


def _load(path: Path, want_secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise SinkError(f"cannot read CURVE key {path}: {exc}; create keys with `facetrack keys init DIR`") from None
    if want_secret and not secret:
        raise SinkError(f"{path} holds no secret key: pass the `.key_secret` file")
    return public, secret


class CurveServer:
    """Makes a PUB socket a CURVE server that admits only the folder's authorised clients.

    The authenticator answers ZeroMQ's handshake requests on a thread of its own, for the
    one context the publisher owns (ZAP handlers are per context).
    """

    def __init__(self, folder: Path, context: zmq.Context) -> None:
        authorized = folder / "authorized"
        if not authorized.is_dir() or not any(authorized.glob("*.key")):
            raise SinkError(f"{authorized} lists no authorised client keys; add some with `facetrack keys init`")
        self._public, self._secret = _load(folder / "server.key_secret", want_secret=True)
        self._auth = ThreadAuthenticator(context)
        self._auth.start()
        self._auth.configure_curve(domain="*", location=str(authorized))

    def secure(self, socket: zmq.Socket) -> None:
        socket.curve_secretkey = self._secret
        socket.curve_publickey = self._public
        socket.curve_server = True

    def stop(self) -> None:
        self._auth.stop()


def secure_client(socket: zmq.Socket, keys: CurveClientKeys) -> None:
    """Make a SUB socket a CURVE client of the server whose public key is given."""
    public, secret = _load(keys.secret_file, want_secret=True)
    server_public, _ = _load(keys.server_public_file, want_secret=False)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_serverkey = server_public
