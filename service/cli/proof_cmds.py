"""``chopmark audit proof SEQ`` writes an audit entry's proof bundle (as GET
/v1/audit/entries/{seq}/proof does); ``chopmark audit check-proof FILE`` checks a bundle, an entry
proof or a consistency proof, with no database: what a legal reviewer runs on what they were
given."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from service.cli.common import (
    console,
    err_console,
    fail,
    read_named_file,
    runtime,
    shown,
    write_named_file,
)


def audit_proof(
    seq: Annotated[int, typer.Argument(min=0, help="the entry's sequence number")],
    tree_size: Annotated[
        int | None,
        typer.Option(min=1, help="prove against the head of this size (default: the newest)"),
    ] = None,
) -> None:
    """Print an entry's proof bundle (JSON): the entry, its inclusion proof, the signed tree
    head and the log's public key. `chopmark audit check-proof` checks it anywhere."""
    from service.audit.proofs import ProofError, entry_proof
    from service.audit.signing import public_key_pem

    with runtime() as rt, rt.pool.connection() as conn:
        try:
            proof = entry_proof(conn, seq, tree_size)
        except (LookupError, ProofError) as exc:
            raise fail(str(exc)) from None
        print(json.dumps(proof.to_json(public_key_pem(rt.audit.key)), indent=2))


def audit_check_proof(
    bundle: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, help="a report, an entry proof or a consistency proof"
        ),
    ],
    public_key: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="the log's public key (PEM), from a source you trust: GET /v1/audit/head",
        ),
    ] = None,
) -> None:
    """Check an audit report (JSON) or a proof bundle without chopmark's database; exit 1 saying
    what does not hold."""
    from service.audit.proofs import check_consistency, check_entry_proof, load_public_key
    from service.audit.report import REPORT_FORMAT, check_report

    try:
        data = json.loads(read_named_file(bundle))
    except ValueError as exc:
        raise fail(f"{bundle}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise fail(f"{bundle}: not a proof bundle")
    try:
        if public_key is not None:
            key = load_public_key(read_named_file(public_key))
        else:
            key = load_public_key(str(data.get("public_key", "")))
            err_console.print(
                "[yellow]warning:[/yellow] checked against the public key inside the bundle;"
                " pass --public-key with the log's key from a source you trust"
            )
    except ValueError as exc:
        raise fail(f"public key: {exc}") from None
    try:
        if data.get("format") == REPORT_FORMAT:
            entries = check_report(data, key)
            size = data["tree_head"]["size"]
            console.print(
                f"all {len(entries)} entries about {shown(data.get('subject'))} are in the signed"
                f" log of {size} entries"
            )
            return
        if "consistency_proof" in data:
            check_consistency(data, key)
            first, second = data["first"]["size"], data["second"]["size"]
            console.print(f"consistent: the log of {second} entries holds the log of {first}")
            return
        entry = check_entry_proof(data, key)
    except ValueError as exc:
        err_console.print(f"[red]proof does not hold:[/red] {shown(exc)}")
        raise typer.Exit(1) from None
    size = data["tree_head"]["size"]
    console.print(
        f"entry {entry['seq']} ({shown(entry.get('kind'))}, {shown(entry.get('subject'))},"
        f" {shown(entry.get('time'))}) is in the signed log of {size} entries"
    )


def audit_report(
    subject: Annotated[
        str, typer.Argument(help="moderation:ID, artwork:ID, generation:ID, or any subject")
    ],
    out: Annotated[
        Path, typer.Option("--out", dir_okay=False, help="FILE.pdf for people, FILE.json")
    ],
) -> None:
    """Write an audit report on a subject: its record and every audit entry about it, proved
    under the newest signed tree head (as GET /v1/audit/report gives it)."""
    from fastapi import HTTPException

    from service.api.routes.audit import make_report

    suffix = out.suffix.lower()
    if suffix not in (".pdf", ".json"):
        raise fail("--out: name a .pdf or a .json file")
    with runtime() as rt:
        try:
            data = make_report(rt, subject, "pdf" if suffix == ".pdf" else "json")
        except HTTPException as exc:
            raise fail(exc.detail) from None
    write_named_file(out, data)
    console.print(f"{out}: the report on {shown(subject)}")
