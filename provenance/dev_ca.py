"""The development CA: a root and an end-entity ES256 signer made once in a folder.

c2pa refuses self-signed certificates, so the signer is issued by a local root (subject with an O
field, EKU emailProtection and documentSigning, digitalSignature key usage, SKI/AKI). Files are
written to a temporary name and renamed into place, under an exclusive lock held by the caller;
private keys get mode 0600.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

ROOT_CERT_FILE = "root-ca.pem"
ROOT_KEY_FILE = "root-ca.key"
CHAIN_FILE = "signer-chain.pem"
KEY_FILE = "signer.key"
LOCK_FILE = ".credentials.lock"

DOCUMENT_SIGNING_EKU = ObjectIdentifier("1.3.6.1.5.5.7.3.36")
DEV_ORGANIZATION = "chopmark (development)"
DEV_COMMON_NAME = "chopmark development signer"


def dev_paths(folder: Path) -> dict[str, Path]:
    return {
        "root": folder / ROOT_CERT_FILE,
        "root_key": folder / ROOT_KEY_FILE,
        "chain": folder / CHAIN_FILE,
        "key": folder / KEY_FILE,
    }


def create_dev_files(
    folder: Path, organization: str, common_name: str, leaf_days: int, root_days: int
) -> None:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _make_root(root_key, organization, root_days)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _make_leaf(leaf_key, root, root_key, organization, common_name, leaf_days)
    paths = dev_paths(folder)
    # The signer key is written last: its presence marks a complete set.
    _atomic_write(paths["root_key"], _key_pem(root_key), 0o600)
    _atomic_write(paths["root"], _cert_pem(root), 0o644)
    _atomic_write(paths["chain"], _cert_pem(leaf), 0o644)
    _atomic_write(paths["key"], _key_pem(leaf_key), 0o600)


def renew_leaf_if_stale(folder: Path, leaf_days: int) -> None:
    paths = dev_paths(folder)
    leaf = x509.load_pem_x509_certificate(paths["chain"].read_bytes())
    current_key = _load_key(paths["key"].read_bytes())
    fresh = leaf.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    matched = public_der(current_key.public_key()) == public_der(leaf.public_key())
    if fresh and matched:
        return
    root = x509.load_pem_x509_certificate(paths["root"].read_bytes())
    root_key = _load_key(paths["root_key"].read_bytes())
    organization = name_attr(leaf.subject, NameOID.ORGANIZATION_NAME) or DEV_ORGANIZATION
    common_name = name_attr(leaf.subject, NameOID.COMMON_NAME) or DEV_COMMON_NAME
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    new_leaf = _make_leaf(leaf_key, root, root_key, organization, common_name, leaf_days)
    # A crash between these two writes leaves a mismatched pair, which the next run reissues.
    _atomic_write(paths["key"], _key_pem(leaf_key), 0o600)
    _atomic_write(paths["chain"], _cert_pem(new_leaf), 0o644)


def _make_root(key: ec.EllipticCurvePrivateKey, organization: str, days: int) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "chopmark development root CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _make_leaf(
    key: ec.EllipticCurvePrivateKey,
    root: x509.Certificate,
    root_key: Any,
    organization: str,
    common_name: str,
    days: int,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    not_after = min(now + dt.timedelta(days=days), root.not_valid_after_utc)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ]
    )
    root_ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, DOCUMENT_SIGNING_EKU]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def name_attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    attrs = name.get_attributes_for_oid(oid)
    return str(attrs[0].value) if attrs else None


def public_der(public_key: Any) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_key(pem: bytes) -> Any:
    return serialization.load_pem_private_key(pem, password=None)
