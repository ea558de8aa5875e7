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
