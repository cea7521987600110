"""SQL for artists, artworks and licences. Every change appends to the audit log in the same
transaction, so a change and its record commit together or not at all."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import psycopg
from psycopg.types.json import Jsonb

from service.audit.log import AuditLog, lock_for_change, next_change_seq
from service.db.transactions import lock_name
from service.registry.records import Artist, Artwork, License

_ARTWORK_SELECT = (
    "SELECT w.*, a.default_preferences FROM artworks w JOIN artists a ON a.id = w.artist_id"
)


# A licence of grantee (first parameter) for a scope (second) that is in force at a time (third).
_LICENSE_ACTIVE = (
    "l.grantee = %s AND %s = ANY(l.scopes) AND l.revoked_at IS NULL"
    " AND (l.expires_at IS NULL OR l.expires_at > %s)"
)
_LICENSE_FIELDS = (
    "id", "artwork_id", "grantee", "scopes", "expires_at", "created_at", "revoked_at"
)
_LICENSE_COLUMNS = ", ".join(f"l.{c} AS l_{c}" for c in _LICENSE_FIELDS)


def _prefixed(row: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in row.items() if k.startswith(prefix)}


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


def _merged(
    before: dict[str, str], changes: dict[str, str], clear: Sequence[str]
) -> dict[str, str]:
    return {k: v for k, v in {**before, **changes}.items() if k not in clear}


class RegistryStore:
    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit

    # artists ---------------------------------------------------------------------------------
    def create_artist(
        self,
        conn: psycopg.Connection,
        actor: str,
        display_name: str,
        email: str,
        default_preferences: dict[str, str],
    ) -> Artist:
        with conn.transaction():
            # One registration per address at a time: a concurrent twin waits, then sees it.
            lock_name(conn, f"artist-email:{email.lower()}")
            if conn.execute(
                "SELECT 1 FROM artists WHERE lower(email) = lower(%s)", (email,)
            ).fetchone():
                raise Conflict(f"an artist with email {email} is already registered")
            row = conn.execute(
                "INSERT INTO artists (display_name, email, default_preferences)"
                " VALUES (%s, %s, %s) RETURNING *",
                (display_name, email, Jsonb(default_preferences)),
            ).fetchone()
            artist = Artist.from_row(row)  # type: ignore[arg-type]
            self.audit.append(
                conn,
                "artist.created",
                actor,
                f"artist:{artist.id}",
                {"display_name": display_name, "default_preferences": default_preferences},
            )
        return artist

    def update_artist_profile(
        self,
        conn: psycopg.Connection,
        actor: str,
        artist_id: UUID,
        *,
        display_name: str | None = None,
        email: str | None = None,
    ) -> Artist:
        """Change the artist's name and/or e-mail address (None: as it is). Raises ``NotFound``
        and ``Conflict`` (the address is another artist's). Audited as
        ``artist.profile_changed`` with the name before and after; an address is said to have
        changed, not written into the log (as at ``artist.created``)."""
        with conn.transaction():
            if email is not None:
                # The address's lock before the log's, as create_artist takes them: an artist
                # signing up with the address meanwhile waits, then sees it taken (or the
                # other way round), and neither waits on the other in a circle.
                lock_name(conn, f"artist-email:{email.lower()}")
            lock_for_change(conn)  # then the audit lock, before the row (see lock_for_change)
            before = conn.execute(
                "SELECT display_name, email FROM artists WHERE id = %s FOR NO KEY UPDATE",
                (artist_id,),
            ).fetchone()
            if before is None:
                raise NotFound(f"no artist {artist_id}")
            name = before["display_name"] if display_name is None else display_name
            address = before["email"] if email is None else email
            renamed = name != before["display_name"]
            readdressed = address != before["email"]
            if not (renamed or readdressed):
                return self.get_artist(conn, artist_id)
            if readdressed and conn.execute(
                "SELECT 1 FROM artists WHERE lower(email) = lower(%s) AND id <> %s",
                (address, artist_id),
            ).fetchone():
                raise Conflict(f"an artist with email {address} is already registered")
            row = conn.execute(
                "UPDATE artists SET display_name = %s, email = %s, updated_at = now()"
                " WHERE id = %s RETURNING *",
                (name, address, artist_id),
            ).fetchone()
            said: dict[str, object] = {"email_changed": readdressed}
            if renamed:
                said |= {"before": {"display_name": before["display_name"]}, "display_name": name}
            self.audit.append(conn, "artist.profile_changed", actor, f"artist:{artist_id}", said)
        return Artist.from_row(row)  # type: ignore[arg-type]

    def get_artist(self, conn: psycopg.Connection, artist_id: UUID) -> Artist:
        row = conn.execute("SELECT * FROM artists WHERE id = %s", (artist_id,)).fetchone()
        if row is None:
            raise NotFound(f"no artist {artist_id}")
        return Artist.from_row(row)

    def update_artist_defaults(
        self,
        conn: psycopg.Connection,
        actor: str,
        artist_id: UUID,
        defaults: dict[str, str],
        clear: Sequence[str] = (),
    ) -> Artist:
        """Set some default choices and remove those in ``clear`` (they fall back to deny)."""
        with conn.transaction():
            lock_for_change(conn)  # the audit lock first, always (see lock_for_change)
            before = conn.execute(
                "SELECT default_preferences FROM artists WHERE id = %s FOR NO KEY UPDATE",
                (artist_id,),
            ).fetchone()
            if before is None:
                raise NotFound(f"no artist {artist_id}")
            merged = _merged(before["default_preferences"], defaults, clear)
            if merged == before["default_preferences"]:
                return self.get_artist(conn, artist_id)
            row = conn.execute(
                "UPDATE artists SET default_preferences = %s, updated_at = now()"
                " WHERE id = %s RETURNING *",
                (Jsonb(merged), artist_id),
            ).fetchone()
            self.audit.append(
                conn,
                "artist.preferences_changed",
                actor,
                f"artist:{artist_id}",
                {
                    "before": {"default_preferences": before["default_preferences"]},
                    "default_preferences": row["default_preferences"],  # type: ignore[index]
                },
            )
        return Artist.from_row(row)  # type: ignore[arg-type]

    # artworks --------------------------------------------------------------------------------
    def get_artwork(self, conn: psycopg.Connection, artwork_id: UUID) -> Artwork:
        row = conn.execute(f"{_ARTWORK_SELECT} WHERE w.id = %s", (artwork_id,)).fetchone()
        if row is None:
            raise NotFound(f"no artwork {artwork_id}")
        return Artwork.from_row(row)

    def _artwork_for_update(self, conn: psycopg.Connection, artwork_id: UUID) -> Artwork:
        """The artwork, its row locked until the transaction ends: concurrent changes queue, so
        none is lost and each audit entry's `before` is what the one before it left."""
        lock_for_change(conn)  # the audit lock first, always (see lock_for_change)
        row = conn.execute(
            f"{_ARTWORK_SELECT} WHERE w.id = %s FOR NO KEY UPDATE OF w", (artwork_id,)
        )
        found = row.fetchone()
        if found is None:
            raise NotFound(f"no artwork {artwork_id}")
        return Artwork.from_row(found)

    def find_artwork(
        self, conn: psycopg.Connection, artist_id: UUID, sha256: str
    ) -> Artwork | None:
        row = conn.execute(
            f"{_ARTWORK_SELECT} WHERE w.artist_id = %s AND w.sha256 = %s", (artist_id, sha256)
        ).fetchone()
        return Artwork.from_row(row) if row else None

    def artworks_by_fingerprint(
        self,
        conn: psycopg.Connection,
        fingerprint_ids: list[int],
        grantee: str | None = None,
        scope: str = "img2img",
    ) -> dict[int, tuple[Artwork, License | None]]:
        """The artworks of these index ids, each with the licence for ``scope`` that ``grantee``
        holds now (the longest-lived when several; None without a grantee), in one round trip."""
        if grantee is None:
            rows = conn.execute(
                f"{_ARTWORK_SELECT} WHERE w.fingerprint_id = ANY(%s)", (fingerprint_ids,)
            ).fetchall()
            return {r["fingerprint_id"]: (Artwork.from_row(r), None) for r in rows}
        rows = conn.execute(
            f"SELECT w.*, a.default_preferences, {_LICENSE_COLUMNS}"
            " FROM artworks w JOIN artists a ON a.id = w.artist_id"
            " LEFT JOIN LATERAL (SELECT * FROM licenses l WHERE l.artwork_id = w.id"
            f" AND {_LICENSE_ACTIVE} ORDER BY l.expires_at DESC NULLS FIRST LIMIT 1) l ON true"
            " WHERE w.fingerprint_id = ANY(%s)",
            (grantee, scope, datetime.now(UTC), fingerprint_ids),
        ).fetchall()
        return {
            r["fingerprint_id"]: (
                Artwork.from_row(r),
                None if r["l_id"] is None else License.from_row(_prefixed(r, "l_")),
            )
            for r in rows
        }

    def list_artworks(
        self,
        conn: psycopg.Connection,
        artist_id: UUID,
        limit: int,
        after: tuple[datetime, UUID] | None,
        include_withdrawn: bool,
        newest_first: bool = False,
        named: str | None = None,
    ) -> list[Artwork]:
        """A page of the artist's works; ``named``: only those whose title or file name holds
        it (any case)."""
        self.get_artist(conn, artist_id)
        clauses = ["w.artist_id = %s"]
        params: list[Any] = [artist_id]
        if not include_withdrawn:
            clauses.append("w.status = 'active'")
        if named:
            escaped = named.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = f"%{escaped}%"
            clauses.append("(w.title ILIKE %s OR w.original_filename ILIKE %s)")
            params.extend([pattern, pattern])
        if after is not None:
            clauses.append(f"(w.created_at, w.id) {'<' if newest_first else '>'} (%s, %s)")
            params.extend(after)
        params.append(limit)
        order = "w.created_at DESC, w.id DESC" if newest_first else "w.created_at, w.id"
        rows = conn.execute(
            f"{_ARTWORK_SELECT} WHERE {' AND '.join(clauses)} ORDER BY {order} LIMIT %s",
            params,
        ).fetchall()
        return [Artwork.from_row(r) for r in rows]

    def insert_artwork(
        self,
        conn: psycopg.Connection,
        actor: str,
        *,
        artist_id: UUID,
        sha256: str,
        title: str | None,
        preferences: dict[str, str],
        media_type: str,
        width: int,
        height: int,
        byte_size: int,
        original_filename: str | None,
        signals: dict[str, Any],
    ) -> tuple[Artwork, bool]:
        """Insert an artwork with its fingerprints; return (artwork, created).

        The same bytes registered again for the same artist return the existing artwork (and
        bring a withdrawn one back).
        """
        with conn.transaction():
            # The same bytes for the same artist, registered at once twice: the second waits for
            # the first, then finds it (instead of failing on the unique key).
            lock_name(conn, f"artwork:{artist_id}:{sha256}")
            lock_for_change(conn)  # before reading: a change committed meanwhile is seen
            existing = self.find_artwork(conn, artist_id, sha256)
            if existing is not None and existing.status == "active":
                return existing, False
            seq = next_change_seq(conn)
            if existing is not None:
                # Registered again after a withdrawal: back, with what this registration says.
                new_title = title if title is not None else existing.title
                new_prefs = {**existing.preferences, **preferences}
                # The fingerprints just computed replace the stored ones: those may be of an
                # older signals version (a withdrawn row is not refreshed).
                conn.execute(
                    "UPDATE fingerprints SET active = true, change_seq = %s, signals_version = %s,"
                    " pdq = %s, pdq_quality = %s, dense = %s, local_features = %s WHERE id = %s",
                    (seq, signals["signals_version"], signals["pdq"], signals["pdq_quality"],
                     signals["dense"], signals["local"], existing.fingerprint_id),
                )
                conn.execute(
                    "UPDATE artworks SET status = 'active', withdrawn_at = NULL, title = %s,"
                    " preferences = %s, updated_at = now() WHERE id = %s",
                    (new_title, Jsonb(new_prefs), existing.id),
                )
                self.audit.append(
                    conn,
                    "artwork.reinstated",
                    actor,
                    f"artwork:{existing.id}",
                    {
                        "sha256": sha256,
                        "before": {"title": existing.title, "preferences": existing.preferences},
                        "title": new_title,
                        "preferences": new_prefs,
                    },
                )
                return self.get_artwork(conn, existing.id), True
            artwork_id = uuid4()
            fp = conn.execute(
                "INSERT INTO fingerprints (bank, subject_id, signals_version, pdq, pdq_quality,"
                " dense, local_features, change_seq) VALUES ('artwork', %s, %s, %s,"
                " %s, %s, %s, %s) RETURNING id",
                (
                    artwork_id,
                    signals["signals_version"],
                    signals["pdq"],
                    signals["pdq_quality"],
                    signals["dense"],
                    signals["local"],
                    seq,
                ),
            ).fetchone()
            conn.execute(
                "INSERT INTO artworks (id, artist_id, sha256, title, preferences, media_type,"
                " width, height, byte_size, original_filename, fingerprint_id)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    artwork_id,
                    artist_id,
                    sha256,
                    title,
                    Jsonb(preferences),
                    media_type,
                    width,
                    height,
                    byte_size,
                    original_filename,
                    fp["id"],  # type: ignore[index]
                ),
            )
            self.audit.append(
                conn,
                "artwork.registered",
                actor,
                f"artwork:{artwork_id}",
                {
                    "artist_id": str(artist_id),
                    "sha256": sha256,
                    "title": title,
                    "preferences": preferences,
                    "media_type": media_type,
                    "size": [width, height],
                    "pdq": bytes(signals["pdq"]).hex(),
                    "signals_version": signals["signals_version"],
                },
            )
            return self.get_artwork(conn, artwork_id), True

    def update_artwork(
        self,
        conn: psycopg.Connection,
        actor: str,
        artwork_id: UUID,
        *,
        title: str | None = None,
        set_title: bool = False,
        preferences: dict[str, str] | None = None,
        clear: Sequence[str] = (),
    ) -> Artwork:
        """Change the title and some choices; those in ``clear`` fall back to the artist's."""
        with conn.transaction():
            before = self._artwork_for_update(conn, artwork_id)
            changes: dict[str, Any] = {}
            if set_title and title != before.title:
                changes["title"] = title
            new_prefs = _merged(before.preferences, preferences or {}, clear)
            if new_prefs != before.preferences:
                changes["preferences"] = new_prefs
            if not changes:
                return before
            conn.execute(
                "UPDATE artworks SET title = %s, preferences = %s, updated_at = now()"
                " WHERE id = %s",
                (changes.get("title", before.title), Jsonb(new_prefs), artwork_id),
            )
            self.audit.append(
                conn,
                "artwork.updated",
                actor,
                f"artwork:{artwork_id}",
                {"before": {"title": before.title, "preferences": before.preferences}, **changes},
            )
            return self.get_artwork(conn, artwork_id)

    def withdraw_artwork(self, conn: psycopg.Connection, actor: str, artwork_id: UUID) -> Artwork:
        with conn.transaction():
            art = self._artwork_for_update(conn, artwork_id)
            if art.status == "withdrawn":
                return art
            seq = next_change_seq(conn)
            conn.execute(
                "UPDATE fingerprints SET active = false, change_seq = %s WHERE id = %s",
                (seq, art.fingerprint_id),
            )
            conn.execute(
                "UPDATE artworks SET status = 'withdrawn', withdrawn_at = now(), updated_at = now()"
                " WHERE id = %s",
                (artwork_id,),
            )
            self.audit.append(
                conn, "artwork.withdrawn", actor, f"artwork:{artwork_id}", {"sha256": art.sha256}
            )
            return self.get_artwork(conn, artwork_id)

    # licences --------------------------------------------------------------------------------
    def create_license(
        self,
        conn: psycopg.Connection,
        actor: str,
        artwork_id: UUID,
        grantee: str,
        scopes: list[str],
        expires_at: datetime | None,
    ) -> License:
        with conn.transaction():
            self.get_artwork(conn, artwork_id)
            row = conn.execute(
                "INSERT INTO licenses (artwork_id, grantee, scopes, expires_at)"
                " VALUES (%s, %s, %s, %s) RETURNING *",
                (artwork_id, grantee, scopes, expires_at),
            ).fetchone()
            lic = License.from_row(row)  # type: ignore[arg-type]
            self.audit.append(
                conn,
                "license.granted",
                actor,
                f"artwork:{artwork_id}",
                {
                    "license_id": str(lic.id),
                    "grantee": grantee,
                    "scopes": scopes,
                    "expires_at": expires_at.isoformat() if expires_at else None,
                },
            )
            return lic

    def list_licenses(self, conn: psycopg.Connection, artwork_id: UUID) -> list[License]:
        self.get_artwork(conn, artwork_id)
        rows = conn.execute(
            "SELECT * FROM licenses WHERE artwork_id = %s ORDER BY created_at, id", (artwork_id,)
        ).fetchall()
        return [License.from_row(r) for r in rows]

    def get_license(self, conn: psycopg.Connection, artwork_id: UUID, license_id: UUID) -> License:
        row = conn.execute(
            "SELECT * FROM licenses WHERE id = %s AND artwork_id = %s", (license_id, artwork_id)
        ).fetchone()
        if row is None:
            raise NotFound(f"no licence {license_id} on artwork {artwork_id}")
        return License.from_row(row)

    def revoke_license(
        self, conn: psycopg.Connection, actor: str, artwork_id: UUID, license_id: UUID
    ) -> License:
        with conn.transaction():
            lock_for_change(conn)  # the audit lock first, always (see lock_for_change)
            locked = conn.execute(
                "SELECT * FROM licenses WHERE id = %s AND artwork_id = %s FOR NO KEY UPDATE",
                (license_id, artwork_id),
            ).fetchone()
            if locked is None:
                raise NotFound(f"no licence {license_id} on artwork {artwork_id}")
            lic = License.from_row(locked)
            if lic.revoked_at is not None:
                return lic
            row = conn.execute(
                "UPDATE licenses SET revoked_at = now() WHERE id = %s RETURNING *", (license_id,)
            ).fetchone()
            self.audit.append(
                conn,
                "license.revoked",
                actor,
                f"artwork:{artwork_id}",
                {"license_id": str(license_id), "grantee": lic.grantee},
            )
            return License.from_row(row)  # type: ignore[arg-type]
