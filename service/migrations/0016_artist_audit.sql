-- Which artist (and which of their works) each audit entry is about, so that a page of an
-- artist's events reads that page's entries through an index instead of sorting every entry
-- about every one of their works (bench/results/artist_events.md). Derived data: filled by a
-- trigger as entries are appended (the log itself stays append-only and unchanged), and here
-- for the entries already logged. An entry about an artist, a work, a claim against an output
-- or an artist's claim against a style adapter gets a row; other entries none.

CREATE TABLE artist_audit (
    seq        bigint PRIMARY KEY,  -- audit_log.seq
    artist_id  uuid NOT NULL,
    artwork_id uuid,
    at         timestamptz NOT NULL,  -- audit_log.created_at
    kind       text NOT NULL
);

-- The artist and work an entry is about; nulls for an entry about neither. Subjects are read
-- only when they hold a well-formed id, so this never raises (an append must not fail here).
CREATE FUNCTION audit_artist(p_subject text, p_kind text, p_entry bytea,
                             OUT artist_id uuid, OUT artwork_id uuid)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    uuid_re constant text :=
        '([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})';
    kind_of text := split_part(p_subject, ':', 1);
    id_text text := substring(p_subject from '^[a-z]+:' || uuid_re || '$');
    claim_text text;
BEGIN
    IF id_text IS NULL THEN
        RETURN;
    END IF;
    IF kind_of = 'artist' THEN
        SELECT a.id INTO artist_id FROM artists a WHERE a.id = id_text::uuid;
    ELSIF kind_of = 'artwork' THEN
        SELECT w.artist_id, w.id INTO artist_id, artwork_id
        FROM artworks w WHERE w.id = id_text::uuid;
    ELSIF kind_of = 'claim' THEN
        SELECT c.artist_id, c.artwork_id INTO artist_id, artwork_id
        FROM claims c WHERE c.id = id_text::uuid;
    ELSIF kind_of = 'adapter' AND p_kind IN ('adapter.claim_filed', 'adapter.claim_decided') THEN
        claim_text := substring(convert_from(p_entry, 'UTF8')::jsonb #>> '{data,claim_id}'
                                from '^' || uuid_re || '$');
        IF claim_text IS NOT NULL THEN
            SELECT c.artist_id INTO artist_id FROM adapter_claims c WHERE c.id = claim_text::uuid;
        END IF;
    END IF;
END $$;

CREATE FUNCTION artist_audit_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO artist_audit (seq, artist_id, artwork_id, at, kind)
    SELECT NEW.seq, a.artist_id, a.artwork_id, NEW.created_at, NEW.kind
    FROM audit_artist(NEW.subject, NEW.kind, NEW.entry) a
    WHERE a.artist_id IS NOT NULL
    ON CONFLICT (seq) DO NOTHING;  -- a data-only restore brings both tables' rows
    RETURN NULL;
END $$;

CREATE TRIGGER artist_audit_on_append AFTER INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION artist_audit_add();

-- The entries logged before: joined by subject, set-wise.
INSERT INTO artist_audit (seq, artist_id, artwork_id, at, kind)
SELECT l.seq, w.artist_id, w.id, l.created_at, l.kind
FROM audit_log l JOIN artworks w ON l.subject = 'artwork:' || w.id;

INSERT INTO artist_audit (seq, artist_id, artwork_id, at, kind)
SELECT l.seq, a.id, NULL, l.created_at, l.kind
FROM audit_log l JOIN artists a ON l.subject = 'artist:' || a.id;

INSERT INTO artist_audit (seq, artist_id, artwork_id, at, kind)
SELECT l.seq, c.artist_id, c.artwork_id, l.created_at, l.kind
FROM audit_log l JOIN claims c ON l.subject = 'claim:' || c.id;

INSERT INTO artist_audit (seq, artist_id, artwork_id, at, kind)
SELECT l.seq, c.artist_id, NULL, l.created_at, l.kind
FROM adapter_claims c JOIN audit_log l ON l.subject = 'adapter:' || c.adapter_id
WHERE l.kind IN ('adapter.claim_filed', 'adapter.claim_decided')
  AND convert_from(l.entry, 'UTF8')::jsonb #>> '{data,claim_id}' = c.id::text
ON CONFLICT (seq) DO NOTHING;

CREATE INDEX artist_audit_artist ON artist_audit (artist_id, at, seq);
CREATE INDEX artist_audit_artist_kind ON artist_audit (artist_id, kind, at, seq);
CREATE INDEX artist_audit_artwork ON artist_audit (artwork_id, at, seq)
    WHERE artwork_id IS NOT NULL;
