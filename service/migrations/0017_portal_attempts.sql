-- Sign-ups and failed logins at the artist portal by client address, so that one address can
-- make only so many in a while (service/portal/throttle.py). Rows older than a day are deleted
-- as new ones come.
CREATE TABLE portal_attempts (
    client text NOT NULL,
    kind   text NOT NULL CHECK (kind IN ('signup', 'login_failed')),
    at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX portal_attempts_client ON portal_attempts (client, kind, at);
CREATE INDEX portal_attempts_at ON portal_attempts (at);
