-- map_get, counter_get and the coordination getters read one row by its
-- primary key without SQL (src/sql/pk_read.h), with the checks a query has:
-- SELECT privilege on the leaf table, row-level security (such a table is
-- read by SQL, so its policies apply), and the latest committed state
-- whatever the caller's isolation level.
\set SHOW_CONTEXT never

SELECT atomix.map_put('rp', 'k', 'v1') > 0 AS put;
SELECT atomix.counter_set('rp-c', 7) AS previous;
SELECT atomix.map_put('rp', 'big', repeat('y', 200000)) > 0 AS put_big;
SELECT atomix.map_get('rp', 'k') AS found, atomix.map_get('rp', 'nope') IS NULL AS absent,
       atomix.counter_get('rp-c') AS counter, atomix.counter_get('rp-none') AS no_counter,
       length(atomix.map_get('rp', 'big')) AS toasted_length;
SELECT version = (SELECT version FROM atomix.map_data WHERE map = 'rp' AND key = 'k') AS same_version
  FROM atomix.map_get_entry('rp', 'k');
SELECT atomix.lock_acquire('rp-lock') > 0 AS locked;
SELECT (atomix.lock_holder('rp-lock')).token > 0 AS holder_seen;
SELECT atomix.lock_release('rp-lock') AS released;

-- REPEATABLE READ: an atomix read sees what was acknowledged after the
-- caller's snapshot was taken (reads use the latest snapshot)
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT atomix.map_get('rp', 'k') AS before;
SELECT atomix.map_put('rp', 'k', 'v2') > 0 AS put;
SELECT atomix.map_get('rp', 'k') AS after;
SELECT count(*) AS table_snapshot_still_old FROM atomix.map_data
  WHERE map = 'rp' AND key = 'k' AND value = convert_to('v1', 'UTF8');
COMMIT;

-- the leaf table's SELECT privilege is checked, as a query would
CREATE ROLE rp_reader;
SELECT format('REVOKE SELECT ON %s FROM PUBLIC', tableoid::regclass) AS revoke_sql
  FROM atomix.map_data WHERE map = 'rp' AND key = 'k' \gset
:revoke_sql;
SET ROLE rp_reader;
DO $$
BEGIN
    PERFORM atomix.map_get('rp', 'k');
    RAISE NOTICE 'read';
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'refused: %', SQLSTATE;
END $$;
SELECT atomix.counter_get('rp-c') AS other_tables_readable;
RESET ROLE;
SELECT replace(:'revoke_sql', 'REVOKE SELECT ON', 'GRANT SELECT ON') AS grant_sql \gset
SELECT replace(:'grant_sql', 'FROM PUBLIC', 'TO PUBLIC') AS grant_sql \gset
:grant_sql;
SET ROLE rp_reader;
SELECT atomix.map_get('rp', 'k') AS readable_again;
RESET ROLE;

-- row-level security on the leaf: read by SQL, and the policy hides the row
SELECT tableoid::regclass AS leaf FROM atomix.map_data WHERE map = 'rp' AND key = 'k' \gset
ALTER TABLE :leaf ENABLE ROW LEVEL SECURITY;
CREATE POLICY rp_hide ON :leaf FOR SELECT TO rp_reader USING (key <> 'k');
CREATE POLICY rp_all ON :leaf FOR SELECT TO PUBLIC USING (true);
SET ROLE rp_reader;
SELECT atomix.map_get('rp', 'k') AS visible_to_reader;
RESET ROLE;
DROP POLICY rp_all ON :leaf;
SET ROLE rp_reader;
SELECT atomix.map_get('rp', 'k') IS NULL AS hidden_by_policy;
RESET ROLE;
SELECT atomix.map_get('rp', 'k') AS owner_bypasses_policy;
DROP POLICY rp_hide ON :leaf;
ALTER TABLE :leaf DISABLE ROW LEVEL SECURITY;
DROP ROLE rp_reader;
SELECT atomix.map_remove('rp', 'k') AS removed, atomix.map_remove('rp', 'big') AS removed_big;
