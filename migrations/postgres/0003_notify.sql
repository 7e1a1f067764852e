-- Other etcdshim servers on this database learn of a commit at once: every change of the
-- bookkeeping (each write transaction moves the revision there) notifies etcdshim_changes when
-- its transaction commits. The payload is the writer's application_name, so a server can tell
-- its own commits from the others'.
CREATE FUNCTION etcdshim_notify_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('etcdshim_changes', current_setting('application_name'));
    RETURN NULL;
END
$$;

CREATE TRIGGER meta_changes AFTER UPDATE ON meta
    FOR EACH STATEMENT EXECUTE FUNCTION etcdshim_notify_changes();
