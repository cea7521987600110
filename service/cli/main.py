"""The ``chopmark`` command line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated
from uuid import UUID

import typer
from rich.table import Table

from service.auth.keys import create_key, list_keys, revoke_key
from service.cli.artists_list_cmd import artists_list
from service.cli.check_cmd import check, checks_app
from service.cli.claims_cmd import claims_app
from service.cli.common import (
    cli_actor,
    console,
    database_unusable,
    err_console,
    fail,
    field_problems,
    missing_paths,
    read_named_file,
    runtime,
    settings_or_exit,
    shown,
    write_named_file,
)
from service.cli.disputes_cmd import disputes_app
from service.cli.events_cmd import artist_events
from service.cli.fingerprint_cmds import fingerprints_app
from service.cli.generation_cmds import adapters_app, generate, sources_app
from service.cli.jobs_cmd import jobs_app
from service.cli.portal_cmd import artists_invite
from service.cli.proof_cmds import audit_check_proof, audit_proof, audit_report
from service.cli.provenance_cmds import credentials_app, verify
from service.cli.storage_cmds import storage_app
from service.cli.workers import INTERRUPTED_EXIT
from service.registry.preferences import PreferencesError, parse_preferences

app = typer.Typer(
    help="chopmark: provenance and copyright compliance for AI images.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
artists_app = typer.Typer(help="Artists.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(artists_app, name="artists")
artists_app.command("events")(artist_events)
artists_app.command("invite")(artists_invite)
artists_app.command("list")(artists_list)
app.add_typer(audit_app, name="audit")
audit_app.command("proof")(audit_proof)
audit_app.command("check-proof")(audit_check_proof)
audit_app.command("report")(audit_report)
app.add_typer(credentials_app, name="credentials")
app.command()(verify)
app.add_typer(adapters_app, name="adapters")
app.add_typer(sources_app, name="sources")
app.add_typer(fingerprints_app, name="fingerprints")
app.add_typer(storage_app, name="storage")
app.command()(generate)
app.command()(check)
app.add_typer(checks_app, name="checks")
app.add_typer(jobs_app, name="jobs")
app.add_typer(claims_app, name="claims")
app.add_typer(disputes_app, name="disputes")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="default: CHOPMARK_HOST")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="default: CHOPMARK_PORT")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="processes; default CHOPMARK_WORKERS")
    ] = None,
) -> None:
    """Run the HTTP API (migrations are applied first)."""
    import psycopg
    import uvicorn

    from provenance.credentials import CredentialsError
    from service.audit.signing import AuditKeyError, audit_key_for_log
    from service.db.migrate import upgrade
    from service.db.pool import database_url
    from service.stamping.credentials import load_signing, untrusted_signing

    settings = settings_or_exit()
    # What would otherwise end the server's start in a traceback, said in one line first.
    missing = missing_paths(settings)
    if missing:
        raise fail(missing[0])
    try:
        signing = load_signing(settings)  # the operator's chain and key usable, or the dev CA
        problem = untrusted_signing(signing)
        if problem:
            raise fail(problem)
        url = database_url(settings)
        upgrade(url)
        with psycopg.connect(url) as conn:
            audit_key_for_log(conn, settings.keys_dir / "audit-log.pem")
    except (AuditKeyError, CredentialsError) as exc:
        raise fail(exc) from None
    except psycopg.Error as exc:
        raise database_unusable(exc) from None
    from service.api.log_config import serve_log_config
    from service.api.metrics_shared import shared_metrics_dir
    from service.api.worker_lifetime import ENV as WORKER_OF

    processes = workers or settings.workers
    if processes > 1:  # its workers end with it, even when it is killed outright
        os.environ[WORKER_OF] = str(os.getpid())
    with shared_metrics_dir(processes):
        uvicorn.run(
            "service.api.app:create_app",
            factory=True,
            host=host or settings.host,
            port=port or settings.port,
            workers=processes,
            timeout_graceful_shutdown=settings.shutdown_grace_seconds,
            forwarded_allow_ips=settings.forwarded_allow_ips,
            log_level="info",
            log_config=serve_log_config(),
        )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations."""
    import psycopg

    from service.db.migrate import upgrade
    from service.db.pool import database_url

    try:
        applied = upgrade(database_url(settings_or_exit()))
    except psycopg.Error as exc:
        raise database_unusable(exc) from None
    for mig in applied:
        console.print(f"applied {mig.version:04d} {mig.name}")
    console.print(
        "database is up to date" if not applied else f"{len(applied)} migration(s) applied"
    )


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="who or what uses the key")],
    scope: Annotated[list[str], typer.Option(help="repeat for several scopes")],
) -> None:
    """Create an API key; the key itself is printed alone on the last line."""
    with runtime() as rt, rt.pool.connection() as conn, conn.transaction():
        try:
            rec, secret = create_key(conn, name, scope)
        except ValueError as exc:
            err_console.print(f"[red]error:[/red] {shown(exc)}")
            raise typer.Exit(2) from None
        rt.audit.append(
            conn,
            "key.created",
            cli_actor(),
            f"key:{rec.prefix}",
            {"name": rec.name, "scopes": list(rec.scopes)},
        )
    console.print(
        f"created key {rec.id} ({rec.prefix}) for {rec.name} with scopes "
        f"{', '.join(rec.scopes)}; it is shown once:"
    )
    print(secret)


@keys_app.command("list")
def keys_list() -> None:
    """List API keys (never their secrets)."""
    with runtime() as rt, rt.pool.connection() as conn:
        keys = list_keys(conn)
    table = Table("id", "prefix", "name", "scopes", "created", "last used", "revoked")
    for k in keys:
        table.add_row(
            str(k.id),
            k.prefix,
            shown(k.name),
            ",".join(k.scopes),
            f"{k.created_at:%Y-%m-%d}",
            f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "-",
            f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "-",
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(help="key id or prefix")]) -> None:
    """Revoke an API key."""
    with runtime() as rt, rt.pool.connection() as conn, conn.transaction():
        done = revoke_key(conn, key)
        if done is None:
            err_console.print(f"[red]error:[/red] no key {shown(key)}")
            raise typer.Exit(1)
        rec = done.key
        if done.newly:
            rt.audit.append(
                conn, "key.revoked", cli_actor(), f"key:{rec.prefix}", {"name": rec.name}
            )
    if not done.newly:
        console.print(
            f"key {rec.id} ({rec.prefix}) {shown(rec.name)} was revoked already,"
            f" at {rec.revoked_at}"
        )
        return
    console.print(f"revoked key {rec.id} ({rec.prefix}) {shown(rec.name)}")


@artists_app.command("create")
def artists_create(
    name: Annotated[str, typer.Option(help="display name")],
    email: Annotated[str, typer.Option()],
    preferences: Annotated[str | None, typer.Option(help="defaults, JSON")] = None,
) -> None:
    """Register an artist; prints the new id."""
    from pydantic import ValidationError

    from service.api.schemas import ArtistCreate
    from service.registry.store import Conflict

    try:
        checked = ArtistCreate.model_validate({"display_name": name, "email": email})  # as the API
        name, email = checked.display_name, checked.email  # the address alone, normalised
        prefs = parse_preferences(preferences)
    except ValidationError as exc:
        raise fail(field_problems(exc).replace("display_name", "--name")) from None
    except PreferencesError as exc:
        raise fail(exc) from None
    with runtime() as rt, rt.pool.connection() as conn:
        try:
            artist = rt.registry.create_artist(conn, cli_actor(), name, email, prefs)
        except Conflict as exc:
            err_console.print(f"[red]error:[/red] {shown(exc)}")
            raise typer.Exit(1) from None
    print(artist.id)


@artists_app.command("update")
def artists_update(
    artist: Annotated[UUID, typer.Argument(help="the artist's id")],
    name: Annotated[str | None, typer.Option(help="a new display name")] = None,
    email: Annotated[str | None, typer.Option(help="a new e-mail address")] = None,
) -> None:
    """Change an artist's name and/or e-mail address, as PATCH /v1/artists/{id} does (audited;
    an address another artist has is refused)."""
    from pydantic import ValidationError

    from service.api.schemas import ArtistUpdate
    from service.registry.store import Conflict, NotFound

    try:
        checked = ArtistUpdate.model_validate(
            {k: v for k, v in (("display_name", name), ("email", email)) if v is not None}
        )
    except ValidationError as exc:
        said = field_problems(exc).replace("display_name", "--name").replace("email", "--email")
        if name is None and email is None:
            said = "say --name, --email or both"
        raise fail(said) from None
    with runtime() as rt, rt.pool.connection() as conn:
        try:
            changed = rt.registry.update_artist_profile(
                conn,
                cli_actor(),
                artist,
                display_name=checked.display_name,
                email=str(checked.email) if checked.email is not None else None,
            )
        except (Conflict, NotFound) as exc:
            err_console.print(f"[red]error:[/red] {shown(exc)}")
            raise typer.Exit(1) from None
    console.print(f"artist {changed.id}: {shown(changed.display_name)} <{shown(changed.email)}>")


@app.command()
def register(
    paths: Annotated[list[Path], typer.Argument(help="image files and folders")],
    artist: Annotated[UUID, typer.Option(help="the artist's id")],
    title: Annotated[str | None, typer.Option()] = None,
    preferences: Annotated[str | None, typer.Option(help='JSON, e.g. {"img2img": "allow"}')] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="fingerprinting processes; default: usable CPUs")
    ] = None,
) -> None:
    """Register artworks from files and folders, with a progress bar and a summary."""
    from service.api.text import clean_title
    from service.cli.register import register_paths
    from service.registry.store import NotFound

    try:
        prefs = parse_preferences(preferences)
        title = clean_title(title)  # as the API takes it
    except (PreferencesError, ValueError) as exc:
        err_console.print(f"[red]error:[/red] {shown(exc)}")
        raise typer.Exit(2) from None
    missing = [p for p in paths if not p.exists()]
    if missing:
        err_console.print(f"[red]error:[/red] no such file: {shown(', '.join(map(str, missing)))}")
        raise typer.Exit(2)
    with runtime() as rt:
        try:
            out = register_paths(
                rt, cli_actor(), artist, paths, title=title, preferences=prefs, workers=workers
            )
        except NotFound as exc:
            err_console.print(f"[red]error:[/red] {shown(exc)}")
            raise typer.Exit(1) from None
    for path, reason in out.rejected:
        err_console.print(f"[yellow]rejected[/yellow] {shown(path)}: {shown(reason)}")
    for d in out.disputes:
        later, earlier = d["later"], d["earlier"]
        err_console.print(
            f"[yellow]disputed[/yellow] artwork {later['artwork_id']} copies artwork"
            f" {earlier['artwork_id']} of artist {earlier['artist_id']}, registered first:"
            f" dispute {d['id']} awaits a decision (chopmark disputes decide)"
        )
    console.print(
        f"created {len(out.created)}, duplicate {len(out.duplicates)}, rejected {len(out.rejected)}"
        + (f", disputed {len(out.disputes)}" if out.disputes else "")
    )
    if out.unchecked:
        err_console.print(
            "[yellow]warning:[/yellow] the new works were not checked against other artists'"
            f" works (the reason is above); run `chopmark disputes scan --artist {artist}`"
        )
    if out.interrupted:
        err_console.print(
            "interrupted: the files counted above are stored; run the same command again for"
            " the rest (what is stored already comes back as duplicate), then"
            f" `chopmark disputes scan --artist {artist}` to check them against other artists'"
            " works"
        )
        raise typer.Exit(INTERRUPTED_EXIT)
    if out.rejected and not (out.created or out.duplicates):
        raise typer.Exit(1)


@app.command()
def match(
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    as_json: Annotated[bool, typer.Option("--json", help="print the full response")] = False,
    user: Annotated[str | None, typer.Option(help="platform user, to report licences")] = None,
    picture: Annotated[
        Path | None,
        typer.Option(help="also write the evidence picture (PNG): the image beside each match"),
    ] = None,
) -> None:
    """Match an image against the registry, as POST /v1/matches does."""
    from service.api.routes.matches import match_upload, to_public
    from service.registry.picture import registry_match_picture
    from similarity import ImageRejected

    if picture is not None and not picture.parent.is_dir():  # before the match is audited
        raise fail(f"--picture: the folder {picture.parent} does not exist")
    if picture is not None and picture.is_dir():
        raise fail(f"--picture: {picture} is a folder; name the PNG file to write")
    data = read_named_file(image)
    with runtime(indexes=True) as rt:
        try:
            decoded, result = match_upload(
                rt, data, cli_actor(), user, "cli:match", colour=picture is not None
            )
        except ImageRejected as exc:
            err_console.print(f"[red]error:[/red] {shown(exc)}")
            raise typer.Exit(2) from None
        if picture is not None:
            write_named_file(picture, registry_match_picture(rt, decoded, result))
            err_console.print(f"evidence picture written to {shown(picture)}")
    public = to_public(result, with_licence=user is not None)
    if as_json:
        print(
            json.dumps(
                {
                    "matches": [m.model_dump(mode="json") for m in public],
                    "index": {"size": result.index_size, "built_to": result.built_to},
                },
                indent=2,
            )
        )
        return
    if not public:
        console.print(f"no match among {result.index_size} registered works")
        return
    table = Table("decision", "score")
    for column in ("artwork", "artist"):  # ids whole (folded when narrow), to be copied
        table.add_column(column, overflow="fold")
    for column in ("title", "img2img", "signals"):
        table.add_column(column)
    for m in public:
        fired = m.evidence.get("signals") or m.evidence.get("fired") or ""
        table.add_row(
            m.decision,
            f"{m.score:.3f}",
            str(m.artwork_id),
            str(m.artist_id),
            shown(m.title or ""),
            m.preferences.get("img2img", ""),
            ", ".join(fired) if isinstance(fired, list) else str(fired),
        )
    console.print(table)


@audit_app.command("verify")
def audit_verify(
    head: Annotated[
        Path | None,
        typer.Option(
            help="a tree head saved earlier by `chopmark audit head`: the log must still hold it",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Recompute the audit log's Merkle tree; exit 1 naming the first bad entry."""
    from service.audit.log import TreeHead, verify

    known = None
    if head is not None:
        try:
            known = TreeHead.from_json(json.loads(head.read_text()))
        except ValueError as exc:
            raise fail(f"{head}: {exc}") from None
    with runtime() as rt, rt.pool.connection() as conn:
        result = verify(conn, rt.audit.key, known)
    if result.ok:
        covered = f"; it holds the tree head of {known.size} given" if known else ""
        console.print(f"audit log intact: {result.size} entries, root {result.root.hex()}{covered}")
        return
    err_console.print(f"[red]audit log check failed:[/red] {shown(result.problem)}")
    raise typer.Exit(1)


@audit_app.command("head")
def audit_head() -> None:
    """Print the log's newest signed tree head (JSON). Keep it outside the database: a later
    `chopmark audit verify --head FILE` proves that nothing it covers was removed or changed."""
    from service.audit.log import latest_head

    with runtime() as rt, rt.pool.connection() as conn:
        head = latest_head(conn)
    print(json.dumps(head.to_json()))


if __name__ == "__main__":
    app()
