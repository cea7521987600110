-- Generation: LoRA adapters and the claims artists file against them, training sources (bank
-- 'source' in fingerprints), and every generation request with its decisions and evidence.

CREATE TABLE adapters (
    id                uuid PRIMARY KEY,
    name              text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$'),
    sha256            text NOT NULL UNIQUE CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    autov2            text NOT NULL,
    size_bytes        bigint NOT NULL,
    original_filename text,
    status            text NOT NULL DEFAULT 'allowed' CHECK (status IN ('allowed', 'blocked')),
    status_reason     text,
    metadata          jsonb NOT NULL DEFAULT '{}'::jsonb,
    training          jsonb NOT NULL DEFAULT '{}'::jsonb,
    details           jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_by        text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE adapter_claims (
    id            uuid PRIMARY KEY,
    adapter_id    uuid NOT NULL REFERENCES adapters (id),
    artist_id     uuid NOT NULL REFERENCES artists (id),
    reason        text NOT NULL CHECK (length(reason) BETWEEN 1 AND 5000),
    status        text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'upheld', 'rejected')),
    decision_note text,
    decided_by    text,
    decided_at    timestamptz,
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX adapter_claims_adapter ON adapter_claims (adapter_id, created_at);
CREATE INDEX adapter_claims_artist ON adapter_claims (artist_id, created_at);

-- Images a model was trained on. Their fingerprints live in `fingerprints` (bank 'source',
-- subject_id = training_sources.id); a CLIP embedding is kept when a checkpoint is configured.
CREATE TABLE training_sources (
    id                uuid PRIMARY KEY,
    seq               bigserial UNIQUE,
    dataset           text NOT NULL CHECK (length(dataset) BETWEEN 1 AND 200),
    licence           text,
    sha256            text NOT NULL,
    media_type        text NOT NULL,
    width             integer NOT NULL,
    height            integer NOT NULL,
    byte_size         bigint NOT NULL,
    original_filename text,
    fingerprint_id    bigint NOT NULL REFERENCES fingerprints (id),
    clip_model        text,
    clip_embedding    bytea,
    created_by        text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (dataset, sha256)
);
CREATE INDEX training_sources_fingerprint ON training_sources (fingerprint_id);
CREATE INDEX training_sources_clip ON training_sources (clip_model, seq)
    WHERE clip_embedding IS NOT NULL;

-- One row per generation request, blocked ones included. `decisions` holds every gate check and
-- the screen with its evidence; `status` moves queued -> running -> completed | blocked | failed.
-- A private prompt is kept only as its SHA-256.
CREATE TABLE generations (
    id                   uuid PRIMARY KEY,
    status               text NOT NULL
                         CHECK (status IN ('queued', 'running', 'completed', 'blocked', 'failed')),
    stage                text CHECK (stage IN ('gate', 'diffuse', 'screen', 'stamp', 'record')),
    mode                 text NOT NULL CHECK (mode IN ('txt2img', 'img2img', 'inpaint')),
    api_key_id           bigint REFERENCES api_keys (id),
    actor                text NOT NULL,
    platform_user        text,
    prompt               text,
    negative_prompt      text,
    prompt_sha256        text NOT NULL,
    negative_prompt_sha256 text NOT NULL,
    prompt_private       boolean NOT NULL DEFAULT false,
    seed                 bigint NOT NULL,
    steps                integer NOT NULL,
    guidance             double precision NOT NULL,
    width                integer NOT NULL,
    height               integer NOT NULL,
    strength             double precision,
    scheduler            text NOT NULL,
    model_name           text,
    model_sha256         text,
    model_autov2         text,
    model_default_tiny   boolean,
    model                jsonb,
    adapters             jsonb NOT NULL DEFAULT '[]'::jsonb,
    inputs               jsonb NOT NULL DEFAULT '[]'::jsonb,
    decisions            jsonb NOT NULL DEFAULT '[]'::jsonb,
    reasons              jsonb NOT NULL DEFAULT '[]'::jsonb,
    flags                jsonb NOT NULL DEFAULT '[]'::jsonb,
    screen               jsonb,
    output_id            uuid REFERENCES outputs (id),
    output_sha256        text,
    output_pdq           text,
    watermark_alg        text,
    watermark_value      text,
    manifest_id          text,
    timings              jsonb NOT NULL DEFAULT '{}'::jsonb,
    error                text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    finished_at          timestamptz
);
CREATE INDEX generations_key ON generations (api_key_id, created_at);
CREATE INDEX generations_user ON generations (platform_user, created_at);
CREATE INDEX generations_status ON generations (status, created_at);

-- Registered artworks an input image matched, so an artist can list every generation that
-- touched a work (blocked img2img attempts included).
CREATE TABLE generation_matches (
    generation_id uuid NOT NULL REFERENCES generations (id),
    input_role    text NOT NULL,
    artwork_id    uuid NOT NULL REFERENCES artworks (id),
    artist_id     uuid NOT NULL REFERENCES artists (id),
    decision      text NOT NULL,
    score         double precision NOT NULL,
    outcome       text NOT NULL CHECK (outcome IN ('blocked', 'licensed', 'allowed', 'noted')),
    license_id    uuid REFERENCES licenses (id),
    PRIMARY KEY (generation_id, input_role, artwork_id)
);
CREATE INDEX generation_matches_artwork ON generation_matches (artwork_id);
CREATE INDEX generation_matches_artist ON generation_matches (artist_id);
