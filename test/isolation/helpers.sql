-- test/isolation/helpers.sql — helpers for the atomix isolation specs,
-- loaded once into the test database (test/run-tests does it right after
-- CREATE EXTENSION atomix).  Everything lives in schema `iso`.
--
-- Why these exist.  isolationtester only sees a step as "waiting" when
-- pg_isolation_test_session_is_blocked() says so, which knows heavyweight
-- locks, predicate locks and safe snapshots — not a backend sleeping on its
-- latch inside an atomix call.  Worse, after every step it re-polls each
-- step it believes is waiting and, when that step is not blocked in a way
-- it understands, it simply keeps polling until the step finishes.  So a
-- spec can only ever have undetectable atomix waits that are bound to finish
-- by themselves.  The specs therefore:
--   * hold back concurrent sessions behind an advisory lock (a "gate") owned
--     by a controller session: a heavyweight lock wait that isolationtester
--     does detect, so it can launch any number of such steps;
--   * order the sessions after the gate opens by the replicated lock state
--     itself: iso.await_lock_waiters() polls atomix.object_data until the
--     lock's waiter queue has N entries, so "s3 queues after s2" is a fact of
--     the state machine, not a guess about timing;
--   * make the rest of the scenario run on its own (each waiter records its
--     grant and releases), and check the recorded order afterwards.
-- The waiter counts are decoded from the lock/semaphore blobs (format in
-- src/core/objects.cpp: little-endian, a lock is holder u64, token i64, since
-- i64, grant_request u64, then u32 waiter count; a semaphore is permits u32,
-- available u32, u32 holder count, 24 bytes per holder, then u32 waiter
-- count).  If that format changes, these two functions must follow.

SET client_min_messages = warning;
DROP SCHEMA IF EXISTS iso CASCADE;
CREATE SCHEMA iso;

-- backend pids of the spec's sessions (each session's setup registers itself)
CREATE TABLE iso.pids (who text PRIMARY KEY, pid int NOT NULL);
-- grants and other timed events recorded by the sessions, in the order they
-- happened (seq is taken the moment the row is inserted)
CREATE TABLE iso.log (seq bigserial, who text NOT NULL, what text NOT NULL,
                      token bigint, at timestamptz NOT NULL DEFAULT clock_timestamp());

-- procedures, so that setup blocks print nothing
CREATE PROCEDURE iso.register(who text) LANGUAGE sql AS $$
    INSERT INTO iso.pids VALUES (who, pg_backend_pid())
        ON CONFLICT ON CONSTRAINT pids_pkey DO UPDATE SET pid = excluded.pid
$$;

CREATE PROCEDURE iso.reset() LANGUAGE sql AS $$
    TRUNCATE iso.pids, iso.log
$$;

CREATE FUNCTION iso.le32(b bytea, off int) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT get_byte(b, off)::bigint + (get_byte(b, off + 1)::bigint << 8)
           + (get_byte(b, off + 2)::bigint << 16) + (get_byte(b, off + 3)::bigint << 24)
$$;

-- waiters queued on lock `name` (0 when the lock has no row)
CREATE FUNCTION iso.lock_waiters(name text) RETURNS int LANGUAGE sql VOLATILE AS $$
    SELECT coalesce((SELECT iso.le32(state, 32)::int FROM atomix.object_data
                      WHERE kind = 'l' AND object_data.name = lock_waiters.name), 0)
$$;

-- waiters queued on semaphore `name`
CREATE FUNCTION iso.semaphore_waiters(name text) RETURNS int LANGUAGE sql VOLATILE AS $$
    SELECT coalesce((SELECT iso.le32(state, 12 + 24 * iso.le32(state, 8)::int)::int
                       FROM atomix.object_data
                      WHERE kind = 'm' AND object_data.name = semaphore_waiters.name), 0)
$$;

-- Poll (10 ms) until `probe` returns true; error after 30 s.
CREATE FUNCTION iso.await(probe text, what text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '30 seconds';
    ok boolean;
BEGIN
    LOOP
        EXECUTE probe INTO ok;
        EXIT WHEN ok;
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'gave up after 30 s waiting for %', what;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$;

-- until lock `name` has at least n waiters; returns how many it has
CREATE FUNCTION iso.await_lock_waiters(name text, n int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    PERFORM iso.await(format('SELECT iso.lock_waiters(%L) >= %s', name, n),
                      format('%s waiter(s) on lock %s', n, name));
    RETURN iso.lock_waiters(name);
END
$$;

CREATE FUNCTION iso.await_semaphore_waiters(name text, n int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    PERFORM iso.await(format('SELECT iso.semaphore_waiters(%L) >= %s', name, n),
                      format('%s waiter(s) on semaphore %s', n, name));
    RETURN iso.semaphore_waiters(name);
END
$$;

-- Pass through the gate: a shared advisory lock on `gate`, blocked (visibly
-- to isolationtester) while the controller holds it exclusively.
CREATE FUNCTION iso.pass_gate(gate int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_lock_shared(gate);
    PERFORM pg_advisory_unlock_shared(gate);
END
$$;

-- One waiter's turn on lock `lock`: pass the gate, wait until `ahead` other
-- waiters are queued (so this one queues behind them), wait for the lock,
-- record the grant, release.
CREATE FUNCTION iso.lock_turn(who text, lock text, gate int, ahead int) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    tok bigint;
BEGIN
    PERFORM iso.pass_gate(gate);
    PERFORM iso.await_lock_waiters(lock, ahead);
    tok := atomix.lock_acquire(lock, interval '60 seconds');
    IF tok IS NULL THEN
        RETURN 'timed out';
    END IF;
    INSERT INTO iso.log (who, what, token) VALUES (who, 'granted', tok);
    IF (atomix.lock_holder(lock)).token IS DISTINCT FROM tok THEN
        RETURN 'granted, but lock_holder shows another token';
    END IF;
    IF NOT atomix.lock_release(lock) THEN
        RETURN 'granted, but release returned false';
    END IF;
    RETURN 'granted, released';
END
$$;

-- The holder's turn: pass the gate, wait until n waiters are queued, check
-- this session still holds the lock (none of them got it), release.
CREATE FUNCTION iso.release_when_queued(lock text, gate int, n int) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    queued int;
    mine boolean;
BEGIN
    PERFORM iso.pass_gate(gate);
    queued := iso.await_lock_waiters(lock, n);
    mine := (atomix.lock_holder(lock)).session = atomix.session_id();
    INSERT INTO iso.log (who, what) VALUES ('holder', 'released');
    RETURN format('%s queued, still held by me: %s, released: %s', queued, mine,
                  atomix.lock_release(lock));
END
$$;

-- Terminate session `who`'s backend and wait until it is gone; the moment
-- is logged as (who, 'killed').
CREATE FUNCTION iso.kill(who text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    victim int := (SELECT pid FROM iso.pids WHERE pids.who = kill.who);
BEGIN
    INSERT INTO iso.log (who, what) VALUES (who, 'killed');
    RETURN pg_terminate_backend(victim, 30000);
END
$$;

-- time since (who, what) was logged
CREATE FUNCTION iso.since(who text, what text) RETURNS interval LANGUAGE sql VOLATILE AS $$
    SELECT clock_timestamp() - max(at) FROM iso.log WHERE log.who = since.who AND log.what = since.what
$$;

-- SQLSTATE of running q ('ok' when it succeeds)
CREATE FUNCTION iso.sqlstate(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;

-- until election `election` is led by `leader`; its state
CREATE FUNCTION iso.await_leader(election text, leader text) RETURNS atomix.term
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM iso.await(format('SELECT (atomix.election_get(%L)).leader IS NOT DISTINCT FROM %L',
                             election, leader),
                      format('%s to lead election %s', leader, election));
    RETURN atomix.election_get(election);
END
$$;

-- lock_acquire with a timeout, timed on this backend's clock
CREATE FUNCTION iso.timed_lock_acquire(lock text, timeout interval,
                                       OUT granted boolean,
                                       OUT waited_the_timeout boolean,
                                       OUT returned_within_10s_more boolean)
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
    tok bigint;
    waited interval;
BEGIN
    tok := atomix.lock_acquire(lock, timeout);
    waited := clock_timestamp() - t0;
    granted := tok IS NOT NULL;
    -- timeouts are decided on the leader's log time, stamped no earlier than
    -- the request was sent; allow for clock granularity only
    waited_the_timeout := waited >= timeout * 0.95;
    returned_within_10s_more := waited < timeout + interval '10 seconds';
END
$$;

-- One waiter's turn on semaphore `sem`: like lock_turn, for `permits`.
CREATE FUNCTION iso.semaphore_turn(who text, sem text, permits int, gate int, ahead int) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM iso.pass_gate(gate);
    PERFORM iso.await_semaphore_waiters(sem, ahead);
    IF NOT atomix.semaphore_acquire(sem, permits, interval '60 seconds') THEN
        RETURN 'timed out';
    END IF;
    INSERT INTO iso.log (who, what, token) VALUES (who, 'granted', permits);
    RETURN format('granted %s, released: %s', permits, atomix.semaphore_release(sem, permits));
END
$$;

-- The holder's turn on a semaphore: once n waiters are queued, report what
-- is available (nobody may have been let past the head of the line), then
-- release `permits`.
CREATE FUNCTION iso.semaphore_release_when_queued(sem text, permits int, gate int, n int) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    queued int;
    available int;
BEGIN
    PERFORM iso.pass_gate(gate);
    queued := iso.await_semaphore_waiters(sem, n);
    available := atomix.semaphore_available(sem);
    INSERT INTO iso.log (who, what) VALUES ('holder', 'released');
    RETURN format('%s queued, %s available, released %s: %s', queued, available, permits,
                  atomix.semaphore_release(sem, permits));
END
$$;
