-- atomix 0.2 -> 0.3: atomix.stats, what each local replica did (linearizable
-- reads are served by read index from 0.3 on; nothing stored changes).
\echo Use "ALTER EXTENSION atomix UPDATE TO '0.3'" to load this file. \quit

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
    reads_served     bigint            -- this node's linearizable reads served by read index
) SERVER atomix_local OPTIONS (table 'stats');

GRANT SELECT ON atomix.stats TO PUBLIC;
