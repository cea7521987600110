"""Signing material for the process: the operator's chain and key, or the development CA."""

from __future__ import annotations

from dataclasses import dataclass

from provenance.credentials import Credentials, resolve_credentials
from provenance.signer import FileSigner, Signer
from service.settings import Settings


@dataclass(frozen=True)
class SigningSetup:
    credentials: Credentials
    signer: Signer

    @property
    def trust_anchors_pem(self) -> str:
        return self.credentials.trust_anchors_pem


def load_signing(settings: Settings) -> SigningSetup:
    creds = resolve_credentials(
        settings.signing_dir,
        settings.signing_chain,
        settings.signing_key,
        tuple(settings.trust_anchors),
    )
    return SigningSetup(creds, FileSigner.from_credentials(creds))


def untrusted_signing(setup: SigningSetup) -> str | None:
    """Why manifests signed with this setup would not validate as Trusted here, or None.

    chopmark recognises a manifest as its own only when it is Trusted, so an operator's chain
    whose root is not among the trust anchors would make every output of ours read as one that
    lost its manifest. Signs a small picture once, at start, to find out. The development CA
    is trusted here by construction: None without asking."""
    if setup.credentials.origin != "configured":
        return None
    import io

    from PIL import Image

    from provenance.c2pa_io import SignOptions, read_manifest, sign_image
    from provenance.manifest import GenerationFacts

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 120, 150)).save(buf, "PNG")
    facts = GenerationFacts(
        generation_id="start-up-check", kind="external", model_name="none", width=64, height=64
    )
    signed = sign_image(buf.getvalue(), "png", facts, setup.signer, SignOptions(None))
    report = read_manifest(signed.data, "png", setup.trust_anchors_pem)
    if report.state == "Trusted":
        return None
    return (
        f"a manifest signed with CHOPMARK_SIGNING_CHAIN validates as {report.state}, not Trusted"
        f" ({', '.join(report.failure_codes) or report.error or 'no reason given'}): name the"
        " root certificate of that chain in CHOPMARK_TRUST_ANCHORS"
    )
