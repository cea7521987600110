-- Images chopmark stamped (generated here or elsewhere): the signed manifest, the watermark
-- payload that leads back here, and the output's fingerprints (bank 'output').

CREATE TABLE outputs (
    id                uuid PRIMARY KEY,
    origin            text NOT NULL CHECK (origin IN ('stamp', 'generation')),
    kind              text NOT NULL CHECK (kind IN ('txt2img', 'img2img', 'inpaint', 'external')),
    platform_user     text,
    facts             jsonb NOT NULL,
    manifest_id       text NOT NULL UNIQUE,
    manifest_bytes    bytea NOT NULL,
    watermark_alg     text NOT NULL,
    watermark_payload bigint NOT NULL UNIQUE,
    watermark_value   text NOT NULL,
    watermark_verified boolean NOT NULL,
    sha256            text NOT NULL,
    media_type        text NOT NULL,
    width             integer NOT NULL,
    height            integer NOT NULL,
    fingerprint_id    bigint NOT NULL REFERENCES fingerprints (id),
    created_by        text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outputs_watermark_value ON outputs (watermark_alg, watermark_value);
CREATE INDEX outputs_sha256 ON outputs (sha256);
CREATE INDEX outputs_fingerprint ON outputs (fingerprint_id);
