-- The artist portal: a password login per artist, browser sessions, and one-time invitations
-- that let an artist registered through the API (by a platform) set a password. Only hashes of
-- session and invitation tokens are stored; passwords as scrypt hashes.
CREATE TABLE portal_accounts (
    artist_id       uuid PRIMARY KEY REFERENCES artists (id),
    password_hash   text NOT NULL,
    failed_logins   integer NOT NULL DEFAULT 0,
    last_failed_at  timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE portal_sessions (
    token_hash  bytea PRIMARY KEY,
    artist_id   uuid NOT NULL REFERENCES artists (id),
    csrf_token  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    ended_at    timestamptz
);
CREATE INDEX portal_sessions_artist ON portal_sessions (artist_id);

CREATE TABLE portal_invites (
    token_hash  bytea PRIMARY KEY,
    artist_id   uuid NOT NULL REFERENCES artists (id),
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX portal_invites_artist ON portal_invites (artist_id);
