-- Topology foreign tables: this node's live view of its partitions.
\set SHOW_CONTEXT never

SELECT node_id, address, state, last_contact IS NOT NULL AS has_contact, is_local FROM atomix.nodes;

-- every partition is led by this single node, in some term, fully applied
SELECT atomix.counter_incr('topology-probe') > 0;
SELECT count(*) = current_setting('atomix.partitions')::int AS all_partitions,
       bool_and(leader_node = 1) AS led_here,
       bool_and(term >= 1) AS has_term,
       bool_and(replicas = '{1}') AS one_replica,
       bool_and(commit_index >= applied_index) AS commit_ahead_of_apply
  FROM atomix.partitions;

SELECT count(*) AS replicas, bool_and(role = 'leader') AS all_leaders, max(lag) >= 0 AS lag_known
  FROM atomix.replicas;

-- applied indexes agree with the partition tables (which skip the entries
-- that change no state: configuration and barriers)
SELECT bool_and(p.applied_index >= s.applied_index) AS matches_partition_state
  FROM atomix.partitions p JOIN atomix.partition_state s USING (partition_id);

-- a write advances its partition's applied index
SELECT applied_index AS before FROM atomix.partitions WHERE partition_id = 0 \gset
SELECT count(atomix.map_put('topo', 'k' || g, 'v')) FROM generate_series(1, 40) g;
SELECT applied_index > :before AS advanced FROM atomix.partitions WHERE partition_id = 0;

-- joins and filters work like on any table
SELECT r.role, count(*) FROM atomix.replicas r JOIN atomix.nodes n USING (node_id)
 GROUP BY r.role;

-- options are validated
CREATE FOREIGN TABLE atomix_bad (x int) SERVER atomix_local OPTIONS (table 'leaders');
CREATE FOREIGN TABLE atomix_bad (x int) SERVER atomix_local;
CREATE FOREIGN TABLE atomix_extra (node_id int, nonsense text) SERVER atomix_local OPTIONS (table 'nodes');
SELECT node_id, nonsense FROM atomix_extra;
DROP FOREIGN TABLE atomix_extra;

-- partition health: every partition serves, nothing failed, nothing resent
SELECT bool_and(status = 'serving') AS serving, bool_and(last_error IS NULL) AS no_error,
       bool_and(retry_at IS NULL) AS no_retry, sum(apply_failures) AS apply_failures,
       sum(resends) AS resends, sum(duplicates_dropped) AS duplicates
  FROM atomix.partitions;

-- atomix.stats: one row per partition; a write and linearizable reads of one
-- key are counted in that key's partition (one node: it leads everything).
-- A lone voter's lease never ends: its reads need no confirmation round, and
-- after the first the backends read without the worker (reads_confirmed)
SELECT count(*) = current_setting('atomix.partitions')::int AS one_row_per_partition,
       bool_and(role = 'leader') AS all_led_here, bool_and(since IS NOT NULL) AS since_known
  FROM atomix.stats;
CREATE TEMP TABLE stats_before AS SELECT * FROM atomix.stats;
SELECT atomix.map_put('stats', 'k', 'v') > 0 AS put, atomix.map_get('stats', 'k') AS got;
SELECT count(*) FILTER (WHERE atomix.map_get('stats', 'k') = 'v') AS read_20 FROM generate_series(1, 20);
SELECT s.partition_id = d.partition_id AS counted_in_the_key_partition,
       s.proposals - b.proposals >= 1 AS proposed, s.log_writes - b.log_writes >= 1 AS written,
       s.entries_applied - b.entries_applied >= 1 AS applied,
       s.commands_applied - b.commands_applied >= 1 AS commands,
       s.bytes_applied > b.bytes_applied AS bytes, s.apply_time >= b.apply_time AS time,
       s.read_rounds = b.read_rounds AS no_read_round, s.reads_served - b.reads_served = 21 AS reads_served,
       s.reads_confirmed - b.reads_confirmed <= 1 AS reads_without_the_worker,
       s.forwarded = 0 AND s.forwards_taken = 0 AS nothing_forwarded
  FROM atomix.stats s JOIN stats_before b USING (partition_id)
  JOIN atomix.map_data d ON d.partition_id = s.partition_id AND d.map = 'stats' AND d.key = 'k';
SELECT atomix.map_remove('stats', 'k') AS removed;
DROP TABLE stats_before;
CREATE FOREIGN TABLE atomix_bad_stats (x int) SERVER atomix_local OPTIONS (table 'statistics');

-- the fault-injection settings are for tests: off by default, and no
-- session can set them (only the server configuration)
SELECT name, setting, context FROM pg_settings WHERE name LIKE 'atomix.test%' ORDER BY 1;
SET atomix.test_fail_apply = '0';
CREATE ROLE atomix_plain;
SET ROLE atomix_plain;
ALTER SYSTEM SET atomix.test_hold_outbound = '*';
SHOW atomix.test_hold_outbound;
RESET ROLE;
DROP ROLE atomix_plain;
