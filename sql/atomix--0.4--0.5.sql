-- atomix 0.4 -> 0.5: at most once without a request-log row per command.
-- Each partition now remembers, per node sending it commands, the lowest
-- request id that node may still send and the outcomes of those applied
-- since (partition_state.origins, src/core/request_origins.h); the request
-- log goes.  Requests in flight across the upgrade: their nodes restarted
-- with the new build, so nothing of theirs is resent.
\echo Use "ALTER EXTENSION atomix UPDATE TO '0.5'" to load this file. \quit

-- refuses unless this is atomix.database; wakes the raft worker at commit
SELECT atomix._check_create();

ALTER TABLE atomix.partition_state ADD COLUMN origins bytea NOT NULL DEFAULT '';
DROP TABLE atomix.request_log;
