"""`nba api serve` and `nba api key ...`: the HTTP decision API and campaign page, and its keys."""

from __future__ import annotations

from typing import Annotated

import typer

from policies.errors import ConfigError
from stream_app.settings import load_settings

__all__ = ["api_app"]

api_app = typer.Typer(
    help="HTTP decision API and campaign page (/ui); API keys.",
    no_args_is_help=True,
)
key_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
api_app.add_typer(key_app, name="key")


@api_app.command("serve")
def serve() -> None:
    """Serve the API on NBA_API_HOST:NBA_API_PORT until Ctrl-C.

    It needs the broker, Redis and the feature store of the workers (run `nba worker` beside
    it: POST /v1/decisions is decided by them). The page is at /ui, the OpenAPI document at
    /openapi.json and /docs.
    """
    from stream_app.api.server import run_api

    settings = load_settings()
    typer.echo(
        f"api: http://{settings.api_host}:{settings.api_port}/ui (keys: {settings.keys_file})"
    )
    run_api(settings)


@key_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="Who or what uses the key, e.g. crm-prod.")],
    scope: Annotated[
        list[str],
        typer.Option(help="read (lookups, the page) and/or decide (POST /v1/decisions)."),
    ],
) -> None:
    """Create a key and print it once: only its SHA-256 digest is stored."""
    from stream_app.api.keys import KeyStore

    if not name.strip():
        raise ConfigError("--name must not be empty")
    settings = load_settings()
    token = KeyStore(settings.keys_file).create(name.strip(), scope)
    typer.echo(token)
    typer.echo(f"api: key created in {settings.keys_file}; it is not shown again", err=True)


@key_app.command("list")
def list_keys() -> None:
    """The keys: id, name, scopes, creation time (never the key itself)."""
    from stream_app.api.keys import KeyStore

    for key in KeyStore(load_settings().keys_file).keys():
        typer.echo(f"{key.key_id}  {key.name}  {','.join(key.scopes)}  {key.created_at}")


@key_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The id `nba api key list` shows.")]) -> None:
    """Revoke a key: a running API refuses it from its next request."""
    from stream_app.api.keys import KeyStore

    KeyStore(load_settings().keys_file).revoke(key_id)
    typer.echo(f"api: key {key_id} revoked")
