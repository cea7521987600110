-- An artist's claim that one of our outputs (a generation, or a platform's generation stamped
-- here) copies their work: what the matcher found between the output and their works when it
-- was filed, and the decision on it. Each filing and decision is in the audit log under
-- `claim:ID`.
CREATE TABLE claims (
    id            uuid PRIMARY KEY,
    output_id     uuid NOT NULL REFERENCES outputs (id),
    artist_id     uuid NOT NULL REFERENCES artists (id),
    artwork_id    uuid REFERENCES artworks (id),
    reason        text NOT NULL CHECK (length(reason) BETWEEN 1 AND 5000),
    matches       jsonb NOT NULL,
    status        text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'upheld', 'rejected')),
    decision_note text,
    decided_by    text,
    decided_at    timestamptz,
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX claims_artist ON claims (artist_id, created_at, id);
CREATE INDEX claims_output ON claims (output_id, created_at, id);
CREATE INDEX claims_created ON claims (created_at, id);
