-- atomix 0.5: Raft-replicated maps, counters and coordination primitives.
\echo Use "CREATE EXTENSION atomix" to load this file. \quit

-- Refuse at once unless atomix is preloaded and this is atomix.database.
CREATE FUNCTION atomix._check_create() RETURNS void
    AS 'MODULE_PATHNAME', 'atomix_check_create' LANGUAGE C VOLATILE;
SELECT atomix._check_create();
REVOKE ALL ON FUNCTION atomix._check_create() FROM PUBLIC;

GRANT USAGE ON SCHEMA atomix TO PUBLIC;

------------------------------------------------------------------------------
-- Partition state.  Written only by the raft worker, which applies committed
-- Raft entries; everyone may read, nobody else may write.
------------------------------------------------------------------------------

-- One row per partition: the last Raft index applied to the tables, the
-- leader-stamped log time, and what the partition remembers of each node
-- sending it commands so that a retried command is answered instead of
-- applied twice (per origin: the lowest request id it may still send and the
-- outcomes of those applied since; src/core/request_origins.h), all
-- committed in the same transaction as the state.
CREATE TABLE atomix.partition_state (
    partition_id  int PRIMARY KEY,
    applied_index bigint NOT NULL DEFAULT 0,
    log_time      timestamptz NOT NULL DEFAULT 'epoch',
    origins       bytea NOT NULL DEFAULT ''
);

-- Keyed entries; values are stored as bytes (text values in the database
-- encoding).  kind: 'm' map entry (map, key), 'v' value (name, key ''),
-- 's' set element (set, element as key, empty value).  One leaf table per
-- partition.
CREATE TABLE atomix.map_data (
    partition_id int NOT NULL,
    kind         "char" NOT NULL,
    map          text NOT NULL,
    key          text NOT NULL,
    value        bytea NOT NULL,
    version      bigint NOT NULL,
    expires_at   timestamptz
) PARTITION BY LIST (partition_id);

-- Coordination objects (locks, semaphores, elections, id generators,
-- sessions, node leases), each one row whose state is an encoded blob the
-- raft worker reads and rewrites (src/objects.h has the formats; the SQL
-- functions lock_holder, election_get, ... decode them).  deadline is the
-- next log time at which the object needs attention (a waiter's timeout, a
-- node lease's expiry), in microseconds since the Unix epoch.
CREATE TABLE atomix.object_data (
    partition_id int NOT NULL,
    kind         "char" NOT NULL,
    name         text NOT NULL,
    state        bytea NOT NULL,
    deadline     bigint
) PARTITION BY LIST (partition_id);

CREATE TABLE atomix.counter_data (
    partition_id int NOT NULL,
    name         text NOT NULL,
    value        bigint NOT NULL
) PARTITION BY LIST (partition_id);

DO $create_partitions$
DECLARE
    n int := current_setting('atomix.partitions')::int;
BEGIN
    FOR p IN 0 .. n - 1 LOOP
        EXECUTE format('CREATE TABLE atomix.map_data_p%s PARTITION OF atomix.map_data '
                       'FOR VALUES IN (%s)', p, p);
        EXECUTE format('ALTER TABLE atomix.map_data_p%s ADD PRIMARY KEY (kind, map, key)', p);
        EXECUTE format('CREATE INDEX map_data_p%s_expiry ON atomix.map_data_p%s (expires_at) '
                       'WHERE expires_at IS NOT NULL', p, p);
        EXECUTE format('CREATE TABLE atomix.object_data_p%s PARTITION OF atomix.object_data '
                       'FOR VALUES IN (%s)', p, p);
        EXECUTE format('ALTER TABLE atomix.object_data_p%s ADD PRIMARY KEY (kind, name)', p);
        EXECUTE format('CREATE INDEX object_data_p%s_deadline ON atomix.object_data_p%s (deadline) '
                       'WHERE deadline IS NOT NULL', p, p);
        EXECUTE format('CREATE TABLE atomix.counter_data_p%s PARTITION OF atomix.counter_data '
                       'FOR VALUES IN (%s)', p, p);
        EXECUTE format('ALTER TABLE atomix.counter_data_p%s ADD PRIMARY KEY (name)', p);
        INSERT INTO atomix.partition_state (partition_id) VALUES (p);
    END LOOP;
END
$create_partitions$;

REVOKE ALL ON ALL TABLES IN SCHEMA atomix FROM PUBLIC;
GRANT SELECT ON ALL TABLES IN SCHEMA atomix TO PUBLIC;

------------------------------------------------------------------------------
-- Types
------------------------------------------------------------------------------

CREATE TYPE atomix.entry AS (
    key        text,
    value      text,
    version    bigint,
    expires_at timestamptz
);

-- Who holds a lock: the fencing token of the grant, the holder's session,
-- the node that session lives on, and when it was granted (log time).
CREATE TYPE atomix.lock_info AS (
    token   bigint,
    session bigint,
    node    int,
    since   timestamptz
);

-- An election's state: term grows with every change of leader; candidates
-- are in line order, the leader first.
CREATE TYPE atomix.term AS (
    term       bigint,
    leader     text,
    candidates text[]
);

------------------------------------------------------------------------------
-- Maps.  Writes are not part of the caller's transaction (like nextval):
-- they are durable once the call returns, even if the caller rolls back.
------------------------------------------------------------------------------

CREATE FUNCTION atomix.map_put(map text, key text, value text,
                               ttl interval DEFAULT NULL, if_version bigint DEFAULT NULL)
    RETURNS bigint AS 'MODULE_PATHNAME', 'atomix_map_put' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.map_put(map text, key text, value bytea,
                               ttl interval DEFAULT NULL, if_version bigint DEFAULT NULL)
    RETURNS bigint AS 'MODULE_PATHNAME', 'atomix_map_put' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.map_insert(map text, key text, value text, ttl interval DEFAULT NULL)
    RETURNS bigint AS 'MODULE_PATHNAME', 'atomix_map_insert' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.map_insert(map text, key text, value bytea, ttl interval DEFAULT NULL)
    RETURNS bigint AS 'MODULE_PATHNAME', 'atomix_map_insert' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.map_get(map text, key text)
    RETURNS text AS 'MODULE_PATHNAME', 'atomix_map_get' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.map_get_bytea(map text, key text)
    RETURNS bytea AS 'MODULE_PATHNAME', 'atomix_map_get_bytea' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.map_get_entry(map text, key text)
    RETURNS atomix.entry AS 'MODULE_PATHNAME', 'atomix_map_get_entry' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.map_remove(map text, key text, if_version bigint DEFAULT NULL)
    RETURNS boolean AS 'MODULE_PATHNAME', 'atomix_map_remove' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.map_entries(map text)
    RETURNS SETOF atomix.entry AS 'MODULE_PATHNAME', 'atomix_map_entries' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.map_size(map text)
    RETURNS bigint AS 'MODULE_PATHNAME', 'atomix_map_size' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.map_clear(map text)
    RETURNS bigint AS 'MODULE_PATHNAME', 'atomix_map_clear' LANGUAGE C VOLATILE;

------------------------------------------------------------------------------
-- Counters.  A counter that was never set reads as 0.
------------------------------------------------------------------------------

CREATE FUNCTION atomix.counter_get(name text)
    RETURNS bigint AS 'MODULE_PATHNAME', 'atomix_counter_get' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.counter_set(name text, value bigint)
    RETURNS bigint AS 'MODULE_PATHNAME', 'atomix_counter_set' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.counter_incr(name text, delta bigint DEFAULT 1)
    RETURNS bigint AS 'MODULE_PATHNAME', 'atomix_counter_incr' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.counter_cas(name text, expected bigint, new bigint)
    RETURNS boolean AS 'MODULE_PATHNAME', 'atomix_counter_cas' LANGUAGE C VOLATILE;

------------------------------------------------------------------------------
-- Sessions.  Locks, candidacies and permits belong to the calling backend's
-- session: it closes when the backend exits and expires when its node stops
-- renewing it for atomix.session_timeout.
------------------------------------------------------------------------------

CREATE FUNCTION atomix.session_valid_until()
    RETURNS timestamptz AS 'MODULE_PATHNAME', 'atomix_session_valid_until' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION atomix.session_valid_until() IS
    'Until when this node vouches for this backend''s session (NULL: no session): act on a lock, permit or leadership only before then';
CREATE FUNCTION atomix.session_id()
    RETURNS bigint AS 'MODULE_PATHNAME', 'atomix_session_id' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION atomix.session_id() IS
    'This backend''s atomix session, or NULL before it first needed one';

------------------------------------------------------------------------------
-- Locks.  A grant's token is a fencing token: it strictly increases per lock.
------------------------------------------------------------------------------

CREATE FUNCTION atomix.lock_acquire(name text, timeout interval DEFAULT NULL)
    RETURNS bigint AS 'MODULE_PATHNAME', 'atomix_lock_acquire' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.lock_try_acquire(name text)
    RETURNS bigint AS 'MODULE_PATHNAME', 'atomix_lock_try_acquire' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.lock_release(name text)
    RETURNS boolean AS 'MODULE_PATHNAME', 'atomix_lock_release' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.lock_holder(name text)
    RETURNS atomix.lock_info AS 'MODULE_PATHNAME', 'atomix_lock_holder' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION atomix.lock_acquire(text, interval) IS
    'Wait (first come, first served) for the lock; returns its fencing token, or NULL after timeout';

------------------------------------------------------------------------------
-- Leader elections.
------------------------------------------------------------------------------

CREATE FUNCTION atomix.election_enter(election text, candidate text)
    RETURNS atomix.term AS 'MODULE_PATHNAME', 'atomix_election_enter' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.election_withdraw(election text, candidate text)
    RETURNS atomix.term AS 'MODULE_PATHNAME', 'atomix_election_withdraw' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.election_anoint(election text, candidate text)
    RETURNS atomix.term AS 'MODULE_PATHNAME', 'atomix_election_anoint' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.election_promote(election text, candidate text)
    RETURNS atomix.term AS 'MODULE_PATHNAME', 'atomix_election_promote' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.election_evict(election text, candidate text)
    RETURNS atomix.term AS 'MODULE_PATHNAME', 'atomix_election_evict' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.election_get(election text)
    RETURNS atomix.term AS 'MODULE_PATHNAME', 'atomix_election_get' LANGUAGE C VOLATILE;

------------------------------------------------------------------------------
-- Values: one versioned, optionally expiring value per name.
------------------------------------------------------------------------------

CREATE FUNCTION atomix.value_set(name text, value text, if_version bigint DEFAULT NULL,
                                 ttl interval DEFAULT NULL)
    RETURNS bigint AS 'MODULE_PATHNAME', 'atomix_value_set' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.value_get(name text)
    RETURNS text AS 'MODULE_PATHNAME', 'atomix_value_get' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.value_get_entry(name text)
    RETURNS atomix.entry AS 'MODULE_PATHNAME', 'atomix_value_get_entry' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.value_delete(name text, if_version bigint DEFAULT NULL)
    RETURNS boolean AS 'MODULE_PATHNAME', 'atomix_value_delete' LANGUAGE C VOLATILE;

------------------------------------------------------------------------------
-- Sets of text elements.
------------------------------------------------------------------------------

CREATE FUNCTION atomix.set_add("set" text, element text, ttl interval DEFAULT NULL)
    RETURNS boolean AS 'MODULE_PATHNAME', 'atomix_set_add' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.set_remove("set" text, element text)
    RETURNS boolean AS 'MODULE_PATHNAME', 'atomix_set_remove' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.set_contains("set" text, element text)
    RETURNS boolean AS 'MODULE_PATHNAME', 'atomix_set_contains' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.set_members("set" text)
    RETURNS SETOF text AS 'MODULE_PATHNAME', 'atomix_set_members' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.set_size("set" text)
    RETURNS bigint AS 'MODULE_PATHNAME', 'atomix_set_size' LANGUAGE C VOLATILE;

------------------------------------------------------------------------------
-- Id generators: unique cluster-wide, increasing on each node (blocks of
-- atomix.id_block_size are reserved per node, like a sequence's CACHE).
------------------------------------------------------------------------------

CREATE FUNCTION atomix.next_id(name text)
    RETURNS bigint AS 'MODULE_PATHNAME', 'atomix_next_id' LANGUAGE C VOLATILE;

------------------------------------------------------------------------------
-- Semaphores.
------------------------------------------------------------------------------

CREATE FUNCTION atomix.semaphore_create(name text, permits int)
    RETURNS boolean AS 'MODULE_PATHNAME', 'atomix_semaphore_create' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.semaphore_acquire(name text, permits int DEFAULT 1,
                                         timeout interval DEFAULT NULL)
    RETURNS boolean AS 'MODULE_PATHNAME', 'atomix_semaphore_acquire' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.semaphore_release(name text, permits int DEFAULT 1)
    RETURNS boolean AS 'MODULE_PATHNAME', 'atomix_semaphore_release' LANGUAGE C VOLATILE;
CREATE FUNCTION atomix.semaphore_available(name text)
    RETURNS int AS 'MODULE_PATHNAME', 'atomix_semaphore_available' LANGUAGE C VOLATILE;

------------------------------------------------------------------------------
-- Watches and multi-key map commits.
------------------------------------------------------------------------------

CREATE FUNCTION atomix.watch(primitive text)
    RETURNS text AS 'MODULE_PATHNAME', 'atomix_watch' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION atomix.watch(text) IS
    'Returns the channel to LISTEN on for changes to the named map, value, lock or election';
CREATE FUNCTION atomix.map_commit(map text, ops jsonb)
    RETURNS bigint AS 'MODULE_PATHNAME', 'atomix_map_commit' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION atomix.map_commit(text, jsonb) IS
    'Apply puts and removes to one map all or nothing; returns the version, or NULL if an if_version did not match';

------------------------------------------------------------------------------
-- Topology, through the atomix_fdw foreign data wrapper: this node's live
-- view as its raft worker publishes it after every loop turn.
------------------------------------------------------------------------------

CREATE FUNCTION atomix._fdw_handler() RETURNS fdw_handler
    AS 'MODULE_PATHNAME', 'atomix_fdw_handler' LANGUAGE C STRICT;
CREATE FUNCTION atomix._fdw_validator(text[], oid) RETURNS void
    AS 'MODULE_PATHNAME', 'atomix_fdw_validator' LANGUAGE C STRICT;
CREATE FOREIGN DATA WRAPPER atomix_fdw
    HANDLER atomix._fdw_handler VALIDATOR atomix._fdw_validator;
CREATE SERVER atomix_local FOREIGN DATA WRAPPER atomix_fdw;

CREATE FOREIGN TABLE atomix.nodes (
    node_id      int,
    address      text,
    state        text,          -- up | down
    last_contact timestamptz,
    is_local     boolean
) SERVER atomix_local OPTIONS (table 'nodes');

CREATE FOREIGN TABLE atomix.partitions (
    partition_id  int,
    leader_node   int,
    term          bigint,
    commit_index  bigint,
    applied_index bigint,        -- applied to the partition tables
    replicas      int[],
    -- this node's replica: serving | halted (after a machine failure) | unavailable
    status        text,
    last_error    text,          -- the last machine failure, kept after recovery
    retry_at      timestamptz,   -- when halted: the next restart of its Raft group
    apply_failures bigint,       -- machine failures since the worker started
    resends       bigint,        -- forwarded requests this node resent to a leader
    duplicates_dropped bigint    -- copies of requests answered without applying them
) SERVER atomix_local OPTIONS (table 'partitions');

CREATE FOREIGN TABLE atomix.replicas (
    partition_id  int,
    node_id       int,
    role          text,          -- leader | follower | standby | candidate | unavailable
    applied_index bigint,        -- this node: applied to its tables; others: replicated
                                 -- index as seen by this node when it leads, else NULL
    lag           bigint         -- entries behind (commit or leader's log), NULL if unknown
) SERVER atomix_local OPTIONS (table 'replicas');

CREATE FOREIGN TABLE atomix.stats (
    partition_id     int,
    role             text,             -- this node's replica now: leader | follower | ...
    since            timestamptz,      -- the counters count from this raft worker start
    proposals        bigint,           -- entries this node proposed as leader
    log_writes       bigint,           -- Raft log writes (each durable before it completes)
    entries_applied  bigint,           -- entries applied to the partition tables here
    commands_applied bigint,           -- commands in them
    bytes_applied    bigint,
    apply_time       double precision, -- milliseconds spent applying them
    forwarded        bigint,           -- commands sent to the leader on another node
    forwards_taken   bigint,           -- other nodes' commands taken as the leader
    elections_won    bigint,           -- times this node became the leader
    read_rounds      bigint,           -- leadership confirmations (read index) led here
    reads_confirmed  bigint,           -- reads, of any node, those rounds confirmed
    reads_served     bigint,           -- this node's linearizable reads served by read index
    raft_messages    bigint,           -- Raft messages this replica sent (heartbeats included)
    hibernating      boolean,          -- idle: no heartbeats until something happens
    hibernations     bigint            -- times this replica went idle
) SERVER atomix_local OPTIONS (table 'stats');

GRANT SELECT ON atomix.nodes, atomix.partitions, atomix.replicas, atomix.stats TO PUBLIC;

COMMENT ON FUNCTION atomix.map_put(text, text, text, interval, bigint) IS
    'Store value under key; returns the new version, or NULL when if_version does not match';
COMMENT ON FUNCTION atomix.counter_set(text, bigint) IS
    'Set the counter; returns its previous value (0 if it did not exist)';
