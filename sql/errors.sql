-- Bad input: every refusal has a SQLSTATE and a hint, and nothing is applied.
\set SHOW_CONTEXT never

CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;

-- NULLs
SELECT atomix.map_put(NULL, 'k', 'v');
SELECT atomix.map_put('m', NULL, 'v');
SELECT atomix.map_put('m', 'k', NULL::text);
SELECT atomix.map_get(NULL, 'k');
SELECT atomix.counter_incr('c', NULL);
SELECT atomix.counter_set('c', NULL);
SELECT atomix.counter_cas('c', 1, NULL);
SELECT atomix.counter_get(NULL);

-- empty and oversized names and keys
SELECT atomix.map_put('', 'k', 'v');
SELECT atomix.counter_incr('');
SELECT atomix.map_put(repeat('n', 256), 'k', 'v');
SELECT atomix.map_put(repeat('n', 255), 'k', 'v') IS NOT NULL AS name_at_limit_ok;
SELECT atomix.map_put('m', repeat('k', 1025), 'v');
SELECT atomix.map_put('m', repeat('k', 1024), 'v') IS NOT NULL AS key_at_limit_ok;
SELECT atomix.map_size(repeat('n', 300));

-- values over atomix.max_value_size (configurable)
SET atomix.max_value_size = '1kB';
SELECT atomix.map_put('m', 'big', repeat('v', 1025));
SELECT atomix.map_put('m', 'big', repeat('v', 1024)) IS NOT NULL AS value_at_limit_ok;
RESET atomix.max_value_size;
SELECT atomix.map_put('m', 'huge', repeat('v', 2 * 1024 * 1024));

-- ttl must be positive
SELECT atomix.map_put('m', 'k', 'v', ttl => '-1 second');
SELECT atomix.map_put('m', 'k', 'v', ttl => '0');
SELECT atomix.map_insert('m', 'k2', 'v', ttl => '-5 minutes');
SELECT atomix.map_put('m', 'k', 'v', ttl => '100000000 years');

-- none of the refused writes left anything behind
SELECT atomix.map_get('m', 'k') IS NULL AS k_absent, atomix.map_get('m', 'k2') IS NULL AS k2_absent,
       atomix.map_get('m', 'big') = repeat('v', 1024) AS big_is_the_accepted_one,
       atomix.map_get('m', 'huge') IS NULL AS huge_absent, atomix.counter_get('c') AS c;

-- settings are validated
SET atomix.read_consistency = 'strong';
SET atomix.partitions = 4;

-- SQLSTATEs, for clients that dispatch on them
SELECT atomix.map_put('m', 'bin', '\xff'::bytea) IS NOT NULL;
SELECT q, pg_temp.sqlstate_of(q) FROM (VALUES
    ($$SELECT atomix.map_put(NULL, 'k', 'v')$$),
    ($$SELECT atomix.map_put('', 'k', 'v')$$),
    ($$SELECT atomix.map_put(repeat('n', 256), 'k', 'v')$$),
    ($$SELECT atomix.map_put('m', repeat('k', 1025), 'v')$$),
    ($$SELECT atomix.map_put('m', 'k', repeat('v', 2000000))$$),
    ($$SELECT atomix.map_put('m', 'k', 'v', ttl => '-1s')$$),
    ($$SELECT atomix.counter_set('big', 9223372036854775807)$$),
    ($$SELECT atomix.counter_incr('big')$$),
    ($$SELECT atomix.map_get('m', 'bin')$$)
) AS t(q);

-- atomix serves one database: creating it elsewhere is refused
CREATE DATABASE atomix_elsewhere;
\c atomix_elsewhere
\set SHOW_CONTEXT never
CREATE EXTENSION atomix;
\c postgres
DROP DATABASE atomix_elsewhere;
