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
