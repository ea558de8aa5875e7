-- atomix 0.3 -> 0.4: idle partitions hibernate (no Raft heartbeats while
-- nothing happens); atomix.stats shows it.  Nothing stored changes.
\echo Use "ALTER EXTENSION atomix UPDATE TO '0.4'" to load this file. \quit

ALTER FOREIGN TABLE atomix.stats
    ADD COLUMN raft_messages bigint,   -- Raft messages this replica sent (heartbeats included)
    ADD COLUMN hibernating   boolean,  -- idle: no heartbeats until something happens
    ADD COLUMN hibernations  bigint;   -- times this replica went idle
