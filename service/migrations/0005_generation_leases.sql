-- A queued or running generation is leased by the process that runs it, which renews the lease
-- while it works. A lease that runs out means the process died: the generation is then marked
-- failed ("interrupted") instead of staying queued or running for ever.
ALTER TABLE generations
    ADD COLUMN worker           text,
    ADD COLUMN lease_expires_at timestamptz;

CREATE INDEX generations_leases ON generations (lease_expires_at)
    WHERE status IN ('queued', 'running');
