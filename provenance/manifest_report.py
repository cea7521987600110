"""What a C2PA manifest store says, as a plain report: validation state, signer, actions,
ingredients, assertions, and the chopmark generation assertion.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from provenance.manifest import GENERATION_ASSERTION, SOFT_BINDING_ASSERTION

State = Literal["Trusted", "Valid", "Invalid", "Absent", "Error"]
TRAINING_MINING_LABELS = ("cawg.training-mining", "c2pa.training-mining")
ACTIONS_LABELS = ("c2pa.actions.v2", "c2pa.actions")
UNTRUSTED = "signingCredential.untrusted"
TRUSTED = "signingCredential.trusted"


@dataclass(frozen=True)
class SignerInfo:
    """``issuer`` is the organisation of the issuing CA, as c2pa reports it."""

    issuer: str | None
    common_name: str | None
    alg: str | None
    serial_number: str | None
    time: str | None = None


@dataclass(frozen=True)
class IngredientInfo:
    title: str | None
    format: str | None
    relationship: str | None
    active_manifest: str | None


@dataclass(frozen=True)
class SoftBinding:
    alg: str
    value: str


@dataclass(frozen=True)
class ManifestReport:
    """Outcome of reading an image's (or a detached store's) C2PA manifests.

    ``state``: Trusted (intact, signer chains to a trust anchor), Valid (intact, signer not
    trusted), Invalid (changed after signing, or the manifest is malformed), Absent (no C2PA data),
    Error (the asset itself cannot be read). ``asset_checked`` is False for a detached store read
    without its asset: the hard binding to the pixels was not checked.
    """

    state: State
    manifest_id: str | None = None
    title: str | None = None
    signer: SignerInfo | None = None
    claim_generator: tuple[dict[str, Any], ...] = ()
    actions: tuple[dict[str, Any], ...] = ()
    digital_source_type: str | None = None
    ingredients: tuple[IngredientInfo, ...] = ()
    assertion_labels: tuple[str, ...] = ()
    generation: dict[str, Any] | None = None
    soft_bindings: tuple[SoftBinding, ...] = ()
    training_mining: dict[str, str] | None = None
    failure_codes: tuple[str, ...] = ()
    informational_codes: tuple[str, ...] = ()
    success_codes: tuple[str, ...] = ()
    manifest_count: int = 0
    asset_checked: bool = True
    error: str | None = None
    raw: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def intact(self) -> bool:
        return self.state in ("Trusted", "Valid")

    def to_dict(self, include_raw: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not include_raw:
            data.pop("raw")
        return data


def absent() -> ManifestReport:
    return ManifestReport(state="Absent")


def failed(state: State, message: str) -> ManifestReport:
    return ManifestReport(state=state, error=message)


def report_from_store_json(store_json: str, asset_checked: bool = True) -> ManifestReport:
    """Build the report from c2pa's ``Reader.json()``.

    Without the asset (``asset_checked=False``) the data-hash mismatch c2pa reports is expected and
    left out of the state; every other failure still makes the store Invalid.
    """
    store = json.loads(store_json)
    active_id = store.get("active_manifest")
    manifests = store.get("manifests") or {}
    manifest = manifests.get(active_id) if active_id else None
    results = store.get("validation_results") or {}
    active_results = results.get("activeManifest") or {}
    failures = [s.get("code", "") for s in active_results.get("failure", [])]
    for delta in results.get("ingredientDeltas") or []:
        delta_failures = (delta.get("validationDeltas") or {}).get("failure", [])
        failures.extend(f"ingredient:{s.get('code', '')}" for s in delta_failures)
    successes = [s.get("code", "") for s in active_results.get("success", [])]
    informational = [s.get("code", "") for s in active_results.get("informational", [])]

    state = _state(store.get("validation_state"), failures, successes, asset_checked)
    if not asset_checked:
        failures = [f for f in failures if f != "assertion.dataHash.mismatch"]
    if manifest is None:
        return ManifestReport(
            state="Invalid",
            failure_codes=tuple(failures),
            manifest_count=len(manifests),
            asset_checked=asset_checked,
            error="the store names no active manifest",
            raw=store,
        )

    assertions = manifest.get("assertions") or []
    by_label = {a.get("label"): a.get("data") for a in assertions if isinstance(a, dict)}
    actions = _actions(by_label)
    signature = manifest.get("signature_info") or {}
    return ManifestReport(
        state=state,
        manifest_id=active_id,
        title=manifest.get("title"),
        signer=SignerInfo(
            issuer=signature.get("issuer"),
            common_name=signature.get("common_name"),
            alg=signature.get("alg"),
            serial_number=signature.get("cert_serial_number"),
            time=signature.get("time"),
        )
        if signature
        else None,
        claim_generator=tuple(manifest.get("claim_generator_info") or ()),
        actions=tuple(actions),
        digital_source_type=_digital_source_type(actions),
        ingredients=tuple(
            IngredientInfo(
                title=i.get("title"),
                format=i.get("format"),
                relationship=i.get("relationship"),
                active_manifest=i.get("active_manifest"),
            )
            for i in manifest.get("ingredients") or []
        ),
        assertion_labels=tuple(str(a.get("label")) for a in assertions if isinstance(a, dict)),
        generation=by_label.get(GENERATION_ASSERTION),
        soft_bindings=_soft_bindings(by_label.get(SOFT_BINDING_ASSERTION)),
        training_mining=_training_mining(by_label),
        failure_codes=tuple(failures),
        informational_codes=tuple(informational),
        success_codes=tuple(successes),
        manifest_count=len(manifests),
        asset_checked=asset_checked,
        raw=store,
    )


def _state(
    c2pa_state: str | None, failures: list[str], successes: list[str], asset_checked: bool
) -> State:
    if asset_checked or c2pa_state != "Invalid":
        if c2pa_state in ("Trusted", "Valid", "Invalid"):
            return c2pa_state  # type: ignore[return-value]
        return "Invalid"
    ignorable = {"assertion.dataHash.mismatch", UNTRUSTED}
    if any(f not in ignorable for f in failures):
        return "Invalid"
    return "Trusted" if TRUSTED in successes else "Valid"


def _actions(by_label: dict[Any, Any]) -> list[dict[str, Any]]:
    for label in ACTIONS_LABELS:
        data = by_label.get(label)
        if isinstance(data, dict) and isinstance(data.get("actions"), list):
            return [a for a in data["actions"] if isinstance(a, dict)]
    return []


def _digital_source_type(actions: list[dict[str, Any]]) -> str | None:
    for action in actions:
        if action.get("action") in ("c2pa.created", "c2pa.opened") and action.get(
            "digitalSourceType"
        ):
            return str(action["digitalSourceType"])
    for action in actions:
        if action.get("digitalSourceType"):
            return str(action["digitalSourceType"])
    return None


def _soft_bindings(data: Any) -> tuple[SoftBinding, ...]:
    if not isinstance(data, dict) or not data.get("alg"):
        return ()
    blocks = data.get("blocks") or []
    return tuple(
        SoftBinding(str(data["alg"]), str(b["value"]))
        for b in blocks
        if isinstance(b, dict) and "value" in b
    )


def _training_mining(by_label: dict[Any, Any]) -> dict[str, str] | None:
    for label in TRAINING_MINING_LABELS:
        data = by_label.get(label)
        if isinstance(data, dict) and isinstance(data.get("entries"), dict):
            return {
                str(k): str(v.get("use"))
                for k, v in data["entries"].items()
                if isinstance(v, dict) and v.get("use")
            }
    return None
