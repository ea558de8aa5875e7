-- Coordination primitives (docs/coordination.md) from one session: every
-- function, then every refusal.  Tokens, versions, session ids and ids are
-- not fixed numbers, so they are compared, not printed.  Refusals are shown
-- as "SQLSTATE: message (HINT: hint)" by pg_temp.err, one row per call.
\set SHOW_CONTEXT never

CREATE TEMP TABLE outcomes (n serial, call text, result text);
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text;
    msg text;
    hint text;
    result text := 'no error';
BEGIN
    BEGIN
        EXECUTE q;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
        result := st || ': ' || msg || CASE WHEN hint <> '' THEN ' (HINT: ' || hint || ')' ELSE ' (no hint)' END;
    END;
    INSERT INTO pg_temp.outcomes (call, result) VALUES (q, result);
    RETURN result;
END
$$;

SHOW atomix.session_timeout;
SHOW atomix.id_block_size;

------------------------------------------------------------------------------
-- Sessions: none until the backend first needs one (values, sets and ids do
-- not); then node_id << 48 | sequence, the same for the whole backend.
------------------------------------------------------------------------------
SELECT atomix.session_id() IS NULL AS no_session_yet;
SELECT atomix.value_set('c-first', 'x') IS NOT NULL AS value_written,
       atomix.set_add('c-first', 'x') AS set_added,
       atomix.next_id('c-first') IS NOT NULL AS got_id,
       atomix.lock_holder('c-first') IS NULL AS no_holder,
       (atomix.election_get('c-first')).term AS term;
SELECT atomix.session_id() IS NULL AS still_no_session,
       atomix.session_valid_until() IS NULL AS nothing_vouched;

------------------------------------------------------------------------------
-- Locks
------------------------------------------------------------------------------
SELECT atomix.lock_acquire('c-lock') AS t1 \gset
SELECT :t1 > 0 AS token_positive,
       atomix.session_id() IS NOT NULL AS has_session,
       atomix.session_id() >> 48 AS session_node,
       atomix.session_id() & x'ffffffffffff'::bigint > 0 AS has_sequence;
-- the node vouches for the session a while ahead (session_timeout - 1/8 of it)
SELECT atomix.session_valid_until() > clock_timestamp() AS vouched_ahead,
       atomix.session_valid_until() <= clock_timestamp()
         + current_setting('atomix.session_timeout')::interval AS within_timeout;
SELECT atomix.session_id() AS sid \gset
SELECT token = :t1 AS token_matches, session = :sid AS my_session, node,
       since BETWEEN clock_timestamp() - interval '1 minute' AND clock_timestamp() AS since_recent
  FROM atomix.lock_holder('c-lock');
-- not reentrant: acquiring a lock already held returns the token held
SELECT atomix.lock_acquire('c-lock') = :t1 AS acquire_same_token,
       atomix.lock_try_acquire('c-lock') = :t1 AS try_same_token,
       atomix.lock_acquire('c-lock', '0') = :t1 AS zero_timeout_same_token,
       atomix.lock_acquire('c-lock', '1 second') = :t1 AS timeout_same_token;
SELECT atomix.lock_release('c-lock') AS released;
SELECT atomix.lock_release('c-lock') AS released_again;
SELECT atomix.lock_release('c-never-held') AS released_unheld;
SELECT atomix.lock_holder('c-lock') IS NULL AS free;
SELECT * FROM atomix.lock_holder('c-lock');
SELECT * FROM atomix.lock_holder('c-never-held');
-- a free lock is granted at once, whatever the timeout; tokens increase
SELECT atomix.lock_try_acquire('c-lock') AS t2 \gset
SELECT :t2 > :t1 AS token_increases;
SELECT atomix.lock_release('c-lock');
SELECT atomix.lock_acquire('c-lock', '0') > :t2 AS zero_timeout_grants_free_lock;
SELECT atomix.lock_release('c-lock');
SELECT atomix.lock_acquire('c-lock', '10 seconds') > :t2 AS timeout_grants_free_lock;
SELECT atomix.lock_release('c-lock');
SELECT atomix.lock_acquire('c-lock', NULL) > :t2 AS null_timeout_grants_free_lock;
SELECT atomix.lock_release('c-lock');
SELECT atomix.lock_acquire('c-lock', '100000000 years') > :t2 AS huge_timeout_grants_free_lock;
SELECT atomix.session_id() = :sid AS same_session;
-- tokens strictly increase per lock over many grants
CREATE TEMP TABLE grants AS
    SELECT i, atomix.lock_acquire('c-many') AS token, atomix.lock_release('c-many') AS released
      FROM generate_series(1, 50) i;
SELECT count(*) AS grants, bool_and(released) AS all_released,
       bool_and(token > prev) AS strictly_increasing
  FROM (SELECT token, released, lag(token) OVER (ORDER BY i) AS prev FROM grants) g;
-- calls are not part of the transaction: a rolled back acquire stays
BEGIN;
SELECT atomix.lock_acquire('c-tx') IS NOT NULL AS acquired_in_transaction;
ROLLBACK;
SELECT (atomix.lock_holder('c-tx')).session = :sid AS still_held_after_rollback;
BEGIN;
SELECT atomix.lock_release('c-tx') AS released_in_transaction;
ROLLBACK;
SELECT atomix.lock_holder('c-tx') IS NULL AS still_released_after_rollback;
-- names: 1-255 bytes, any characters
SELECT atomix.lock_acquire(repeat('n', 255)) IS NOT NULL AS name_255_bytes,
       atomix.lock_release(repeat('n', 255));
SELECT atomix.lock_acquire(repeat('é', 127)) IS NOT NULL AS name_254_bytes_multibyte,
       atomix.lock_release(repeat('é', 127));
SELECT atomix.lock_acquire(' ') IS NOT NULL AS blank_name, atomix.lock_release(' ');
-- the state is in ordinary tables
SELECT atomix.lock_acquire('c-visible') IS NOT NULL;
SELECT kind, name FROM atomix.object_data WHERE name = 'c-visible';
SELECT atomix.lock_release('c-visible');

------------------------------------------------------------------------------
-- Leader elections (one session may own several candidates)
------------------------------------------------------------------------------
SELECT * FROM atomix.election_get('c-elect');
SELECT * FROM atomix.election_enter('c-elect', 'a');
SELECT * FROM atomix.election_enter('c-elect', 'b');
SELECT * FROM atomix.election_enter('c-elect', 'c');
SELECT * FROM atomix.election_enter('c-elect', 'a');   -- again: nothing changes
SELECT * FROM atomix.election_enter('c-elect', 'd');
SELECT * FROM atomix.election_get('c-elect');
-- promote: next in line behind the leader
SELECT * FROM atomix.election_promote('c-elect', 'd');
SELECT * FROM atomix.election_promote('c-elect', 'd');  -- already next
-- anoint: leader now; term + 1
SELECT * FROM atomix.election_anoint('c-elect', 'c');
SELECT * FROM atomix.election_anoint('c-elect', 'c');   -- already leads: nothing changes
SELECT * FROM atomix.election_promote('c-elect', 'c');  -- the leader: nothing changes
-- unknown candidates change nothing
SELECT * FROM atomix.election_anoint('c-elect', 'zz');
SELECT * FROM atomix.election_promote('c-elect', 'zz');
SELECT * FROM atomix.election_withdraw('c-elect', 'zz');
SELECT * FROM atomix.election_evict('c-elect', 'zz');
SELECT * FROM atomix.election_anoint('c-nothing', 'a');
SELECT * FROM atomix.election_get('c-nothing');
-- withdraw a follower: the line closes up, same term
SELECT * FROM atomix.election_withdraw('c-elect', 'b');
-- withdraw the leader: the next in line leads, term + 1
SELECT * FROM atomix.election_withdraw('c-elect', 'c');
-- evict any candidate
SELECT * FROM atomix.election_evict('c-elect', 'a');
SELECT * FROM atomix.election_evict('c-elect', 'd');
SELECT * FROM atomix.election_enter('c-elect', 'e');
SELECT * FROM atomix.election_get('c-elect');
-- candidate ids: any non-empty text
SELECT * FROM atomix.election_enter('c-elect-2', repeat('x', 255));
SELECT (atomix.election_withdraw('c-elect-2', repeat('x', 255))).candidates;
-- elections are separate from locks of the same name
SELECT atomix.lock_acquire('c-elect') IS NOT NULL, atomix.lock_release('c-elect');
SELECT * FROM atomix.election_get('c-elect');

------------------------------------------------------------------------------
-- Values
------------------------------------------------------------------------------
SELECT atomix.value_get('c-val') IS NULL AS absent, atomix.value_get_entry('c-val') IS NULL AS no_entry;
SELECT atomix.value_set('c-val', 'one') AS v1 \gset
SELECT atomix.value_get('c-val');
SELECT key, value, version = :v1 AS version_matches, expires_at FROM atomix.value_get_entry('c-val');
SELECT atomix.value_set('c-val', 'two', if_version => :v1) AS v2 \gset
SELECT :v2 > :v1 AS version_increases, atomix.value_get('c-val');
SELECT atomix.value_set('c-val', 'three', if_version => :v1) IS NULL AS stale_version_refused,
       atomix.value_get('c-val');
SELECT atomix.value_set('c-val-absent', 'x', if_version => :v2) IS NULL AS absent_with_version_refused,
       atomix.value_get('c-val-absent') IS NULL AS still_absent;
SELECT atomix.value_delete('c-val', if_version => :v1) AS stale_delete, atomix.value_get('c-val');
SELECT atomix.value_delete('c-val', if_version => :v2) AS deleted;
SELECT atomix.value_get('c-val') IS NULL AS gone, atomix.value_get_entry('c-val') IS NULL AS no_entry;
SELECT atomix.value_delete('c-val') AS delete_absent;
SELECT atomix.value_set('c-val', '') > :v2 AS empty_value_set, atomix.value_get('c-val') = '' AS reads_empty;
SELECT atomix.value_delete('c-val') AS delete_unconditional;
SELECT atomix.value_set('c-val', 'ünïcödé') IS NOT NULL, atomix.value_get('c-val');
-- ttl: gone once it has passed; a set without ttl clears it
SELECT atomix.value_set('c-val-ttl', 'soon gone', ttl => '500 milliseconds') IS NOT NULL;
SELECT atomix.value_set('c-val-keep', 'stays', ttl => '500 milliseconds') IS NOT NULL;
SELECT expires_at BETWEEN clock_timestamp() AND clock_timestamp() + interval '1 second' AS expires_soon
  FROM atomix.value_get_entry('c-val-ttl');
SELECT atomix.value_set('c-val-keep', 'stays') IS NOT NULL;
SELECT expires_at FROM atomix.value_get_entry('c-val-keep');
SELECT pg_sleep(1);
SELECT atomix.value_get('c-val-ttl') IS NULL AS expired, atomix.value_get('c-val-keep');
-- values, maps, sets, counters and locks of the same name are separate
SELECT atomix.map_put('c-shared', '', 'map value') IS NOT NULL,
       atomix.value_set('c-shared', 'value value') IS NOT NULL,
       atomix.set_add('c-shared', '') AS set_added,
       atomix.counter_incr('c-shared') AS counter;
SELECT atomix.map_get('c-shared', ''), atomix.value_get('c-shared'), atomix.set_members('c-shared') = '' AS set_has_empty,
       atomix.counter_get('c-shared');
SELECT kind, map, key, convert_from(value, 'UTF8') AS value FROM atomix.map_data WHERE map = 'c-shared' ORDER BY kind;
SELECT atomix.value_delete('c-shared'), atomix.map_get('c-shared', ''), atomix.set_contains('c-shared', '');

------------------------------------------------------------------------------
-- Sets
------------------------------------------------------------------------------
SELECT atomix.set_add('c-set', 'b') AS b, atomix.set_add('c-set', 'a') AS a, atomix.set_add('c-set', 'c') AS c,
       atomix.set_add('c-set', 'a') AS a_again;
SELECT atomix.set_contains('c-set', 'a') AS has_a, atomix.set_contains('c-set', 'z') AS has_z,
       atomix.set_contains('c-no-set', 'a') AS unknown_set;
SELECT * FROM atomix.set_members('c-set');
SELECT atomix.set_size('c-set');
SELECT atomix.set_remove('c-set', 'b') AS removed, atomix.set_remove('c-set', 'b') AS removed_again,
       atomix.set_remove('c-set', 'zz') AS removed_absent, atomix.set_remove('c-no-set', 'a') AS unknown_set;
SELECT array_agg(m ORDER BY n) AS members FROM atomix.set_members('c-set') WITH ORDINALITY AS t(m, n);
SELECT atomix.set_size('c-no-set') AS size, (SELECT count(*) FROM atomix.set_members('c-no-set')) AS members;
-- elements are spread over partitions; members come back sorted
SELECT bool_and(atomix.set_add('c-big', 'e' || lpad(i::text, 3, '0'))) AS all_added FROM generate_series(100, 1, -1) i;
SELECT atomix.set_size('c-big') AS size,
       array_agg(m ORDER BY n) = (SELECT array_agg('e' || lpad(i::text, 3, '0') ORDER BY i) FROM generate_series(1, 100) i)
         AS sorted
  FROM atomix.set_members('c-big') WITH ORDINALITY AS t(m, n);
SELECT count(DISTINCT partition_id) > 1 AS spread FROM atomix.map_data WHERE kind = 's' AND map = 'c-big';
-- empty and long elements
SELECT atomix.set_add('c-set-odd', '') AS empty_element, atomix.set_add('c-set-odd', repeat('k', 1024)) AS long_element,
       atomix.set_contains('c-set-odd', '') AS has_empty, atomix.set_size('c-set-odd') AS size;
-- ttl: the element disappears; a present element keeps its ttl (or lack of one)
SELECT atomix.set_add('c-set-ttl', 'e', ttl => '500 milliseconds') AS added_with_ttl;
SELECT atomix.set_add('c-set-ttl', 'e') AS readded_without_ttl;
SELECT atomix.set_add('c-set-ttl', 'f') AS added;
SELECT atomix.set_add('c-set-ttl', 'f', ttl => '500 milliseconds') AS readded_with_ttl;
SELECT pg_sleep(1);
SELECT array_agg(m ORDER BY n) AS members, atomix.set_size('c-set-ttl') AS size
  FROM atomix.set_members('c-set-ttl') WITH ORDINALITY AS t(m, n);
SELECT atomix.set_contains('c-set-ttl', 'e') AS has_e;

------------------------------------------------------------------------------
-- Id generators: unique and strictly increasing on this node, across block
-- boundaries (atomix.id_block_size)
------------------------------------------------------------------------------
CREATE TEMP TABLE ids AS SELECT i, atomix.next_id('c-ids') AS id FROM generate_series(1, 2500) i;
SELECT count(*) AS ids, count(DISTINCT id) AS distinct_ids, min(id) > 0 AS positive,
       bool_and(id > prev) AS strictly_increasing
  FROM (SELECT id, lag(id) OVER (ORDER BY i) AS prev FROM ids) s;
SELECT atomix.next_id('c-ids') > (SELECT max(id) FROM ids) AS still_increasing;
-- generators are independent, and ids are not part of the transaction
SELECT atomix.next_id('c-ids-2') AS first_other \gset
BEGIN;
SELECT atomix.next_id('c-ids-2') > :first_other AS in_transaction;
ROLLBACK;
SELECT atomix.next_id('c-ids-2') > :first_other + 1 AS not_reused_after_rollback;

------------------------------------------------------------------------------
-- Semaphores
------------------------------------------------------------------------------
SELECT atomix.semaphore_available('c-sem') AS unknown_available;
SELECT atomix.semaphore_create('c-sem', 3) AS created;
SELECT atomix.semaphore_create('c-sem', 5) AS created_again, atomix.semaphore_available('c-sem') AS available;
SELECT atomix.semaphore_acquire('c-sem') AS acquired, atomix.semaphore_available('c-sem') AS available;
SELECT atomix.semaphore_acquire('c-sem', 2) AS acquired, atomix.semaphore_available('c-sem') AS available;
-- none left: a zero or short timeout gives false, nothing changes
SELECT atomix.semaphore_acquire('c-sem', 1, '0') AS zero_timeout, atomix.semaphore_available('c-sem') AS available;
SELECT atomix.semaphore_acquire('c-sem', 1, '300 milliseconds') AS short_timeout,
       atomix.semaphore_available('c-sem') AS available;
SELECT atomix.semaphore_release('c-sem') AS released, atomix.semaphore_available('c-sem') AS available;
-- releasing more than this session holds (2) releases nothing
SELECT atomix.semaphore_release('c-sem', 3) AS released_3, atomix.semaphore_available('c-sem') AS available;
SELECT atomix.semaphore_release('c-sem', 2) AS released_2, atomix.semaphore_available('c-sem') AS available;
SELECT atomix.semaphore_release('c-sem') AS released_none_held, atomix.semaphore_available('c-sem') AS available;
-- all permits at once, with a timeout (granted at once)
SELECT atomix.semaphore_acquire('c-sem', 3, '1 second') AS all_three, atomix.semaphore_available('c-sem') AS available;
SELECT atomix.semaphore_release('c-sem', 3) AS released, atomix.semaphore_available('c-sem') AS available;
-- permits are not part of the transaction
BEGIN;
SELECT atomix.semaphore_acquire('c-sem', 1);
ROLLBACK;
SELECT atomix.semaphore_available('c-sem') AS available_after_rollback;
SELECT atomix.semaphore_release('c-sem');
SELECT atomix.semaphore_create('c-sem-1', 1) AS created, atomix.semaphore_acquire('c-sem-1') AS acquired,
       atomix.semaphore_available('c-sem-1') AS available, atomix.semaphore_release('c-sem-1') AS released;

------------------------------------------------------------------------------
-- Watches: a channel per primitive name, the same every time
------------------------------------------------------------------------------
SELECT atomix.watch('c-watch') ~ '^atomix_watch_[0-9a-f]{16}$' AS channel_format,
       atomix.watch('c-watch') = atomix.watch('c-watch') AS stable,
       atomix.watch('c-watch') <> atomix.watch('c-watch-2') AS per_name;
-- what a listener receives: captured with \o (psql prints the sending
-- process id, which differs every run), read back and compared
SELECT atomix.watch('c-watch') AS chan \gset
\getenv abs_builddir PG_ABS_BUILDDIR
\set notify_file :abs_builddir '/results/coordination_notify.txt'
LISTEN :"chan";
\o :notify_file
SELECT atomix.map_put('c-watch', 'k', 'v1') AS wv1 \gset
SELECT atomix.map_put('c-watch', 'k', 'v2') AS wv2 \gset
SELECT atomix.map_remove('c-watch', 'k');
SELECT atomix.value_set('c-watch', 'x') AS wv3 \gset
SELECT atomix.lock_acquire('c-watch') AS wt \gset
SELECT atomix.lock_release('c-watch');
SELECT (atomix.election_enter('c-watch', 'p')).term;
SELECT (atomix.election_enter('c-watch', 'q')).term;
SELECT (atomix.election_withdraw('c-watch', 'p')).term;
SELECT atomix.map_put('c-watch', 't', 'ttl', ttl => '300 milliseconds') AS wv4 \gset
SELECT pg_sleep(1);
SELECT 1;
\o
UNLISTEN *;
\set notify_text `cat :notify_file`
CREATE TEMP TABLE notes AS
    SELECT n, (regexp_match(line, '^Asynchronous notification "([^"]*)" with payload "(.*)" received from server process with PID [0-9]+\.$'))[2]::jsonb AS payload,
           (regexp_match(line, '^Asynchronous notification "([^"]*)"'))[1] AS channel
      FROM regexp_split_to_table(:'notify_text', E'\n') WITH ORDINALITY AS t(line, n)
     WHERE line LIKE 'Asynchronous notification %';
SELECT bool_and(channel = :'chan') AS all_on_channel FROM notes;
SELECT payload->>'kind' AS kind, payload->>'name' AS name, payload->>'key' AS key, payload->>'event' AS event,
       CASE payload->>'kind'
            WHEN 'map' THEN
                CASE WHEN (payload->>'version')::bigint = :wv1 THEN 'v1'
                     WHEN (payload->>'version')::bigint = :wv2 THEN 'v2'
                     WHEN (payload->>'version')::bigint = :wv4 THEN 'v4'
                     WHEN payload->>'key' = 'k' AND (payload->>'version')::bigint > :wv2 THEN 'after v2'
                     WHEN payload->>'key' = 't' AND (payload->>'version')::bigint > :wv4 THEN 'after v4'
                     ELSE 'unexpected: ' || (payload->>'version') END
            WHEN 'value' THEN
                CASE WHEN (payload->>'version')::bigint = :wv3 THEN 'v3' ELSE 'unexpected' END
            WHEN 'lock' THEN
                CASE WHEN (payload->>'version')::bigint = :wt THEN 'token' ELSE 'unexpected' END
            ELSE payload->>'version' END AS version
  FROM notes ORDER BY payload->>'kind', n;

------------------------------------------------------------------------------
-- map_commit: all or nothing, keys of one partition (hash tags)
------------------------------------------------------------------------------
SELECT atomix.map_commit('c-orders', '[{"op": "put", "key": "{order-17}:lines", "value": "3"},
                                       {"op": "put", "key": "{order-17}:total", "value": "42", "ttl": "10 minutes"},
                                       {"op": "put", "key": "{order-17}:note", "value": "gift"}]') AS c1 \gset
SELECT key, value, version = :c1 AS commit_version,
       expires_at BETWEEN clock_timestamp() + interval '9 minutes' AND clock_timestamp() + interval '10 minutes' AS ttl_10min
  FROM atomix.map_entries('c-orders');
SELECT count(DISTINCT partition_id) AS partitions FROM atomix.map_data WHERE kind = 'm' AND map = 'c-orders';
-- one stale if_version: nothing applied
SELECT atomix.map_commit('c-orders', jsonb_build_array(
           jsonb_build_object('op', 'put', 'key', '{order-17}:lines', 'value', '4', 'if_version', :c1),
           jsonb_build_object('op', 'remove', 'key', '{order-17}:note', 'if_version', :c1 - 1))) IS NULL AS refused;
SELECT key, value, version = :c1 AS unchanged FROM atomix.map_entries('c-orders');
-- if_version of an absent key never matches
SELECT atomix.map_commit('c-orders', jsonb_build_array(
           jsonb_build_object('op', 'put', 'key', '{order-17}:lines', 'value', '4'),
           jsonb_build_object('op', 'put', 'key', '{order-17}:new', 'value', 'x', 'if_version', :c1))) IS NULL AS refused;
SELECT atomix.map_get('c-orders', '{order-17}:lines') AS lines, atomix.map_get('c-orders', '{order-17}:new') AS new;
-- all matching: applied together, with one new version
SELECT atomix.map_commit('c-orders', jsonb_build_array(
           jsonb_build_object('op', 'put', 'key', '{order-17}:lines', 'value', '4', 'if_version', :c1),
           jsonb_build_object('op', 'remove', 'key', '{order-17}:note', 'if_version', :c1),
           jsonb_build_object('op', 'put', 'key', '{order-17}:total', 'value', '50'))) AS c2 \gset
SELECT :c2 > :c1 AS version_increases;
SELECT key, value, version = :c2 AS new_version, expires_at IS NULL AS no_ttl FROM atomix.map_entries('c-orders');
-- removing an absent key is fine; a single key needs no hash tag
SELECT atomix.map_commit('c-orders', '[{"op": "remove", "key": "{order-17}:never"}]') > :c2 AS remove_absent;
SELECT atomix.map_commit('c-plain', '[{"op": "put", "key": "only", "value": "one"}]') IS NOT NULL AS single_key;
SELECT atomix.map_get('c-plain', 'only');
-- commits are not part of the transaction
BEGIN;
SELECT atomix.map_commit('c-plain', '[{"op": "put", "key": "tx", "value": "kept"}]') IS NOT NULL;
ROLLBACK;
SELECT atomix.map_get('c-plain', 'tx');
-- the watchers of map_commit keys (put/remove) are covered by the payload check above

------------------------------------------------------------------------------
-- Refusals: SQLSTATE, message and hint; nothing is applied
------------------------------------------------------------------------------
-- sessions and locks
SELECT q AS call, pg_temp.err(q) AS result FROM (VALUES
    ($$SELECT atomix.lock_acquire(NULL)$$),
    ($$SELECT atomix.lock_acquire('')$$),
    ($$SELECT atomix.lock_acquire(repeat('n', 256))$$),
    ($$SELECT atomix.lock_acquire(repeat('é', 128))$$),
    ($$SELECT atomix.lock_acquire('c-bad', '-1 second')$$),
    ($$SELECT atomix.lock_acquire('c-bad', '-1 microsecond')$$),
    ($$SELECT atomix.lock_acquire('c-bad', '100000000 years')$$),
    ($$SELECT atomix.lock_try_acquire(NULL)$$),
    ($$SELECT atomix.lock_try_acquire('')$$),
    ($$SELECT atomix.lock_try_acquire(repeat('n', 256))$$),
    ($$SELECT atomix.lock_release(NULL)$$),
    ($$SELECT atomix.lock_release('')$$),
    ($$SELECT atomix.lock_release(repeat('n', 256))$$),
    ($$SELECT atomix.lock_holder(NULL)$$),
    ($$SELECT atomix.lock_holder('')$$),
    ($$SELECT atomix.lock_holder(repeat('n', 256))$$)
) AS t(q);
SELECT atomix.lock_holder('c-bad') IS NULL AS nothing_held;

-- elections
SELECT q AS call, pg_temp.err(q) AS result FROM (VALUES
    ($$SELECT atomix.election_enter(NULL, 'a')$$),
    ($$SELECT atomix.election_enter('c-bad', NULL)$$),
    ($$SELECT atomix.election_enter('', 'a')$$),
    ($$SELECT atomix.election_enter('c-bad', '')$$),
    ($$SELECT atomix.election_enter(repeat('n', 256), 'a')$$),
    ($$SELECT atomix.election_enter('c-bad', repeat('c', 256))$$),
    ($$SELECT atomix.election_withdraw(NULL, 'a')$$),
    ($$SELECT atomix.election_withdraw('c-bad', NULL)$$),
    ($$SELECT atomix.election_withdraw('', 'a')$$),
    ($$SELECT atomix.election_anoint(NULL, 'a')$$),
    ($$SELECT atomix.election_anoint('c-bad', NULL)$$),
    ($$SELECT atomix.election_anoint('', 'a')$$),
    ($$SELECT atomix.election_promote(NULL, 'a')$$),
    ($$SELECT atomix.election_promote('c-bad', NULL)$$),
    ($$SELECT atomix.election_promote(repeat('n', 256), 'a')$$),
    ($$SELECT atomix.election_evict(NULL, 'a')$$),
    ($$SELECT atomix.election_evict('c-bad', NULL)$$),
    ($$SELECT atomix.election_evict('', 'a')$$),
    ($$SELECT atomix.election_get(NULL)$$),
    ($$SELECT atomix.election_get('')$$),
    ($$SELECT atomix.election_get(repeat('n', 256))$$)
) AS t(q);
SELECT * FROM atomix.election_get('c-bad');

-- values
SET atomix.max_value_size = '1kB';
SELECT q AS call, pg_temp.err(q) AS result FROM (VALUES
    ($$SELECT atomix.value_set(NULL, 'v')$$),
    ($$SELECT atomix.value_set('c-bad', NULL)$$),
    ($$SELECT atomix.value_set('', 'v')$$),
    ($$SELECT atomix.value_set(repeat('n', 256), 'v')$$),
    ($$SELECT atomix.value_set('c-bad', repeat('v', 1025))$$),
    ($$SELECT atomix.value_set('c-bad', 'v', ttl => '0')$$),
    ($$SELECT atomix.value_set('c-bad', 'v', ttl => '-1 second')$$),
    ($$SELECT atomix.value_get(NULL)$$),
    ($$SELECT atomix.value_get('')$$),
    ($$SELECT atomix.value_get(repeat('n', 256))$$),
    ($$SELECT atomix.value_get_entry(NULL)$$),
    ($$SELECT atomix.value_get_entry('')$$),
    ($$SELECT atomix.value_delete(NULL)$$),
    ($$SELECT atomix.value_delete('')$$),
    ($$SELECT atomix.value_delete(repeat('n', 256))$$)
) AS t(q);
SELECT atomix.value_set('c-bad-size', repeat('v', 1024)) IS NOT NULL AS value_at_limit;
RESET atomix.max_value_size;
SELECT atomix.value_get('c-bad') IS NULL AS nothing_set;

-- sets
SELECT q AS call, pg_temp.err(q) AS result FROM (VALUES
    ($$SELECT atomix.set_add(NULL, 'e')$$),
    ($$SELECT atomix.set_add('c-bad', NULL)$$),
    ($$SELECT atomix.set_add('', 'e')$$),
    ($$SELECT atomix.set_add(repeat('n', 256), 'e')$$),
    ($$SELECT atomix.set_add('c-bad', repeat('k', 1025))$$),
    ($$SELECT atomix.set_add('c-bad', 'e', ttl => '0')$$),
    ($$SELECT atomix.set_add('c-bad', 'e', ttl => '-5 minutes')$$),
    ($$SELECT atomix.set_remove(NULL, 'e')$$),
    ($$SELECT atomix.set_remove('c-bad', NULL)$$),
    ($$SELECT atomix.set_remove('', 'e')$$),
    ($$SELECT atomix.set_contains(NULL, 'e')$$),
    ($$SELECT atomix.set_contains('c-bad', NULL)$$),
    ($$SELECT atomix.set_contains('', 'e')$$),
    ($$SELECT atomix.set_contains('c-bad', repeat('k', 1025))$$),
    ($$SELECT atomix.set_members(NULL)$$),
    ($$SELECT atomix.set_members('')$$),
    ($$SELECT atomix.set_members(repeat('n', 256))$$),
    ($$SELECT atomix.set_size(NULL)$$),
    ($$SELECT atomix.set_size('')$$)
) AS t(q);
SELECT atomix.set_size('c-bad') AS nothing_added;

-- id generators and watches
SELECT q AS call, pg_temp.err(q) AS result FROM (VALUES
    ($$SELECT atomix.next_id(NULL)$$),
    ($$SELECT atomix.next_id('')$$),
    ($$SELECT atomix.next_id(repeat('n', 256))$$),
    ($$SELECT atomix.watch(NULL)$$),
    ($$SELECT atomix.watch('')$$),
    ($$SELECT atomix.watch(repeat('n', 256))$$)
) AS t(q);

-- semaphores
SELECT q AS call, pg_temp.err(q) AS result FROM (VALUES
    ($$SELECT atomix.semaphore_create(NULL, 1)$$),
    ($$SELECT atomix.semaphore_create('c-bad', NULL)$$),
    ($$SELECT atomix.semaphore_create('', 1)$$),
    ($$SELECT atomix.semaphore_create(repeat('n', 256), 1)$$),
    ($$SELECT atomix.semaphore_create('c-bad', 0)$$),
    ($$SELECT atomix.semaphore_create('c-bad', -1)$$),
    ($$SELECT atomix.semaphore_acquire(NULL)$$),
    ($$SELECT atomix.semaphore_acquire('c-sem', NULL)$$),
    ($$SELECT atomix.semaphore_acquire('')$$),
    ($$SELECT atomix.semaphore_acquire(repeat('n', 256))$$),
    ($$SELECT atomix.semaphore_acquire('c-sem', 0)$$),
    ($$SELECT atomix.semaphore_acquire('c-sem', -1)$$),
    ($$SELECT atomix.semaphore_acquire('c-sem', 4)$$),
    ($$SELECT atomix.semaphore_acquire('c-sem', 1, '-1 second')$$),
    ($$SELECT atomix.semaphore_acquire('c-sem-unknown')$$),
    ($$SELECT atomix.semaphore_acquire('c-sem-unknown', 1, '0')$$),
    ($$SELECT atomix.semaphore_release(NULL)$$),
    ($$SELECT atomix.semaphore_release('c-sem', NULL)$$),
    ($$SELECT atomix.semaphore_release('')$$),
    ($$SELECT atomix.semaphore_release('c-sem', 0)$$),
    ($$SELECT atomix.semaphore_release('c-sem', -1)$$),
    ($$SELECT atomix.semaphore_release('c-sem-unknown')$$),
    ($$SELECT atomix.semaphore_available(NULL)$$),
    ($$SELECT atomix.semaphore_available('')$$),
    ($$SELECT atomix.semaphore_available(repeat('n', 256))$$)
) AS t(q);
SELECT atomix.semaphore_available('c-bad') AS not_created, atomix.semaphore_available('c-sem') AS c_sem_untouched;

-- map_commit: arguments, malformed ops, keys in different partitions
SELECT bool_and(atomix.map_put('c-parts', 'k' || i, 'x') IS NOT NULL) AS put_20_keys FROM generate_series(1, 20) i;
SELECT min(key) AS k1 FROM atomix.map_data WHERE kind = 'm' AND map = 'c-parts'
   AND partition_id = (SELECT partition_id FROM atomix.map_data WHERE kind = 'm' AND map = 'c-parts' AND key = 'k1') \gset
SELECT min(key) AS k2 FROM atomix.map_data WHERE kind = 'm' AND map = 'c-parts'
   AND partition_id <> (SELECT partition_id FROM atomix.map_data WHERE kind = 'm' AND map = 'c-parts' AND key = 'k1') \gset
SELECT :'k1' <> :'k2' AS two_partitions_found;
SET atomix.max_value_size = '1kB';
SELECT q AS call, pg_temp.err(q) AS result FROM (VALUES
    ($$SELECT atomix.map_commit(NULL, '[]')$$),
    ($$SELECT atomix.map_commit('c-bad', NULL)$$),
    ($$SELECT atomix.map_commit('', '[{"op": "put", "key": "k", "value": "v"}]')$$),
    ($$SELECT atomix.map_commit(repeat('n', 256), '[{"op": "put", "key": "k", "value": "v"}]')$$)
) AS t(q);
-- ops for map c-bad (shown as the ops argument); the last three are refused
-- for spanning partitions: two keys placed in different partitions above,
-- 17 different hash tags, 17 keys with empty hash tags (the whole key counts)
SELECT CASE WHEN length(ops) > 100 THEN left(ops, 50) || '... (' || length(ops) || ' chars)' ELSE ops END AS ops,
       pg_temp.err(format('SELECT atomix.map_commit(%L, %L)', map, ops)) AS result FROM (VALUES
    ('c-bad', '[]'),
    ('c-bad', '{"op": "put", "key": "k", "value": "v"}'),
    ('c-bad', '"put"'),
    ('c-bad', 'null'),
    ('c-bad', '[1]'),
    ('c-bad', '[null]'),
    ('c-bad', '[{"key": "k", "value": "v"}]'),
    ('c-bad', '[{"op": "upsert", "key": "k", "value": "v"}]'),
    ('c-bad', '[{"op": 1, "key": "k", "value": "v"}]'),
    ('c-bad', '[{"op": "put", "value": "v"}]'),
    ('c-bad', '[{"op": "put", "key": null, "value": "v"}]'),
    ('c-bad', '[{"op": "put", "key": "k"}]'),
    ('c-bad', '[{"op": "put", "key": "k", "value": null}]'),
    ('c-bad', '[{"op": "put", "key": "k", "value": "v", "if_version": "x"}]'),
    ('c-bad', '[{"op": "put", "key": "k", "value": "v", "if_version": 1.5}]'),
    ('c-bad', '[{"op": "put", "key": "k", "value": "v", "ttl": "soon"}]'),
    ('c-bad', '[{"op": "put", "key": "k", "value": "v", "ttl": "0"}]'),
    ('c-bad', '[{"op": "put", "key": "k", "value": "v", "ttl": "-1s"}]'),
    ('c-bad', '[{"op": "remove", "key": "k", "value": "v"}]'),
    ('c-bad', '[{"op": "remove", "key": "k", "ttl": "1s"}]'),
    ('c-bad', '[{"op": "put", "key": "k", "value": "v", "colour": "red"}]'),
    ('c-bad', format('[{"op": "put", "key": "%s", "value": "v"}]', repeat('k', 1025))),
    ('c-bad', format('[{"op": "put", "key": "k", "value": "%s"}]', repeat('v', 1025))),
    ('c-bad', '[{"op": "put", "key": "k", "value": "v"}, {"op": "frobnicate", "key": "k"}]'),
    ('c-parts', format('[{"op": "put", "key": "%s", "value": "v"}, {"op": "remove", "key": "%s"}]', :'k1', :'k2')),
    ('c-bad', (SELECT jsonb_agg(jsonb_build_object('op', 'put', 'key', '{' || chr(96 + i) || '}:1', 'value', 'v'))::text
                 FROM generate_series(1, 17) i)),
    ('c-bad', (SELECT jsonb_agg(jsonb_build_object('op', 'put', 'key', '{}' || chr(96 + i), 'value', 'v'))::text
                 FROM generate_series(1, 17) i))
) AS t(map, ops);
RESET atomix.max_value_size;
SELECT count(*) AS nothing_applied FROM atomix.map_entries('c-bad');
-- accepted leniently: JSON numbers, booleans and objects as keys and values
-- (their JSON text), a number as ttl (seconds), a string as if_version, the
-- same key twice (the last op wins)
SELECT atomix.map_commit('c-lenient', '[{"op": "put", "key": 7, "value": 5}]') IS NOT NULL AS number_key_and_value,
       atomix.map_commit('c-lenient', '[{"op": "put", "key": true, "value": {"a": 1}}]') IS NOT NULL AS boolean_key_object_value,
       atomix.map_commit('c-lenient', '[{"op": "put", "key": "t", "value": "v", "ttl": 600}]') IS NOT NULL AS number_ttl;
SELECT atomix.map_commit('c-lenient', '[{"op": "put", "key": "7", "value": "six", "if_version": "1"}]') IS NULL AS if_version_text;
SELECT atomix.map_commit('c-lenient', '[{"op": "put", "key": "{d}:1", "value": "first"}, {"op": "put", "key": "{d}:1", "value": "last"}]') IS NOT NULL AS duplicate_key;
SELECT key, value, expires_at BETWEEN clock_timestamp() + interval '9 minutes' AND clock_timestamp() + interval '10 minutes' AS ttl_10min
  FROM atomix.map_entries('c-lenient');
SELECT count(*) AS c_parts_untouched FROM atomix.map_entries('c-parts') WHERE value = 'x';

-- every refusal above came with a hint
SELECT call, result FROM outcomes WHERE result <> 'no error' AND result NOT LIKE '%(HINT: %' ORDER BY n;

------------------------------------------------------------------------------
-- A backend that exits normally closes its session at once: its lock, its
-- permits and its candidacy are released (well within atomix.session_timeout)
------------------------------------------------------------------------------
SELECT atomix.lock_acquire('c-exit') IS NOT NULL AS locked,
       atomix.semaphore_create('c-exit', 2) AS created,
       atomix.semaphore_acquire('c-exit', 2) AS permits_taken,
       (atomix.election_enter('c-exit', 'me')).leader AS leader;
\c
SELECT atomix.session_id() IS NULL AS new_backend_no_session;
DO $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '5 seconds';
BEGIN
    WHILE atomix.lock_holder('c-exit') IS NOT NULL OR atomix.semaphore_available('c-exit') <> 2
          OR (atomix.election_get('c-exit')).leader IS NOT NULL LOOP
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'the old session still holds its lock, permits or candidacy after 5 s';
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$;
SELECT atomix.lock_holder('c-exit') IS NULL AS lock_free, atomix.semaphore_available('c-exit') AS available,
       (atomix.election_get('c-exit')).*;
SELECT atomix.session_id() IS NULL AS still_no_session;
