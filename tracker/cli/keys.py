"""`facetrack keys`: CURVE key pairs for an encrypted stream.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def keys() -> None:
    """CURVE keys for an encrypted stream that only authorised clients can read."""


@keys.command("init")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--client", "clients", multiple=True, required=True, help="Name of a client to authorise; repeatable.")
def keys_init(folder: Path, clients: tuple[str, ...]) -> None:
    """Create FOLDER with the server's key pair and an authorised key pair per client."""
    from facetrack.adapters.curve import create_key_folder

    try:
        secrets = create_key_folder(folder, list(clients))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--client") from None
    click.echo(f"server keys in {folder} (keep server.key_secret private; clients need server.key)")
    for secret in secrets:
        click.echo(f"client key pair: {secret} (give it and {folder / 'server.key'} to that client)")
