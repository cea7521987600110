-- Artists listed a page at a time in the order they came (GET /v1/artists).
CREATE INDEX artists_created ON artists (created_at, id);
