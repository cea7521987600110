-- The storage collector (`chopmark storage gc`) asks, a batch of stored files at a time, which
-- of them a record still names. These columns were indexed only behind another column (the
-- unique constraints lead with the artist or the dataset), or not at all. A moderation batch's
-- upload is named only while its item waits to be checked.
CREATE INDEX artworks_sha256 ON artworks (sha256);
CREATE INDEX training_sources_sha256 ON training_sources (sha256);
CREATE INDEX moderation_job_items_queued_sha256 ON moderation_job_items (sha256)
    WHERE status = 'queued';
