"""The Ed25519 key that signs audit-log tree heads, kept in the data folder (mode 0600)."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import psycopg.rows
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from service.atomic_files import unique_temp


class AuditKeyError(RuntimeError):
    """The audit log's signing key is missing or is not the one that signed the log."""


def audit_key_for_log(conn: psycopg.Connection, path: Path) -> Ed25519PrivateKey:
    """The key at ``path``, created only for an empty log. A log with entries needs the key that
    signed them: a new one would sign the next entries with another key and leave the log
    unverifiable even once the right key is restored, so the start is refused instead."""
    with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
        last = cur.execute(
            "SELECT seq, root_hash, signature FROM audit_log ORDER BY seq DESC LIMIT 1"
        ).fetchone()
    if last is None:
        return load_or_create_key(path)
    seq, root, signature = int(last[0]), bytes(last[1]), bytes(last[2])
    if not path.exists():
        raise AuditKeyError(
            f"the audit log holds {seq + 1} entr{'y' if seq == 0 else 'ies'} but its signing key"
            f" {path} is missing:"
            " restore it from backup (a new key could not sign this log)"
        )
    key = load_or_create_key(path)
    try:
        key.public_key().verify(signature, tree_head_message(seq + 1, root))
    except InvalidSignature:
        raise AuditKeyError(
            f"the audit key {path} did not sign this audit log: restore the key that did"
        ) from None
    return key


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """Read the key, or create it atomically so that concurrent first starts agree on one key."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        tmp = unique_temp(path)  # this call's own: threads of one process must not share it
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        try:
            os.link(tmp, path)  # fails if another process won the race; then use theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:  # empty, damaged, or protected by a password
        raise AuditKeyError(
            f"the audit log's signing key {path} cannot be read ({exc}); put back the key that"
            " signed the log"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditKeyError(f"{path} does not hold an Ed25519 private key")
    return key


def tree_head_message(size: int, root: bytes) -> bytes:
    return b"chopmark-audit-tree-head\x00" + size.to_bytes(8, "big") + root


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
