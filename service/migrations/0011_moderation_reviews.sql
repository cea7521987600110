-- A person's decision on a recorded check (a `review` verdict looked at, a block appealed):
-- append-only, the latest one stands; each is in the audit log as `moderation.reviewed`.
CREATE TABLE moderation_reviews (
    id          uuid PRIMARY KEY,
    check_id    uuid NOT NULL REFERENCES moderation_checks (id),
    api_key_id  bigint REFERENCES api_keys (id),
    actor       text NOT NULL,
    reviewer    text NOT NULL,
    decision    text NOT NULL CHECK (decision IN ('allow', 'block')),
    note        text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX moderation_reviews_check ON moderation_reviews (check_id, created_at);
-- Lists of review or block verdicts (the review queue among them) stay quick however many
-- checks were allowed.
CREATE INDEX moderation_checks_flagged ON moderation_checks (api_key_id, created_at, id)
    WHERE verdict <> 'allow';
