"""Signing credentials: an operator's PEM chain and key, or else the development CA in a folder.

With nothing configured, ``ensure_dev_credentials`` makes the development CA once (see
``provenance.dev_ca``) under an exclusive lock, so concurrent first runs agree; later runs reuse the
files and reissue only an expired or mismatched end-entity certificate. Loaded material is checked
before use: the key fits the certificate, the signer is not self-signed, is in its validity period
and carries an EKU c2pa accepts.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provenance.dev_ca import (
    DEV_COMMON_NAME,
    DEV_ORGANIZATION,
    DOCUMENT_SIGNING_EKU,
    LOCK_FILE,
    create_dev_files,
    dev_paths,
    exclusive_lock,
    name_attr,
    public_der,
    renew_leaf_if_stale,
)

# EKUs c2pa-rs 0.91 accepts for a signer under its default trust configuration (checked).
C2PA_DEFAULT_EKUS = frozenset(
    {
        ExtendedKeyUsageOID.EMAIL_PROTECTION,
        ExtendedKeyUsageOID.TIME_STAMPING,
        ExtendedKeyUsageOID.OCSP_SIGNING,
    }
)

Origin = Literal["development", "configured"]

_EKU_NAMES = {
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    DOCUMENT_SIGNING_EKU: "documentSigning",
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
}


class CredentialsError(Exception):
    """Credentials are missing, unreadable, or unusable for C2PA signing."""


@dataclass(frozen=True)
class Credentials:
    """A signing chain (end-entity first, no root), its private key, and the roots to trust."""

    chain_pem: str
    private_key_pem: bytes
    trust_anchors_pem: str
    alg: str
    origin: Origin
    files: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CertificateDescription:
    subject: str
    issuer: str
    serial_number: str
    not_before: dt.datetime
    not_after: dt.datetime
    sha256_fingerprint: str
    is_ca: bool
    extended_key_usages: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "serial_number": self.serial_number,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "sha256_fingerprint": self.sha256_fingerprint,
            "is_ca": self.is_ca,
            "extended_key_usages": list(self.extended_key_usages),
        }


@dataclass(frozen=True)
class CredentialsDescription:
    """What ``chopmark credentials show`` prints."""

    origin: Origin
    alg: str
    signer_subject: str
    signer_organization: str | None
    signer_common_name: str | None
    not_before: dt.datetime
    not_after: dt.datetime
    expired: bool
    chain: tuple[CertificateDescription, ...]
    trust_anchors: tuple[CertificateDescription, ...]
    files: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "alg": self.alg,
            "signer_subject": self.signer_subject,
            "signer_organization": self.signer_organization,
            "signer_common_name": self.signer_common_name,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "expired": self.expired,
            "chain": [c.to_dict() for c in self.chain],
            "trust_anchors": [c.to_dict() for c in self.trust_anchors],
            "files": dict(self.files),
        }


# ---------------------------------------------------------------------------------------------
# public entry points


def resolve_credentials(
    folder: Path,
    chain_path: Path | None = None,
    key_path: Path | None = None,
    trust_anchor_paths: Sequence[Path] = (),
    key_password: bytes | None = None,
) -> Credentials:
    """The operator's chain and key when both are named, else the development CA in ``folder``."""
    if (chain_path is None) != (key_path is None):
        raise CredentialsError("name both a certificate chain and its private key, or neither")
    if chain_path is not None and key_path is not None:
        return load_credentials(chain_path, key_path, trust_anchor_paths, key_password)
    creds = ensure_dev_credentials(folder)
    if trust_anchor_paths:
        extra = "".join(_read_text(p) for p in trust_anchor_paths)
        _parse_pem_certificates(extra, "trust anchors")
        creds = Credentials(
            chain_pem=creds.chain_pem,
            private_key_pem=creds.private_key_pem,
            trust_anchors_pem=creds.trust_anchors_pem + extra,
            alg=creds.alg,
            origin=creds.origin,
            files=creds.files,
        )
    return creds


def load_credentials(
    chain_path: Path,
    key_path: Path,
    trust_anchor_paths: Sequence[Path] = (),
    key_password: bytes | None = None,
) -> Credentials:
    """An operator's PEM chain (end-entity first) and key, checked to be usable for C2PA."""
    chain_pem = _read_text(chain_path)
    key_pem = _read_bytes(key_path)
    anchors_pem = "".join(_read_text(p) for p in trust_anchor_paths)
    if anchors_pem:
        _parse_pem_certificates(anchors_pem, "trust anchors")
    alg = check_signing_material(chain_pem, key_pem, key_password)
    files = {"chain": str(chain_path), "key": str(key_path)}
    files.update({f"trust_anchor_{i}": str(p) for i, p in enumerate(trust_anchor_paths)})
    return Credentials(chain_pem, key_pem, anchors_pem, alg, "configured", files)


def ensure_dev_credentials(
    folder: Path,
    organization: str = DEV_ORGANIZATION,
    common_name: str = DEV_COMMON_NAME,
    leaf_days: int = 365,
    root_days: int = 3650,
) -> Credentials:
    """Create the development CA and signer in ``folder`` once; reuse them afterwards."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with exclusive_lock(folder / LOCK_FILE):
        paths = dev_paths(folder)
        if not all(p.exists() for p in paths.values()):
            create_dev_files(folder, organization, common_name, leaf_days, root_days)
        else:
            renew_leaf_if_stale(folder, leaf_days)
        for name in ("root_key", "key"):
            if paths[name].stat().st_mode & 0o077:
                os.chmod(paths[name], 0o600)
        chain_pem = paths["chain"].read_text()
        key_pem = paths["key"].read_bytes()
        root_pem = paths["root"].read_text()
    alg = check_signing_material(chain_pem, key_pem)
    return Credentials(
        chain_pem, key_pem, root_pem, alg, "development", {k: str(v) for k, v in paths.items()}
    )


def describe_credentials(credentials: Credentials) -> CredentialsDescription:
    """Signer subject, chain, validity and SHA-256 fingerprints."""
    chain = _parse_pem_certificates(credentials.chain_pem, "certificate chain")
    anchors = (
        _parse_pem_certificates(credentials.trust_anchors_pem, "trust anchors")
        if credentials.trust_anchors_pem.strip()
        else []
    )
    leaf = chain[0]
    now = dt.datetime.now(dt.UTC)
    return CredentialsDescription(
        origin=credentials.origin,
        alg=credentials.alg,
        signer_subject=leaf.subject.rfc4514_string(),
        signer_organization=name_attr(leaf.subject, NameOID.ORGANIZATION_NAME),
        signer_common_name=name_attr(leaf.subject, NameOID.COMMON_NAME),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        expired=not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc,
        chain=tuple(_describe_certificate(c) for c in chain),
        trust_anchors=tuple(_describe_certificate(c) for c in anchors),
        files=dict(credentials.files),
    )


def check_signing_material(
    chain_pem: str, key_pem: bytes, key_password: bytes | None = None
) -> str:
    """Check a chain and key fit together and suit C2PA; return the signing algorithm name."""
    chain = _parse_pem_certificates(chain_pem, "certificate chain")
    key = load_private_key(key_pem, key_password)
    leaf = chain[0]
    if public_der(key.public_key()) != public_der(leaf.public_key()):
        raise CredentialsError("the private key does not belong to the first certificate")
    if leaf.subject == leaf.issuer and len(chain) == 1:
        raise CredentialsError("the signing certificate is self-signed; c2pa refuses those")
    now = dt.datetime.now(dt.UTC)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise CredentialsError(
            f"the signing certificate is valid only from {leaf.not_valid_before_utc} "
            f"to {leaf.not_valid_after_utc}"
        )
    try:
        ekus = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise CredentialsError("the signing certificate has no extended key usage") from exc
    if not C2PA_DEFAULT_EKUS.intersection(ekus):
        raise CredentialsError(
            "the signing certificate needs EKU emailProtection (c2pa's default trust "
            "configuration accepts emailProtection, timeStamping or OCSPSigning; it rejects "
            "documentSigning alone)"
        )
    return algorithm_for_key(key)


def load_private_key(key_pem: bytes, password: bytes | None = None) -> Any:
    try:
        return serialization.load_pem_private_key(key_pem, password=password)
    except (ValueError, TypeError) as exc:
        raise CredentialsError(f"the private key cannot be read: {exc}") from exc


def algorithm_for_key(key: Any) -> str:
    """C2PA algorithm name for a private key: es256/es384/es512, ps256 or ed25519."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        names = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name not in names:
            raise CredentialsError(f"unsupported elliptic curve {key.curve.name}")
        return names[key.curve.name]
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise CredentialsError(f"unsupported private key type {type(key).__name__}")


# ---------------------------------------------------------------------------------------------
# helpers


def _parse_pem_certificates(pem: str, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as exc:
        raise CredentialsError(f"the {what} is not valid PEM: {exc}") from exc
    if not certs:
        raise CredentialsError(f"the {what} holds no certificate")
    return certs


def _describe_certificate(cert: x509.Certificate) -> CertificateDescription:
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    try:
        ekus = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        eku_names = tuple(_EKU_NAMES.get(o, o.dotted_string) for o in ekus)
    except x509.ExtensionNotFound:
        eku_names = ()
    fingerprint = cert.fingerprint(hashes.SHA256()).hex().upper()
    return CertificateDescription(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial_number=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        sha256_fingerprint=":".join(fingerprint[i : i + 2] for i in range(0, 64, 2)),
        is_ca=is_ca,
        extended_key_usages=eku_names,
    )


def _read_text(path: Path) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise CredentialsError(f"cannot read {path}: {exc}") from exc


def _read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CredentialsError(f"cannot read {path}: {exc}") from exc
