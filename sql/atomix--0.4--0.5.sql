-- atomix 0.4 -> 0.5: at most once without a request-log row per command.
-- Each partition now remembers, per node sending it commands, the lowest
-- request id that node may still send and the outcomes of those applied
-- since (partition_state.origins, src/core/request_origins.h); the request
-- log goes.  Requests in flight across the upgrade: their nodes restarted
-- with the new build, so nothing of theirs is resent.
\echo Use "ALTER EXTENSION atomix UPDATE TO '0.5'" to load this file. \quit

-- Refuses on a server that still runs an older build (its raft worker would
-- go on writing the request log this drops): the function exists only in
-- 0.5 builds, and refuses in a library loaded after the server started.
DO $require_build$
BEGIN
    CREATE FUNCTION atomix._require_current_build() RETURNS void
        AS 'MODULE_PATHNAME', 'atomix_require_current_build' LANGUAGE C;
EXCEPTION WHEN undefined_function THEN
    RAISE EXCEPTION 'this server still runs an older atomix build than the one installed'
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'Restart the server so that it loads the installed atomix, then run ALTER EXTENSION atomix UPDATE.';
END
$require_build$;
SELECT atomix._require_current_build();
DROP FUNCTION atomix._require_current_build();

-- refuses unless this is atomix.database; wakes the raft worker at commit
SELECT atomix._check_create();

ALTER TABLE atomix.partition_state ADD COLUMN origins bytea NOT NULL DEFAULT '';
DROP TABLE atomix.request_log;
