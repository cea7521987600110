"""Signers: a small protocol so a KMS or HSM callback can replace the key file, the file-backed
default, and the adapter that hands any of them to c2pa-python as a callback signer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import c2pa
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from provenance.credentials import Credentials, check_signing_material, load_private_key

_C2PA_ALGS = {
    "es256": c2pa.C2paSigningAlg.ES256,
    "es384": c2pa.C2paSigningAlg.ES384,
    "es512": c2pa.C2paSigningAlg.ES512,
    "ps256": c2pa.C2paSigningAlg.PS256,
    "ps384": c2pa.C2paSigningAlg.PS384,
    "ps512": c2pa.C2paSigningAlg.PS512,
    "ed25519": c2pa.C2paSigningAlg.ED25519,
}
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "es256": hashes.SHA256,
    "es384": hashes.SHA384,
    "es512": hashes.SHA512,
    "ps256": hashes.SHA256,
    "ps384": hashes.SHA384,
    "ps512": hashes.SHA512,
}
# Bytes of each of r and s in a raw (IEEE P1363) ECDSA signature.
_EC_COORD_BYTES = {"es256": 32, "es384": 48, "es512": 66}


class SigningError(Exception):
    """Signing failed: the signer raised, or c2pa refused the credentials or the asset."""


@runtime_checkable
class Signer(Protocol):
    """Anything that signs C2PA claims: a key file, a KMS, an HSM.

    ``alg`` is a C2PA algorithm name (es256, es384, es512, ps256, ps384, ps512, ed25519);
    ``certificate_chain_pem`` holds the signing certificate first, then intermediates, no root;
    ``sign`` returns the signature over ``data`` (ECDSA as DER or raw r||s, both accepted).
    """

    alg: str
    certificate_chain_pem: str
    tsa_url: str | None

    def sign(self, data: bytes) -> bytes: ...


@dataclass
class FileSigner:
    """Signs with a private key held in memory, read from PEM."""

    certificate_chain_pem: str
    private_key: Any
    alg: str
    tsa_url: str | None = None

    @classmethod
    def from_pem(
        cls,
        chain_pem: str,
        key_pem: bytes,
        password: bytes | None = None,
        tsa_url: str | None = None,
    ) -> FileSigner:
        alg = check_signing_material(chain_pem, key_pem, password)
        return cls(chain_pem, load_private_key(key_pem, password), alg, tsa_url)

    @classmethod
    def from_credentials(cls, credentials: Credentials, tsa_url: str | None = None) -> FileSigner:
        return cls(
            credentials.chain_pem,
            load_private_key(credentials.private_key_pem),
            credentials.alg,
            tsa_url,
        )

    def sign(self, data: bytes) -> bytes:
        key = self.private_key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(data, ec.ECDSA(_HASHES[self.alg]()))
        if isinstance(key, rsa.RSAPrivateKey):
            digest = _HASHES[self.alg]()
            pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
            return key.sign(data, pss, digest)
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(data)
        raise SigningError(f"unsupported key type {type(key).__name__}")


@dataclass
class C2paSignerAdapter:
    """A c2pa-python callback signer around a :class:`Signer`; keeps the callback's exception.

    c2pa-python swallows exceptions raised inside the callback and reports a generic COSE error;
    ``error`` holds the original so callers can raise it instead. A c2pa signer is consumed by one
    signing call: build a fresh adapter for each.
    """

    signer: Signer
    native: c2pa.Signer = field(init=False)
    error: BaseException | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        alg = self.signer.alg.lower()
        if alg not in _C2PA_ALGS:
            raise SigningError(f"unsupported signing algorithm {self.signer.alg!r}")
        try:
            self.native = c2pa.Signer.from_callback(
                self._callback,
                _C2PA_ALGS[alg],
                self.signer.certificate_chain_pem,
                self.signer.tsa_url,
            )
        except c2pa.C2paError as exc:
            raise SigningError(f"c2pa refused the signer: {exc}") from exc

    def _callback(self, data: bytes) -> bytes:
        try:
            signature = self.signer.sign(data)
            return _raw_ecdsa(signature, self.signer.alg.lower())
        except BaseException as exc:
            self.error = exc
            raise

    def close(self) -> None:
        self.native.close()


def _raw_ecdsa(signature: bytes, alg: str) -> bytes:
    """COSE wants ECDSA as raw r||s; KMS and ``cryptography`` give DER. Others pass through."""
    size = _EC_COORD_BYTES.get(alg)
    if size is None or len(signature) == 2 * size:
        return signature
    r, s = decode_dss_signature(signature)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")
