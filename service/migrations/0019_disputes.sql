-- Ownership disputes: a work registered later that copies another artist's registered work.
-- Registration keeps both works (refusing the later one would let whoever registers first lock
-- the author out; the generation gate and moderation already need every matched work's
-- permission, so neither artist can open the other's work); the dispute puts the pair in front
-- of a person, who withdraws one of the works (upheld) or lets both stand (dismissed). Each
-- opening and decision is in the audit log under both works (`artwork.disputed`,
-- `artwork.dispute_decided`), so both artists' events show it.
CREATE TABLE disputes (
    id                   uuid PRIMARY KEY,
    artwork_id           uuid NOT NULL REFERENCES artworks (id),  -- registered later
    artist_id            uuid NOT NULL REFERENCES artists (id),
    earlier_artwork_id   uuid NOT NULL REFERENCES artworks (id),
    earlier_artist_id    uuid NOT NULL REFERENCES artists (id),
    decision             text NOT NULL,  -- the matcher's, later work against the earlier one
    score                real NOT NULL,
    evidence             jsonb NOT NULL,
    status               text NOT NULL DEFAULT 'open'
                         CHECK (status IN ('open', 'upheld', 'dismissed')),
    withdrawn_artwork_id uuid REFERENCES artworks (id),
    decision_note        text,
    decided_by           text,
    decided_at           timestamptz,
    created_by           text NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (artwork_id <> earlier_artwork_id),
    CHECK (artist_id <> earlier_artist_id),
    CHECK ((status = 'upheld') = (withdrawn_artwork_id IS NOT NULL)),
    CHECK (withdrawn_artwork_id IN (artwork_id, earlier_artwork_id)),
    CHECK ((status = 'open') = (decided_at IS NULL))
);
-- One open dispute a pair: registering the same picture again finds it.
CREATE UNIQUE INDEX disputes_open_pair ON disputes (earlier_artwork_id, artwork_id)
    WHERE status = 'open';
CREATE INDEX disputes_created ON disputes (created_at, id);
CREATE INDEX disputes_artist ON disputes (artist_id, created_at, id);
CREATE INDEX disputes_earlier_artist ON disputes (earlier_artist_id, created_at, id);
CREATE INDEX disputes_artwork ON disputes (artwork_id);
CREATE INDEX disputes_earlier_artwork ON disputes (earlier_artwork_id);
