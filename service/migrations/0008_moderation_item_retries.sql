-- A batch item whose check failed for a passing reason (the moderation policy file unreadable
-- for a moment, the database busy) waits before it is tried again, instead of using its
-- attempts up within milliseconds. NULL: due now.
ALTER TABLE moderation_job_items ADD COLUMN retry_at timestamptz;
