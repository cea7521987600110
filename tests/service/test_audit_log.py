"""The audit log is append-only and `chopmark audit verify` names the first tampered entry."""

from __future__ import annotations

import pytest

from service.audit.log import verify


@pytest.fixture
def filled(runtime):
    with runtime.pool.connection() as conn:
        for i in range(12):
            with conn.transaction():
                runtime.audit.append(conn, "test.event", "tester", f"s:{i}", {"i": i})
    return runtime


def tamper(runtime, sql: str, *params) -> None:
    with runtime.pool.connection() as conn, conn.transaction():
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
        conn.execute(sql, params)
        conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update")


def check(runtime):
    with runtime.pool.connection() as conn:
        return verify(conn, runtime.audit.key)


def test_intact_log_verifies(filled):
    result = check(filled)
    assert result.ok and result.size == 12


def test_updates_and_deletes_are_refused_by_the_database(filled):
    import psycopg

    with filled.pool.connection() as conn, pytest.raises(psycopg.errors.RaiseException):
        conn.execute("UPDATE audit_log SET kind = 'x' WHERE seq = 1")
    with filled.pool.connection() as conn, pytest.raises(psycopg.errors.RaiseException):
        conn.execute("DELETE FROM audit_log WHERE seq = 1")


def test_changed_entry_is_named(filled):
    tamper(
        filled,
        "UPDATE audit_log SET entry = convert_to(replace(convert_from(entry, 'UTF8'),"
        " '\"i\":5', '\"i\":6'), 'UTF8') WHERE seq = 5",
    )
    r = check(filled)
    assert not r.ok and r.first_bad_seq == 5 and "changed" in r.problem


def test_changed_entry_with_recomputed_hashes_fails_the_signature(filled):
    from provenance.merkle import leaf_hash

    with filled.pool.connection() as conn:
        entry = bytes(conn.execute("SELECT entry FROM audit_log WHERE seq = 7").fetchone()["entry"])
    forged = entry.replace(b'"i":7', b'"i":70')
    tamper(
        filled,
        "UPDATE audit_log SET entry = %s, leaf_hash = %s WHERE seq = 7",
        forged,
        leaf_hash(forged),
    )
    r = check(filled)
    assert not r.ok and r.first_bad_seq == 7


def test_removed_entry_is_named(filled):
    tamper(filled, "DELETE FROM audit_log WHERE seq = 3")
    r = check(filled)
    assert not r.ok and r.first_bad_seq == 3 and "missing" in r.problem


def test_removed_tail_is_noticed(filled):
    tamper(filled, "DELETE FROM audit_log WHERE seq >= 10")
    r = check(filled)
    assert not r.ok and r.first_bad_seq == 10 and "removed" in r.problem


@pytest.mark.parametrize(
    ("column", "sql"),
    [
        ("actor", "UPDATE audit_log SET actor = 'someone else' WHERE seq = 5"),
        ("kind", "UPDATE audit_log SET kind = 'other.event' WHERE seq = 5"),
        ("subject", "UPDATE audit_log SET subject = 's:99' WHERE seq = 5"),
        ("subject", "UPDATE audit_log SET subject = NULL WHERE seq = 5"),
        (
            "created_at",
            "UPDATE audit_log SET created_at = created_at - interval '1 day' WHERE seq = 5",
        ),
    ],
)
def test_a_changed_column_is_named_though_the_hashed_entry_is_intact(filled, column, sql):
    """The columns queries read (who, what, which subject, when) must say what was hashed."""
    tamper(filled, sql)
    r = check(filled)
    assert not r.ok and r.first_bad_seq == 5 and f"its {column} column" in r.problem


def test_a_tail_cut_with_the_state_rewound_is_caught_by_a_kept_tree_head(filled):
    """Cutting the last entries and rewinding audit_state to match leaves a log that checks out
    on its own; the tree head kept from before does not."""
    from service.audit.log import latest_head

    with filled.pool.connection() as conn:
        kept = latest_head(conn)
        assert kept.size == 12 and verify(conn, filled.audit.key, kept).ok
        frontier = conn.execute("SELECT frontier FROM audit_state").fetchone()["frontier"]
    tamper(filled, "DELETE FROM audit_log WHERE seq >= 10")
    from provenance.merkle import Frontier

    with filled.pool.connection() as conn, conn.transaction():
        rebuilt = Frontier()
        for row in conn.execute("SELECT leaf_hash FROM audit_log ORDER BY seq"):
            rebuilt.append(bytes(row["leaf_hash"]))
        conn.execute(
            "UPDATE audit_state SET size = %s, frontier = %s", (rebuilt.size, rebuilt.nodes)
        )
    assert frontier is not None
    assert check(filled).ok  # on its own, the shortened log looks whole
    with filled.pool.connection() as conn:
        r = verify(conn, filled.audit.key, kept)
    assert not r.ok and "entries 10..11 were removed" in r.problem

    forged = type(kept)(kept.size, kept.root, bytes(64))
    with filled.pool.connection() as conn:
        r = verify(conn, filled.audit.key, forged)
    assert not r.ok and "not signed by this log's key" in r.problem


def test_reordered_entries_are_named(filled):
    tamper(
        filled,
        "UPDATE audit_log AS a SET entry = b.entry, leaf_hash = b.leaf_hash FROM audit_log AS b"
        " WHERE (a.seq, b.seq) IN ((4, 8), (8, 4))",
    )
    r = check(filled)
    assert not r.ok and r.first_bad_seq == 4 and "reordered" in r.problem


def test_concurrent_appends_keep_the_log_consistent(runtime):
    from concurrent.futures import ThreadPoolExecutor

    def work(n: int) -> None:
        with runtime.pool.connection() as conn:
            for i in range(10):
                with conn.transaction():
                    runtime.audit.append(conn, "t", f"w{n}", None, {"i": i})

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(4)))
    r = check(runtime)
    assert r.ok and r.size == 40


def test_a_check_beside_a_busy_service_sees_the_log_as_it_began(filled, monkeypatch):
    """Entries appended while the check runs are not taken for entries removed."""
    from service.audit import log

    real_rows = log._rows

    def rows_then_an_append(*args, **kwargs):
        yield from real_rows(*args, **kwargs)
        with filled.pool.connection() as other, other.transaction():  # the service writes
            filled.audit.append(other, "test.event", "service", None, {"late": True})

    monkeypatch.setattr(log, "_rows", rows_then_an_append)
    r = check(filled)
    assert r.ok and r.size == 12, r.problem
    monkeypatch.undo()
    assert check(filled).size == 13


def test_concurrent_first_starts_agree_on_one_audit_key(tmp_path):
    from cryptography.hazmat.primitives import serialization

    from service.audit.signing import load_or_create_key
    from tests.support import all_at_once

    path = tmp_path / "keys" / "audit.pem"
    keys, errors = all_at_once([lambda: load_or_create_key(path)] * 6)
    assert not errors, errors
    raw = {
        k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        for k in keys
    }
    assert len(raw) == 1, "every caller must sign with the one key on disk"
    assert (path.stat().st_mode & 0o777) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["audit.pem"], "no temp file left"


def test_a_log_with_entries_needs_the_key_that_signed_it(filled, settings):
    from service.audit.signing import AuditKeyError, load_or_create_key
    from service.runtime import Runtime

    key = settings.keys_dir / "audit-log.pem"
    kept = key.with_name("kept.pem")
    key.rename(kept)
    try:
        with pytest.raises(AuditKeyError, match="12 entries but its signing key"):
            Runtime.open(settings)
        assert not key.exists(), "no new key is made for a log that has entries"
        load_or_create_key(key)  # another key in its place
        with pytest.raises(AuditKeyError, match="did not sign this audit log"):
            Runtime.open(settings)
    finally:
        kept.replace(key)
    Runtime.open(settings).close()
    assert check(filled).ok
