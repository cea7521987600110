-- Lists of recorded moderation checks and batch jobs.
-- Recorded checks listed newest first (GET /v1/moderation/checks): by any key (an admin's
-- list, the time window alone), and by platform user. A key's own list uses
-- moderation_checks_key (api_key_id, created_at).
CREATE INDEX moderation_checks_created ON moderation_checks (created_at, id);
CREATE INDEX moderation_checks_user ON moderation_checks (platform_user, created_at)
    WHERE platform_user IS NOT NULL;
-- Batch jobs listed newest first (GET /v1/moderation/jobs): a key's own, and an admin's all.
CREATE INDEX moderation_jobs_key ON moderation_jobs (api_key_id, created_at, id);
CREATE INDEX moderation_jobs_created ON moderation_jobs (created_at, id);
