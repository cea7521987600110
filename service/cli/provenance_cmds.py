"""``chopmark credentials show`` and ``chopmark verify IMAGE``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from service.cli.common import (
    console,
    err_console,
    fail,
    missing_paths,
    read_named_file,
    runtime,
    settings_or_exit,
    shown,
)

credentials_app = typer.Typer(help="C2PA signing credentials.", no_args_is_help=True)


@credentials_app.command("show")
def credentials_show(
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The signer, its chain, validity and fingerprints (creating development ones if none)."""
    from provenance.credentials import CredentialsError, describe_credentials
    from service.stamping.credentials import load_signing

    settings = settings_or_exit()
    missing = missing_paths(settings)
    if missing:
        raise fail(missing[0])
    try:
        desc = describe_credentials(load_signing(settings).credentials)
    except CredentialsError as exc:
        raise fail(exc) from None
    if as_json:
        print(json.dumps(desc.to_dict(), indent=2))
        return
    console.print(
        f"[bold]signer[/bold]  {shown(desc.signer_subject)}  ({desc.alg}, {desc.origin})"
    )
    console.print(
        f"valid   {desc.not_before:%Y-%m-%d} .. {desc.not_after:%Y-%m-%d}"
        + ("  [red]EXPIRED[/red]" if desc.expired else "")
    )
    table = Table("role", "subject", "issuer", "not after", "SHA-256 fingerprint")
    for role, certs in (("chain", desc.chain), ("trust anchor", desc.trust_anchors)):
        for c in certs:
            d = c.to_dict()
            table.add_row(
                role,
                shown(d.get("subject", "")),
                shown(d.get("issuer", "")),
                str(d.get("not_after", ""))[:10],
                d.get("sha256_fingerprint", ""),
            )
    console.print(table)
    for name, path in desc.files.items():
        console.print(f"{name}: {shown(path)}")


def verify_image(data: bytes) -> dict[str, Any]:
    """Manifest, watermark, and the record the image resolves to."""
    from provenance.c2pa_io import read_manifest
    from provenance.containers import UnsupportedFormat
    from provenance.labels import read_labels
    from service.stamping.own_manifest import own_manifest_output
    from service.stamping.resolve import resolve_image
    from similarity import decode_for_matching

    with runtime(indexes=True) as rt:
        report = read_manifest(data, trust_anchors_pem=rt.signing.trust_anchors_pem)
        signed_for = own_manifest_output(rt, data, report)
        decoded = decode_for_matching(data, rt.decode_limits)
        res = resolve_image(rt, decoded)
    try:
        labels = read_labels(data)
        labels_out = {
            "aigc": labels.aigc,
            "digital_source_type": labels.digital_source_type,
            "not_read": None,
        }
    except Exception as exc:  # a container we do not read labels from (GIF, BMP, TIFF), or damage
        reason = (
            "labels are read from PNG, JPEG and WebP only"
            if isinstance(exc, UnsupportedFormat)
            else f"{type(exc).__name__}: {exc}"
        )
        labels_out = {"aigc": None, "digital_source_type": None, "not_read": reason}
    best = res.best
    return {
        "manifest": {
            "state": report.state,
            "manifest_id": report.manifest_id,
            "signer": report.signer.__dict__ if report.signer else None,
            "digital_source_type": report.digital_source_type,
            "actions": [a.get("action") for a in report.actions],
            "ingredients": len(report.ingredients),
            "error": report.error,
            "ours": signed_for is not None,
            "output_id": signed_for,
        },
        "watermark": {
            "present": res.watermark.present,
            "value": f"{res.watermark.payload:012x}" if res.watermark.payload is not None else None,
            "confidence": round(res.watermark.confidence, 3),
            "names_record": str(res.watermark_record.id) if res.watermark_record else None,
            "consistent_with_pixels": res.watermark_consistent,
            "forged": res.forged_watermark,
            "not_read": res.watermark.details.get("not_read"),
        },
        "labels": labels_out,
        "record": None
        if best is None
        else {
            "id": str(best.record.id),
            "method": best.method,
            "score": round(best.score, 3),
            "manifest_id": best.record.manifest_id,
            "kind": best.record.kind,
            "origin": best.record.origin,
            "platform_user": best.record.platform_user,
            "created_at": best.record.created_at.isoformat(),
            "model": best.record.facts.get("model"),
            "equally": [str(o.record.id) for o in res.equally],
        },
    }


def verify(
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Manifest state and summary, watermark, and the record the image resolves to, even when its
    metadata was stripped."""
    from similarity import ImageRejected

    try:
        out = verify_image(read_named_file(image))
    except ImageRejected as exc:
        err_console.print(f"[red]error:[/red] {shown(exc)}")
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(out, indent=2, default=str))
        return
    m, w, r = out["manifest"], out["watermark"], out["record"]
    console.print(
        f"[bold]C2PA manifest[/bold]: {m['state']}"
        + (
            f" ({shown(m['manifest_id'])}, {shown(m['digital_source_type'])})"
            if m["manifest_id"]
            else ""
        )
        + (f" — {shown(m['error'])}" if m["error"] else "")
        + (f", signed by us for output {m['output_id']}" if m["ours"] else "")
        + (
            ", [red]not signed by us[/red] (another signer's manifest under our label)"
            if m["state"] in ("Trusted", "Valid")
            and not m["ours"]
            and r
            and m["manifest_id"] == r["manifest_id"]
            else ""
        )
    )
    if w["present"]:
        note = (
            " [red]but it does not belong to these pixels (forged or pasted)[/red]"
            if w["forged"]
            else ""
        )
        console.print(f"[bold]watermark[/bold]: present, value {w['value']}{note}")
    elif w["not_read"]:
        console.print(f"[bold]watermark[/bold]: not read ({shown(w['not_read'])})")
    else:
        console.print("[bold]watermark[/bold]: absent")
    if r:
        console.print(
            f"[bold]record[/bold]: {r['id']} by {r['method']} (score {r['score']}),"
            f" {r['kind']} {r['origin']}, manifest {shown(r['manifest_id'])},"
            f" made {r['created_at'][:19]}"
            + (
                f"; [red]matches as well[/red]: {', '.join(r['equally'])} (the same picture"
                " made more than once; which one this is cannot be told)"
                if r["equally"]
                else ""
            )
        )
    else:
        console.print("[bold]record[/bold]: none of our outputs")
