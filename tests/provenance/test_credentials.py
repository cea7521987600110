import datetime as dt
import multiprocessing
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provenance.credentials import (
    CredentialsError,
    describe_credentials,
    ensure_dev_credentials,
    load_credentials,
    resolve_credentials,
)
from provenance.dev_ca import (
    CHAIN_FILE,
    DOCUMENT_SIGNING_EKU,
    KEY_FILE,
    ROOT_CERT_FILE,
    ROOT_KEY_FILE,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_run_creates_a_ca_and_a_signer(tmp_path: Path) -> None:
    creds = ensure_dev_credentials(tmp_path)
    assert _mode(tmp_path / KEY_FILE) == 0o600
    assert _mode(tmp_path / ROOT_KEY_FILE) == 0o600

    chain = x509.load_pem_x509_certificates(creds.chain_pem.encode())
    root = x509.load_pem_x509_certificate((tmp_path / ROOT_CERT_FILE).read_bytes())
    assert len(chain) == 1, "the chain file holds the signer only, not the root"
    leaf = chain[0]
    assert leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert leaf.issuer == root.subject and leaf.subject != root.subject
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ekus = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in ekus
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert leaf.not_valid_after_utc > leaf.not_valid_before_utc
    root.public_key().verify(
        leaf.signature, leaf.tbs_certificate_bytes, ec.ECDSA(leaf.signature_hash_algorithm)
    )
    assert creds.alg == "es256" and creds.origin == "development"
    assert creds.trust_anchors_pem == (tmp_path / ROOT_CERT_FILE).read_text()


def test_later_runs_reuse_the_files(tmp_path: Path) -> None:
    first = ensure_dev_credentials(tmp_path)
    mtimes = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    second = ensure_dev_credentials(tmp_path)
    assert second == first
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == mtimes


def test_concurrent_first_runs_agree(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.map(ensure_dev_credentials, [folder] * 4)
    assert len({r.chain_pem for r in results}) == 1
    assert len({r.private_key_pem for r in results}) == 1
    assert ensure_dev_credentials(folder).chain_pem == results[0].chain_pem
    assert not list(folder.glob("*.tmp"))


def test_a_mismatched_key_is_reissued_under_the_same_root(tmp_path: Path) -> None:
    first = ensure_dev_credentials(tmp_path)
    stray = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / KEY_FILE).write_bytes(stray)
    again = ensure_dev_credentials(tmp_path)
    assert again.chain_pem != first.chain_pem
    assert again.trust_anchors_pem == first.trust_anchors_pem
    assert _mode(tmp_path / KEY_FILE) == 0o600


def test_describe_gives_subject_validity_and_fingerprints(tmp_path: Path) -> None:
    creds = ensure_dev_credentials(tmp_path)
    info = describe_credentials(creds)
    leaf = x509.load_pem_x509_certificate(creds.chain_pem.encode())
    expected = leaf.fingerprint(hashes.SHA256()).hex().upper()
    assert info.chain[0].sha256_fingerprint.replace(":", "") == expected
    assert info.signer_organization == "chopmark (development)"
    assert "CN=chopmark development signer" in info.signer_subject
    assert not info.expired and info.not_before < info.not_after
    assert len(info.trust_anchors) == 1 and info.trust_anchors[0].is_ca
    assert "emailProtection" in info.chain[0].extended_key_usages
    assert info.to_dict()["chain"][0]["sha256_fingerprint"] == info.chain[0].sha256_fingerprint


def test_operator_chain_and_key_are_loaded_and_checked(tmp_path: Path) -> None:
    ensure_dev_credentials(tmp_path / "ca")
    chain, key, root = (tmp_path / "ca" / n for n in (CHAIN_FILE, KEY_FILE, ROOT_CERT_FILE))
    creds = resolve_credentials(tmp_path / "unused", chain, key, [root])
    assert creds.origin == "configured"
    assert creds.trust_anchors_pem == root.read_text()
    assert not (tmp_path / "unused").exists()

    with pytest.raises(CredentialsError, match="both"):
        resolve_credentials(tmp_path / "unused", chain_path=chain)
    other = tmp_path / "other"
    ensure_dev_credentials(other)
    with pytest.raises(CredentialsError, match="does not belong"):
        load_credentials(chain, other / KEY_FILE)
    with pytest.raises(CredentialsError, match="self-signed"):
        load_credentials(root, tmp_path / "ca" / ROOT_KEY_FILE)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(CredentialsError):
        load_credentials(garbage, key)


def test_a_signer_without_an_eku_c2pa_accepts_is_refused(tmp_path: Path) -> None:
    ensure_dev_credentials(tmp_path / "ca")
    root = x509.load_pem_x509_certificate((tmp_path / "ca" / ROOT_CERT_FILE).read_bytes())
    root_key = serialization.load_pem_private_key(
        (tmp_path / "ca" / ROOT_KEY_FILE).read_bytes(), None
    )
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "doc only")]))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([DOCUMENT_SIGNING_EKU]), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    chain = tmp_path / "chain.pem"
    chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(CredentialsError, match="emailProtection"):
        load_credentials(chain, key_file)
