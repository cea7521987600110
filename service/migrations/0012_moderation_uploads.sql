-- The upload of a single check is kept in the blob store when its verdict is one the operator
-- keeps (CHOPMARK_MODERATION_KEEP_UPLOADS, review and block by default), so a moderator or a
-- legal reviewer can look at it beside the evidence later; `chopmark storage gc` removes it once
-- it is older than CHOPMARK_MODERATION_UPLOAD_DAYS. Checks recorded before this kept nothing.
ALTER TABLE moderation_checks ADD COLUMN upload_kept boolean NOT NULL DEFAULT false;
