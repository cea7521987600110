"""Registry changes made at the same moment: none fails, none is lost, and the audit log tells
them in an order that chains. Preference changes that clear a choice, and malformed ones."""

from __future__ import annotations

import itertools
import json

from tests.service.test_registry_api import new_artist, upload
from tests.support import all_at_once, auth, encode, photo_like


def _entries(runtime, kind: str, subject: str) -> list[dict]:
    with runtime.pool.connection() as conn:
        rows = conn.execute(
            "SELECT entry FROM audit_log WHERE kind = %s AND subject = %s ORDER BY seq",
            (kind, subject),
        ).fetchall()
    return [json.loads(bytes(r["entry"]))["data"] for r in rows]


def test_the_same_bytes_registered_at_once_make_one_artwork(client, runtime, make_key):
    h = auth(make_key("registry"))
    artist = new_artist(client, h)
    for trial in range(3):
        data = encode(photo_like(900 + trial))
        answers, errors = all_at_once([lambda d=data: upload(client, h, artist["id"], d)] * 6)
        assert not errors, errors
        assert sorted(r.status_code for r in answers) == [201] * 6, [r.text for r in answers]
        works = [r.json()["artworks"][0] for r in answers]
        assert len({w["id"] for w in works}) == 1
        assert sorted(w["duplicate"] for w in works) == [False] + [True] * 5
        assert len(_entries(runtime, "artwork.registered", f"artwork:{works[0]['id']}")) == 1


def test_one_address_registered_at_once_makes_one_artist(client, make_key):
    h = auth(make_key("registry"))
    for trial in range(3):
        body = {"display_name": "Twin", "email": f"twin{trial}@example.org"}
        answers, errors = all_at_once(
            [lambda b=body: client.post("/v1/artists", json=b, headers=h)] * 8
        )
        assert not errors, errors
        assert sorted(r.status_code for r in answers) == [201] + [409] * 7, [
            r.text for r in answers
        ]


def test_concurrent_preference_changes_are_all_kept_and_chain_in_the_log(
    client, runtime, make_key, photo
):
    h = auth(make_key("registry"))
    artist = new_artist(client, h)
    work = upload(client, h, artist["id"], photo(950)).json()["artworks"][0]
    url = f"/v1/artworks/{work['id']}"
    deny = {"img2img": "deny", "style": "deny", "training": "deny"}
    for _ in range(3):
        assert client.patch(url, json={"preferences": deny}, headers=h).status_code == 200
        changes = [{"img2img": "allow"}, {"style": "allow"}, {"training": "allow"}]
        answers, errors = all_at_once(
            [lambda c=c: client.patch(url, json={"preferences": c}, headers=h) for c in changes]
        )
        assert not errors and all(r.status_code == 200 for r in answers)
        now = client.get(url, headers=h).json()["preferences"]
        assert now == {"img2img": "allow", "style": "allow", "training": "allow"}
    log = _entries(runtime, "artwork.updated", f"artwork:{work['id']}")
    for earlier, later in itertools.pairwise(log):
        assert later["before"]["preferences"] == earlier["preferences"]

    # withdrawn at once by several callers: one withdrawal
    answers, _ = all_at_once([lambda: client.delete(url, headers=h)] * 4)
    assert {r.json()["withdrawn_at"] for r in answers} == {answers[0].json()["withdrawn_at"]}
    assert len(_entries(runtime, "artwork.withdrawn", f"artwork:{work['id']}")) == 1


def test_registering_a_withdrawn_work_again_takes_the_new_title_and_preferences(
    client, runtime, make_key, photo
):
    h = auth(make_key("registry"))
    artist = new_artist(client, h)
    data = photo(960)
    first = upload(client, h, artist["id"], data, title="Old", preferences='{"style": "allow"}')
    work = first.json()["artworks"][0]
    assert client.delete(f"/v1/artworks/{work['id']}", headers=h).status_code == 200
    again = upload(client, h, artist["id"], data, title="New", preferences='{"img2img": "deny"}')
    back = again.json()["artworks"][0]
    assert back["id"] == work["id"] and back["status"] == "active"
    assert back["title"] == "New"
    assert back["preferences"] == {"style": "allow", "img2img": "deny"}
    (entry,) = _entries(runtime, "artwork.reinstated", f"artwork:{work['id']}")
    assert entry["before"]["title"] == "Old" and entry["title"] == "New"


def test_a_null_preference_falls_back_to_the_next_level(client, runtime, make_key, photo):
    h = auth(make_key("registry"))
    artist = new_artist(client, h, default_preferences={"style": "allow", "img2img": "allow"})
    work = upload(client, h, artist["id"], photo(970), preferences='{"style": "deny"}').json()
    url = f"/v1/artworks/{work['artworks'][0]['id']}"
    r = client.patch(url, json={"preferences": {"style": None}}, headers=h)
    assert r.status_code == 200 and r.json()["preferences"] == {}
    assert r.json()["effective_preferences"]["style"] == "allow"  # the artist's default again

    a_url = f"/v1/artists/{artist['id']}"
    r = client.patch(a_url, json={"default_preferences": {"img2img": None}}, headers=h)
    assert r.status_code == 200 and r.json()["default_preferences"] == {"style": "allow"}
    assert client.get(url, headers=h).json()["effective_preferences"]["img2img"] == "deny"
    (changed,) = _entries(runtime, "artist.preferences_changed", f"artist:{artist['id']}")
    assert changed["before"]["default_preferences"]["img2img"] == "allow"
    # the same change again changes nothing and is not audited twice
    again = client.patch(a_url, json={"default_preferences": {"img2img": None}}, headers=h)
    assert again.status_code == 200
    assert len(_entries(runtime, "artist.preferences_changed", f"artist:{artist['id']}")) == 1


def test_preferences_nested_too_deeply_are_refused_with_a_message(client, make_key, photo):
    h = auth(make_key("registry"))
    artist = new_artist(client, h)
    deep = "[" * 100_000 + "]" * 100_000
    r = upload(client, h, artist["id"], photo(971), preferences=deep)
    assert r.status_code == 422 and "nested too deeply" in r.text


def test_changes_to_an_artist_and_its_works_at_once_never_deadlock(client, make_key, photo):
    """Every writer takes the audit lock before the rows it changes: an artist's defaults
    changed while works are registered for that artist, and works changed and withdrawn while
    they are registered again, all succeed (they were answered 503 when a deadlock was lost)."""
    h = auth(make_key("registry"))
    artist = new_artist(client, h)
    url = f"/v1/artists/{artist['id']}"
    work = upload(client, h, artist["id"], photo(990)).json()["artworks"][0]
    w_url = f"/v1/artworks/{work['id']}"
    for rnd in range(4):
        choice = "allow" if rnd % 2 else "deny"
        calls = [
            lambda c=choice: client.patch(
                url, json={"default_preferences": {"style": c}}, headers=h
            ),
            lambda r=rnd: upload(client, h, artist["id"], photo(991 + 2 * r)),
            lambda r=rnd: upload(client, h, artist["id"], photo(992 + 2 * r)),
            lambda c=choice: client.patch(w_url, json={"preferences": {"training": c}}, headers=h),
            lambda: client.delete(w_url, headers=h),
            lambda: upload(client, h, artist["id"], photo(990)),
        ]
        answers, errors = all_at_once(calls)
        assert not errors, errors
        assert all(r.status_code in (200, 201) for r in answers), [r.text for r in answers]


def test_a_writer_waits_for_the_audit_lock_before_locking_its_rows(
    runtime, client, make_key, photo
):
    """The lock order that rules out deadlocks, checked directly: while another transaction
    holds the audit lock, a preference change waits for it holding no row lock, so a foreign key
    check on the artist or the work (a registration, a generation's record) still gets through."""
    import threading
    import time

    import psycopg

    h = auth(make_key("registry"))
    artist = new_artist(client, h)
    work = upload(client, h, artist["id"], photo(995)).json()["artworks"][0]
    store = runtime.registry
    changes = [
        lambda conn: store.update_artist_defaults(conn, "t", artist["id"], {"style": "allow"}),
        lambda conn: store.update_artwork(conn, "t", work["id"], preferences={"style": "deny"}),
        lambda conn: store.withdraw_artwork(conn, "t", work["id"]),
    ]
    for change in changes:
        with runtime.pool.connection() as holder:
            holder.execute("SELECT size FROM audit_state WHERE id = 1 FOR UPDATE")
            worker = threading.Thread(target=lambda c=change: _in_own_connection(runtime, c))
            worker.start()
            time.sleep(0.5)  # the change is now waiting for the audit lock
            with runtime.pool.connection() as probe:
                for table, row_id in (("artists", artist["id"]), ("artworks", work["id"])):
                    try:
                        probe.execute(
                            f"SELECT 1 FROM {table} WHERE id = %s FOR KEY SHARE NOWAIT", (row_id,)
                        )
                    except psycopg.errors.LockNotAvailable:
                        raise AssertionError(
                            f"a {table} row was locked before the audit lock"
                        ) from None
                    probe.rollback()
            holder.rollback()
        worker.join(30)


def _in_own_connection(runtime, change) -> None:
    with runtime.pool.connection() as conn:
        change(conn)


def test_a_real_deadlock_answers_409_retry_and_keeps_nothing(runtime, client, make_key, photo):
    """A transaction outside the service that takes the same locks in the other order makes a
    real deadlock; PostgreSQL ends the request's transaction: 409 with Retry-After, the title
    unchanged and nothing logged, and the same request sent again goes through."""
    import threading
    import time

    h = auth(make_key("registry"))
    artist = new_artist(client, h)
    work = upload(client, h, artist["id"], photo(996)).json()["artworks"][0]
    answers: list = []

    def patch() -> None:
        answers.append(client.patch(f"/v1/artworks/{work['id']}", json={"title": "X"}, headers=h))

    with runtime.pool.connection() as other:
        other.execute("SET LOCAL deadlock_timeout = '20s'")  # the request's backend checks first
        other.execute("SELECT 1 FROM artworks WHERE id = %s FOR UPDATE", (work["id"],))
        before = other.execute("SELECT size FROM audit_state WHERE id = 1").fetchone()["size"]
        request = threading.Thread(target=patch)
        request.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the request holds the audit lock, waits for the row
            other.execute("SELECT pg_stat_clear_snapshot()")  # fresh figures in a transaction
            waiting = other.execute(
                "SELECT count(*) AS n FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND query ILIKE '%%artworks%%'"
            ).fetchone()["n"]
            if waiting:
                break
            time.sleep(0.02)
        assert waiting, "the request never waited for the artwork row"
        other.execute("SELECT 1 FROM audit_state WHERE id = 1 FOR UPDATE")  # closes the circle
        request.join(30)
        other.rollback()
    (r,) = answers
    assert r.status_code == 409, r.text
    assert "retry" in r.json()["detail"] and r.headers["retry-after"] == "1"
    assert client.get(f"/v1/artworks/{work['id']}", headers=h).json()["title"] == work["title"]
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT size FROM audit_state").fetchone()["size"] == before
    again = client.patch(f"/v1/artworks/{work['id']}", json={"title": "X"}, headers=h)
    assert again.status_code == 200 and again.json()["title"] == "X"


def test_one_picture_registered_at_once_by_two_artists_opens_one_dispute(client, make_key):
    """Each registration checks against the other's once its own is in the index; whichever
    sees the other first opens the dispute, and the other finds it open: one, never two."""
    h = auth(make_key("registry"))
    a, b = new_artist(client, h, "ana@example.org"), new_artist(client, h, "bo@example.org")
    for trial in range(3):
        data = encode(photo_like(960 + trial))
        answers, errors = all_at_once(
            [lambda who=who, d=data: upload(client, h, who["id"], d) for who in (a, b)] * 2
        )
        assert not errors, errors
        assert sorted(r.status_code for r in answers) == [201] * 4, [r.text for r in answers]
        works = {r.json()["artworks"][0]["id"] for r in answers}
        assert len(works) == 2  # one work each artist
        listed = client.get("/v1/disputes", params={"status": "open"}, headers=h).json()
        mine = [
            d
            for d in listed["disputes"]
            if {d["earlier"]["artwork_id"], d["later"]["artwork_id"]} == works
        ]
        assert len(mine) == 1, listed
