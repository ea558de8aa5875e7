-- Maps: every function, versions, compare-and-set, TTL, consistency modes,
-- and that atomix writes are not part of the caller's transaction.
\set SHOW_CONTEXT never

SELECT atomix.map_put('orders', 'o-1', 'new') AS v1 \gset
SELECT atomix.map_get('orders', 'o-1');
SELECT atomix.map_put('orders', 'o-1', 'paid') AS v2 \gset
SELECT :v2 > :v1 AS version_increases;
SELECT key, value, version = :v2 AS current_version, expires_at
  FROM atomix.map_get_entry('orders', 'o-1');
SELECT atomix.map_get('orders', 'missing') IS NULL AS absent_is_null;
SELECT atomix.map_get_entry('orders', 'missing') IS NULL AS absent_entry_is_null;

-- compare-and-set on the version
SELECT atomix.map_put('orders', 'o-1', 'stale', if_version => :v1) IS NULL AS stale_cas_refused;
SELECT atomix.map_get('orders', 'o-1');
SELECT atomix.map_put('orders', 'o-1', 'shipped', if_version => :v2) > :v2 AS cas_applied;
SELECT atomix.map_get('orders', 'o-1');
SELECT atomix.map_put('orders', 'nope', 'x', if_version => 1) IS NULL AS cas_on_absent_refused;

-- insert only when absent
SELECT atomix.map_insert('orders', 'o-2', 'new') IS NOT NULL AS inserted;
SELECT atomix.map_insert('orders', 'o-2', 'again') IS NULL AS insert_refused;
SELECT atomix.map_get('orders', 'o-2');

-- remove, unconditional and with if_version
SELECT version AS v3 FROM atomix.map_get_entry('orders', 'o-2') \gset
SELECT atomix.map_remove('orders', 'o-2', if_version => :v3 - 1) AS removed_wrong_version;
SELECT atomix.map_remove('orders', 'o-2', if_version => :v3) AS removed_right_version;
SELECT atomix.map_remove('orders', 'o-2') AS removed_again;

-- entries, size, clear; maps are independent
SELECT atomix.map_put('orders', 'o-' || i, 'v' || i) IS NOT NULL FROM generate_series(3, 6) i;
SELECT atomix.map_put('other', 'o-3', 'elsewhere') IS NOT NULL;
SELECT key, value FROM atomix.map_entries('orders');
SELECT atomix.map_size('orders'), atomix.map_size('other'), atomix.map_size('never-used');
SELECT atomix.map_clear('orders');
SELECT atomix.map_size('orders'), atomix.map_get('other', 'o-3');
SELECT count(*) FROM atomix.map_entries('orders');

-- keys may be empty; values may be empty or binary
SELECT atomix.map_put('misc', '', '') IS NOT NULL;
SELECT atomix.map_get('misc', '') = '' AS empty_roundtrip;
SELECT atomix.map_put('misc', 'bin', '\x00ff10'::bytea) IS NOT NULL;
SELECT atomix.map_get_bytea('misc', 'bin');
SELECT atomix.map_get('misc', 'bin');  -- not valid text in this encoding
SELECT key FROM atomix.map_entries('misc');  -- likewise
SELECT atomix.map_insert('misc', 'bin2', '\xdead'::bytea) IS NOT NULL;
SELECT atomix.map_get_bytea('misc', 'bin2');
SELECT atomix.map_put('misc', 'unicode', 'grüße ✓') IS NOT NULL;
SELECT atomix.map_get('misc', 'unicode');
SELECT length(atomix.map_get('misc', 'big')) IS NULL,
       atomix.map_put('misc', 'big', repeat('x', 500000)) IS NOT NULL,
       length(atomix.map_get('misc', 'big'));

-- ttl: the entry is gone for every reader once the leader's log time passes it
SELECT atomix.map_put('session', 'short', 'soon gone', ttl => '300 milliseconds') IS NOT NULL;
SELECT atomix.map_put('session', 'long', 'stays', ttl => '1 hour') IS NOT NULL;
SELECT key, expires_at > now() AS in_future FROM atomix.map_entries('session');
SELECT pg_sleep(0.8);
SELECT key, value FROM atomix.map_entries('session');
SELECT atomix.map_get('session', 'short') IS NULL AS expired;
SELECT count(*) FROM atomix.map_data WHERE map = 'session';  -- purged from the table too
-- an expired key can be inserted again
SELECT atomix.map_put('session', 'short', 'back') IS NOT NULL;
SELECT (atomix.map_get_entry('session', 'short')).value, atomix.map_get('session', 'short');
-- a put without ttl removes the ttl
SELECT atomix.map_put('session', 'long', 'forever') IS NOT NULL;
SELECT expires_at IS NULL AS no_expiry FROM atomix.map_get_entry('session', 'long');

-- writes are not part of the caller's transaction (like nextval)
BEGIN;
SELECT atomix.map_put('tx', 'k', 'written in a rolled back transaction') IS NOT NULL;
ROLLBACK;
SELECT atomix.map_get('tx', 'k');

-- reads see the latest committed state even under REPEATABLE READ
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT atomix.map_get('tx', 'k2') IS NULL AS absent_first;
SELECT atomix.map_put('tx', 'k2', 'later') IS NOT NULL;
SELECT atomix.map_get('tx', 'k2');
COMMIT;

-- sequential reads read the local replica
SET atomix.read_consistency = 'sequential';
SELECT atomix.map_get('tx', 'k2'), atomix.map_size('tx');
SELECT key FROM atomix.map_entries('tx');
RESET atomix.read_consistency;
SET atomix.read_consistency = 'eventual';

-- state lives in ordinary tables: readable by everyone, writable by nobody
CREATE ROLE atomix_reader LOGIN;
SET ROLE atomix_reader;
SELECT map, key, convert_from(value, 'UTF8') AS value FROM atomix.map_data WHERE map = 'tx' ORDER BY key;
SELECT atomix.map_put('tx', 'by-reader', 'ok') IS NOT NULL AS ordinary_role_can_call;
INSERT INTO atomix.map_data VALUES (0, 'm', 'tx', 'forged', 'x', 1, NULL);
UPDATE atomix.map_data_p0 SET value = 'x';
DELETE FROM atomix.partition_state;
RESET ROLE;
DROP ROLE atomix_reader;
SELECT count(*) = current_setting('atomix.partitions')::int FROM atomix.partition_state;
SELECT bool_and(applied_index > 0) AS every_partition_applied FROM atomix.partition_state;
