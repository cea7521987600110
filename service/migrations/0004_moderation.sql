-- Moderation: every check with its evidence, and batch jobs worked by any API process
-- (items are claimed with FOR UPDATE SKIP LOCKED; uploaded bytes live in the blob store).

CREATE TABLE moderation_checks (
    id             uuid PRIMARY KEY,
    api_key_id     bigint REFERENCES api_keys (id),
    actor          text NOT NULL,
    platform_user  text,
    context        text,
    sha256         text NOT NULL,
    verdict        text NOT NULL CHECK (verdict IN ('allow', 'review', 'block')),
    reasons        jsonb NOT NULL,
    result         jsonb NOT NULL,
    policy_name    text NOT NULL,
    policy_version text NOT NULL,
    job_id         uuid,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX moderation_checks_key ON moderation_checks (api_key_id, created_at);
CREATE INDEX moderation_checks_sha256 ON moderation_checks (sha256);
CREATE INDEX moderation_checks_job ON moderation_checks (job_id) WHERE job_id IS NOT NULL;

CREATE TABLE moderation_jobs (
    id                   uuid PRIMARY KEY,
    api_key_id           bigint NOT NULL REFERENCES api_keys (id),
    actor                text NOT NULL,
    status               text NOT NULL DEFAULT 'queued'
                         CHECK (status IN ('queued', 'running', 'completed', 'failed')),
    total                integer NOT NULL CHECK (total BETWEEN 1 AND 1000),
    done                 integer NOT NULL DEFAULT 0,
    platform_user        text,
    context              text,
    idempotency_key      text,
    request_sha256       text NOT NULL,
    webhook_url          text,
    webhook_secret       text,
    webhook_state        text CHECK (webhook_state IN ('pending', 'delivered', 'failed')),
    webhook_attempts     integer NOT NULL DEFAULT 0,
    webhook_next_at      timestamptz,
    webhook_last_error   text,
    webhook_delivered_at timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    started_at           timestamptz,
    finished_at          timestamptz,
    UNIQUE (api_key_id, idempotency_key)
);
CREATE INDEX moderation_jobs_webhook_due ON moderation_jobs (webhook_next_at)
    WHERE webhook_state = 'pending';

CREATE TABLE moderation_job_items (
    job_id       uuid NOT NULL REFERENCES moderation_jobs (id),
    position     integer NOT NULL,
    filename     text,
    sha256       text NOT NULL,
    byte_size    bigint NOT NULL,
    status       text NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'checked', 'rejected', 'failed')),
    attempts     integer NOT NULL DEFAULT 0,
    check_id     uuid REFERENCES moderation_checks (id),
    error        text,
    error_status integer,
    finished_at  timestamptz,
    PRIMARY KEY (job_id, position)
);
CREATE INDEX moderation_job_items_queued ON moderation_job_items (job_id, position)
    WHERE status = 'queued';
