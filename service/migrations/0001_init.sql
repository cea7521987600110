-- Access, artists, artworks, licences, fingerprints, audit log.

CREATE TABLE api_keys (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL,
    prefix       text NOT NULL UNIQUE,
    key_hash     bytea NOT NULL UNIQUE,
    scopes       text[] NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz
);

CREATE TABLE artists (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    display_name        text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    email               text NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
    default_preferences jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX artists_email_key ON artists (lower(email));

-- Every change that an index must see takes a number from this sequence while holding the
-- audit-log lock, so numbers are handed out in commit order and a reader can poll "> last".
CREATE SEQUENCE change_seq;

-- Fingerprints of every image a bank holds: artworks now, training sources and our own outputs
-- later. FAISS indexes are derived from this table; their payload is fingerprints.id.
CREATE TABLE fingerprints (
    id              bigserial PRIMARY KEY,
    bank            text NOT NULL CHECK (bank IN ('artwork', 'source', 'output')),
    subject_id      uuid NOT NULL,
    signals_version text NOT NULL,
    pdq             bytea NOT NULL,
    pdq_quality     integer NOT NULL,
    dense           bytea NOT NULL,
    local_features  bytea NOT NULL,
    active          boolean NOT NULL DEFAULT true,
    change_seq      bigint NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fingerprints_bank_change ON fingerprints (bank, change_seq);
CREATE INDEX fingerprints_subject ON fingerprints (subject_id);

CREATE TABLE artworks (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    artist_id         uuid NOT NULL REFERENCES artists (id),
    sha256            text NOT NULL,
    title             text,
    preferences       jsonb NOT NULL DEFAULT '{}'::jsonb,
    status            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'withdrawn')),
    media_type        text NOT NULL,
    width             integer NOT NULL,
    height            integer NOT NULL,
    byte_size         bigint NOT NULL,
    original_filename text,
    fingerprint_id    bigint REFERENCES fingerprints (id),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    withdrawn_at      timestamptz,
    UNIQUE (artist_id, sha256)
);
CREATE INDEX artworks_artist ON artworks (artist_id, created_at, id);

CREATE TABLE licenses (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    artwork_id  uuid NOT NULL REFERENCES artworks (id),
    grantee     text NOT NULL CHECK (length(grantee) BETWEEN 1 AND 200),
    scopes      text[] NOT NULL,
    expires_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX licenses_artwork ON licenses (artwork_id);

-- Append-only, RFC 6962 hashed. Each row keeps the tree root after it and a signature over
-- (size, root), so a changed, removed or reordered entry is found and named.
CREATE TABLE audit_log (
    seq        bigint PRIMARY KEY,
    created_at timestamptz NOT NULL,
    kind       text NOT NULL,
    actor      text NOT NULL,
    subject    text,
    entry      bytea NOT NULL,
    leaf_hash  bytea NOT NULL,
    root_hash  bytea NOT NULL,
    signature  bytea NOT NULL
);
CREATE INDEX audit_log_subject ON audit_log (subject);

CREATE TABLE audit_state (
    id       integer PRIMARY KEY CHECK (id = 1),
    size     bigint NOT NULL,
    frontier bytea[] NOT NULL
);
INSERT INTO audit_state (id, size, frontier) VALUES (1, 0, '{}');

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
