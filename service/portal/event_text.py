"""An artist's events said in a sentence each, for the portal's activity pages."""

from __future__ import annotations

from typing import Any

_OUTCOMES = {
    "blocked": "refused: you do not allow it",
    "licensed": "let through by a licence you granted",
    "allowed": "let through: you allow it",
    "noted": "noted",
}


def describe(kind: str, data: dict[str, Any]) -> str:
    """What happened, in words; the kind itself for kinds without a sentence of their own."""
    get = data.get
    if kind == "artist.created":
        return "Your artist account was created."
    if kind == "artist.preferences_changed":
        return f"Your default choices changed to {_choices(get('default_preferences'))}."
    if kind == "artist.profile_changed":
        said = []
        if "display_name" in data:
            said.append(f"Your name changed to “{get('display_name')}”.")
        if get("email_changed"):
            said.append("Your e-mail address changed.")
        return " ".join(said) or "Your account changed."
    if kind == "artwork.registered":
        title = get("title")
        return "Registered" + (f" as “{title}”." if title else ".")
    if kind == "artwork.withdrawn":
        return "Withdrawn: it no longer matches."
    if kind == "artwork.updated":
        if "preferences" in data:
            return f"Choices changed to {_choices(get('preferences'))}."
        return "Title or choices changed."
    if kind == "artwork.reinstated":
        return "Registered again after a withdrawal: it matches again."
    if kind == "artwork.disputed":
        if get("role") == "later":
            return (
                "Another artist registered a matching picture before you. An operator will decide"
                " whose work it is; until then both registrations stand, and reusing the picture"
                " needs the permission of both."
            )
        return (
            "Another artist registered a copy of this work after you. An operator will decide"
            " whose work it is; until then both registrations stand, and reusing the picture"
            " still needs your permission."
        )
    if kind == "artwork.dispute_decided":
        note = f" The operator noted: {get('note')}" if get("note") else ""
        withdrawn = get("withdrawn_artwork_id")
        if withdrawn is None:
            return "The dispute over this picture was settled: both registrations stand." + note
        if withdrawn == get("other_artwork_id"):
            return (
                "The dispute over this picture was decided for you: the other registration was"
                " withdrawn." + note
            )
        return (
            "The dispute over this picture was decided against this registration: it was"
            " withdrawn." + note
        )
    if kind == "license.granted":
        return f"Licence granted to {get('grantee')} for {', '.join(get('scopes') or [])}."
    if kind == "license.revoked":
        return f"Licence of {get('grantee') or 'a user'} revoked."
    if kind == "moderation.matched":
        licensed = " (the uploader holds your licence)" if get("licensed") else ""
        return (
            f"A platform checked an upload that copies this work (score {get('score')})"
            f"{licensed}: verdict {get('verdict')}."
        )
    if kind == "generation.input_matched":
        role = get("input_role") or "input"
        outcome = _OUTCOMES.get(str(get("outcome")), str(get("outcome")))
        return f"A generation used this work as its {role} image: {outcome}."
    if kind == "stamp.refused":
        return "A platform tried to stamp a copy of this work as its own output: refused."
    if kind == "match.decided":
        return f"Matched in a search: {get('decision') or 'decided'}."
    if kind == "claim.filed":
        return f"You filed a claim against output {get('output_id')}."
    if kind == "claim.decided":
        return f"Your claim was {get('decision') or 'decided'}."
    if kind == "adapter.claim_filed":
        return f"You claimed that the style adapter {get('adapter')} imitates your style."
    if kind == "adapter.claim_decided":
        blocked = ": the adapter is blocked" if get("decision") == "upheld" else ""
        return (
            f"Your claim against the style adapter {get('adapter')} was {get('decision')}{blocked}."
        )
    return kind


def _choices(prefs: Any) -> str:
    if not isinstance(prefs, dict) or not prefs:
        return "the defaults"
    return ", ".join(f"{use} {choice}" for use, choice in sorted(prefs.items()))
