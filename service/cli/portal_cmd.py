"""``chopmark artists invite ARTIST``: a one-time link for an artist registered through the API
to set a portal password (or to reset a forgotten one)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import typer

from service.cli.common import cli_actor, err_console, fail, runtime, shown


def artists_invite(
    artist: Annotated[UUID, typer.Argument(help="the artist's id")],
    hours: Annotated[int, typer.Option(min=1, max=24 * 30, help="how long the link works")] = 72,
) -> None:
    """Print a one-time portal link (alone on the last line) with which the artist sets a
    password; earlier unused links of the artist stop working, and using it ends the artist's
    portal logins (so it doubles as a password reset)."""
    from service.portal.accounts import create_invite
    from service.registry.store import NotFound

    with runtime() as rt, rt.pool.connection() as conn:
        try:
            invite = create_invite(conn, rt.registry, cli_actor(), artist, hours)
        except NotFound as exc:
            raise fail(exc) from None
        artist_row = rt.registry.get_artist(conn, artist)
        base = rt.settings.portal_url or f"http://{rt.settings.host}:{rt.settings.port}"
    err_console.print(
        f"invitation for {shown(artist_row.display_name)} <{shown(artist_row.email)}>, "
        f"valid until {invite.expires_at:%Y-%m-%d %H:%M} UTC; send them this link:"
    )
    print(f"{base.rstrip('/')}/portal/invite/{invite.token}")
