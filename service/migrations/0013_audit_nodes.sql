-- The audit log's stored tree nodes (service.audit.nodes): the hash of every complete subtree of
-- 2^8, 2^16, 2^24 … leaves, written by the append that completes it, so that a proof reads a few
-- hundred hashes instead of every leaf. Derived data: `chopmark audit verify` checks each one
-- against the leaves, and a missing one is computed from the leaves when a proof needs it.
CREATE TABLE audit_nodes (
    level   smallint NOT NULL CHECK (level > 0 AND level % 8 = 0),
    idx     bigint   NOT NULL CHECK (idx >= 0),
    hash    bytea    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
);

-- The nodes of the entries already in the log: each level's complete pairs hashed as RFC 6962
-- does (SHA-256 of 0x01 || left || right), level by level, keeping every eighth level.
DO $$
DECLARE
    lvl integer := 0;
    left_count bigint;
BEGIN
    CREATE TEMP TABLE audit_level ON COMMIT DROP AS
        SELECT seq AS idx, leaf_hash AS hash FROM audit_log
        WHERE seq < (SELECT size FROM audit_state WHERE id = 1);
    SELECT count(*) INTO left_count FROM audit_level;
    WHILE left_count > 1 LOOP
        CREATE TEMP TABLE audit_next ON COMMIT DROP AS
            SELECT idx / 2 AS idx,
                   sha256('\x01'::bytea || string_agg(hash, ''::bytea ORDER BY idx)) AS hash
            FROM audit_level GROUP BY idx / 2 HAVING count(*) = 2;
        lvl := lvl + 1;
        IF lvl % 8 = 0 THEN
            INSERT INTO audit_nodes (level, idx, hash) SELECT lvl, idx, hash FROM audit_next;
        END IF;
        DROP TABLE audit_level;
        ALTER TABLE audit_next RENAME TO audit_level;
        SELECT count(*) INTO left_count FROM audit_level;
    END LOOP;
    DROP TABLE audit_level;
END
$$;
