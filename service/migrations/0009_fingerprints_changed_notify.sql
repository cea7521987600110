-- A change to the fingerprints any bank holds wakes every API process's index refresher when it
-- commits (LISTEN fingerprints_changed), rather than at its next poll: a work registered through
-- one process, or with `chopmark register`, is matched by all of them within moments. The poll
-- stays, for a listener that lost its connection. Notifications of one transaction fold into one.
CREATE FUNCTION notify_fingerprints_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('fingerprints_changed', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER fingerprints_changed
    AFTER INSERT OR UPDATE OR DELETE ON fingerprints
    FOR EACH STATEMENT EXECUTE FUNCTION notify_fingerprints_changed();
