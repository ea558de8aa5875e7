/*
 * test_at_most_once.cpp — a request is applied at most once, however its
 * copies arrive (docs/architecture.md, "Exactly once").
 *
 * On a cluster a forwarded request can reach the leader twice: resent after
 * a timeout while the first copy sat in a stuck connection, racing a "not
 * leader" reply, or after a leader change.  Both copies may land in the same
 * packed entry, or in different entries, with or without the retry flag.
 * Every copy must be answered with the first one's outcome (or, once its
 * origin is done with it, refused as finished: src/core/request_origins.h),
 * and nothing may reach the storage twice.  atomix 0.1 crash-looped every
 * worker of a real cluster on one committed entry that held one request id
 * twice (it could not write two request-log rows for it).
 *
 * Also: limits every replica enforces before any write (a peer may send
 * what the SQL layer refuses), and storage failures surfacing as exceptions
 * (a machine failure, never a command result).
 */
#include "unit_helpers.h"

#include <string>

#include "memory_storage.h"
#include "objects.h"

using namespace atomix;
using namespace unit;

namespace {

constexpr int64_t kSec = 1000000;
constexpr int64_t E1 = 1700000000LL * kSec;

uint64_t sid(uint32_t node, uint64_t seq) { return (static_cast<uint64_t>(node) << 48) | seq; }

Command with_rid(Command c, uint64_t rid)
{
    c.request_id = rid;
    return c;
}

Command retried(Command c)
{
    c.flags |= kFlagRetry;
    return c;
}

Command in_session(Command c, uint64_t session, uint64_t rid)
{
    c.session = session;
    c.request_id = rid;
    c.epoch = E1;
    return c;
}

Command acquire(uint64_t s, uint64_t rid, const std::string &lock)
{
    Command c = in_session(cmd_of(Op::LockAcquire, lock), s, rid);
    c.arg1 = 1; /* wait */
    return c;
}

Command release(uint64_t s, uint64_t rid, const std::string &lock)
{
    return in_session(cmd_of(Op::LockRelease, lock), s, rid);
}

struct Replica {
    MemoryStorage st;
    StateMachine sm{st};
    uint64_t index = 0;

    std::vector<CommandResult> at(int64_t stamp, const std::vector<Command> &cmds)
    {
        std::string e = pack(stamp, cmds);
        std::vector<CommandResult> results;
        assert_true(sm.apply(++index, e.data(), e.size(), results));
        return results;
    }

    std::vector<CommandResult> of(const std::vector<CommandResult> &all, uint64_t rid)
    {
        std::vector<CommandResult> out;
        for (const CommandResult &r : all)
            if (r.request_id == rid)
                out.push_back(r);
        return out;
    }

    int64_t counter(const std::string &name) { return st.counter_get(name).value_or(0); }
    LockState lock(const std::string &name)
    {
        std::optional<ObjectRow> row = st.object_get(kKindLock, name);
        return row ? decode_lock(row->state) : LockState{};
    }
    SemaphoreState semaphore(const std::string &name)
    {
        return decode_semaphore(st.object_get(kKindSemaphore, name)->state);
    }
};

void assert_same(const std::vector<CommandResult> &copies, size_t n, ResultCode code, int64_t value)
{
    assert_int_equal(copies.size(), n);
    for (const CommandResult &r : copies) {
        assert_int_equal(static_cast<int>(r.code), static_cast<int>(code));
        assert_int_equal(r.value, value);
    }
}

/* ---- floors (src/core/request_origins.h) ---- */

/* request id `n` of origin `origin` (a node's worker life) */
uint64_t oid(uint64_t origin, uint32_t n) { return (origin << 32) | n; }

Command incr_from(uint64_t rid, uint64_t floor)
{
    Command c = with_rid(counter_cmd(Op::CounterIncr, "c", 1), rid);
    c.floor = floor;
    return c;
}

/* An origin done with a request says so with the floor of its next one: a
 * copy below the floor is refused, never run — also the first copy to come
 * after its origin gave up on it — and the table forgets outcomes below it.
 * A stale copy carrying an older floor never lowers it; copies at or above
 * the floor are answered with their outcome; all of it survives a snapshot. */
static void copies_below_the_floor_are_refused(void **)
{
    const uint64_t O = 5;
    Replica r;
    assert_same(r.of(r.at(100, {incr_from(oid(O, 1), oid(O, 1))}), oid(O, 1)), 1, ResultCode::Ok, 1);
    assert_true(r.sm.recorded_outcome(oid(O, 1)).has_value());
    /* o3 was never sent before its origin gave up on it; o4 says so */
    assert_same(r.of(r.at(200, {incr_from(oid(O, 2), oid(O, 2)), incr_from(oid(O, 4), oid(O, 2))}),
                     oid(O, 4)),
                1, ResultCode::Ok, 3);
    assert_false(r.sm.recorded_outcome(oid(O, 1)).has_value()); /* forgotten below the floor */
    r.at(250, {incr_from(oid(O, 5), oid(O, 4))});
    assert_int_equal(r.counter("c"), 4);
    uint64_t dups = r.sm.duplicates_answered();

    std::vector<CommandResult> late = r.at(300, {retried(incr_from(oid(O, 1), oid(O, 1))),
                                                 incr_from(oid(O, 3), oid(O, 3)),
                                                 retried(incr_from(oid(O, 4), oid(O, 2)))});
    assert_same(r.of(late, oid(O, 1)), 1, ResultCode::Finished, 0);
    assert_same(r.of(late, oid(O, 3)), 1, ResultCode::Finished, 0);
    assert_same(r.of(late, oid(O, 4)), 1, ResultCode::Ok, 3);
    assert_int_equal(r.counter("c"), 4);
    assert_int_equal(r.sm.duplicates_answered() - dups, 3);

    Replica copy;
    std::string snap = r.sm.snapshot();
    assert_true(copy.sm.restore(snap.data(), snap.size()));
    copy.index = r.index;
    std::vector<CommandResult> after = copy.at(400, {incr_from(oid(O, 2), oid(O, 2)),
                                                     incr_from(oid(O, 5), oid(O, 4))});
    assert_same(copy.of(after, oid(O, 2)), 1, ResultCode::Finished, 0);
    assert_same(copy.of(after, oid(O, 5)), 1, ResultCode::Ok, 4);
    assert_int_equal(copy.counter("c"), 4);
}

/* A floor speaks for its own origin only: another node's requests, and a
 * floor field naming another origin, leave it alone. */
static void floors_are_per_origin(void **)
{
    const uint64_t O = 5, P = 6;
    Replica r;
    r.at(100, {incr_from(oid(O, 7), oid(O, 7)), incr_from(oid(P, 1), oid(P, 1))});
    r.at(200, {incr_from(oid(P, 9), oid(P, 9)), incr_from(oid(O, 8), oid(P, 9))});
    std::vector<CommandResult> copies = r.at(300, {incr_from(oid(O, 7), 0), incr_from(oid(P, 1), 0)});
    assert_same(r.of(copies, oid(O, 7)), 1, ResultCode::Ok, 1); /* O's floor did not move */
    assert_same(r.of(copies, oid(P, 1)), 1, ResultCode::Finished, 0);
    assert_int_equal(r.counter("c"), 4);
}

/* One request stuck while its origin's later ones apply keeps the floor
 * down; past kMaxOutcomesPerOrigin outcomes the floor is raised past the
 * oldest, so the table stays bounded: what falls below is refused, never
 * run twice. */
static void a_stuck_request_cannot_grow_the_table_for_ever(void **)
{
    const uint64_t O = 5;
    Replica r;
    std::vector<Command> many;
    for (uint32_t n = 2; n <= kMaxOutcomesPerOrigin + 2; n++)
        many.push_back(incr_from(oid(O, n), oid(O, 1))); /* o1 is stuck */
    r.at(100, many);
    RequestOrigins t = RequestOrigins::decode(r.st.load_meta().origins);
    assert_int_equal(t.origins().size(), 1);
    assert_int_equal(t.origins()[0].outcomes.size(), kMaxOutcomesPerOrigin);
    assert_true(t.origins()[0].floor == oid(O, 3));
    int64_t count = r.counter("c");
    std::vector<CommandResult> late =
        r.at(200, {incr_from(oid(O, 1), oid(O, 1)), incr_from(oid(O, 2), oid(O, 1)),
                   incr_from(oid(O, kMaxOutcomesPerOrigin + 2), oid(O, 1))});
    assert_same(r.of(late, oid(O, 1)), 1, ResultCode::Finished, 0);
    assert_same(r.of(late, oid(O, 2)), 1, ResultCode::Finished, 0);
    assert_same(r.of(late, oid(O, kMaxOutcomesPerOrigin + 2)), 1, ResultCode::Ok, count);
    assert_int_equal(r.counter("c"), count);
}

/* The origin lets go of a lock acquire once it saw it applied (Pending): a
 * copy after that is refused — no second place in the queue — and the
 * waiter is still granted the lock by the release. */
static void the_floor_passes_a_waiting_acquire(void **)
{
    Replica r;
    uint64_t A = sid(1, 1), B = sid(2, 1);
    const uint64_t O = 9;
    r.at(100, {acquire(A, oid(O, 1), "L")});
    Command b = acquire(B, oid(O, 2), "L");
    b.floor = oid(O, 2);
    assert_same(r.of(r.at(200, {b}), oid(O, 2)), 1, ResultCode::Pending, 0);
    Command other = incr_from(oid(O, 3), oid(O, 3));
    r.at(250, {other});
    assert_same(r.of(r.at(300, {retried(b)}), oid(O, 2)), 1, ResultCode::Finished, 0);
    assert_int_equal(r.lock("L").waiters.size(), 1);
    std::vector<CommandResult> rel = r.at(400, {release(A, oid(O, 4), "L")});
    assert_same(r.of(rel, oid(O, 2)), 1, ResultCode::Ok, make_version(r.index, 0));
    assert_true(r.lock("L").holder == B);
}

} // namespace

/* The storage double refuses what Postgres refuses. */
static void memory_storage_is_as_strict_as_postgres(void **)
{
    MemoryStorage st;
    bool refused = false;
    try {
        st.map_put(kEntryMap, "m", std::string(3000, 'k'), MapRow{});
    } catch (const StorageRefused &) {
        refused = true;
    }
    assert_true(refused);
}

/* A put twice in one entry, once plain and once flagged as a retry, in
 * either order: one write, one version, both copies answered with it. */
static void put_twice_in_one_entry(void **)
{
    for (int flagged_first = 0; flagged_first < 2; flagged_first++) {
        Replica r;
        Command put = with_rid(cmd_of(Op::MapPut, "m", "k", "v"), 11);
        Command a = flagged_first ? retried(put) : put;
        Command b = flagged_first ? put : retried(put);
        std::vector<CommandResult> all = r.at(100, {a, b, b});
        int64_t version = make_version(1, 0);
        assert_same(r.of(all, 11), 3, ResultCode::Ok, version);
        assert_int_equal(r.st.map_get(kEntryMap, "m", "k")->version, version);
        assert_int_equal(r.sm.duplicates_answered(), 2);
    }
}

/* counter_incr copies in the same entry and in later entries, flagged or
 * not: the counter moves once. */
static void counter_incr_applied_once(void **)
{
    Replica r;
    Command incr = with_rid(counter_cmd(Op::CounterIncr, "c", 5), 21);
    std::vector<CommandResult> all = r.at(100, {incr, incr, retried(incr)});
    assert_same(r.of(all, 21), 3, ResultCode::Ok, 5);
    /* a copy without the retry flag in a later entry (it overtook nothing:
     * the first copy's reply was lost) */
    assert_same(r.of(r.at(200, {incr}), 21), 1, ResultCode::Ok, 5);
    assert_same(r.of(r.at(300, {retried(incr)}), 21), 1, ResultCode::Ok, 5);
    assert_int_equal(r.counter("c"), 5);
    /* a different request still applies */
    assert_same(r.of(r.at(400, {with_rid(counter_cmd(Op::CounterIncr, "c", 1), 22)}), 22), 1,
                ResultCode::Ok, 6);
}

/* A waiting lock_acquire duplicated: one waiter, not two; once granted, a
 * late copy gets the grant (not Pending again, which would wait forever). */
static void waiting_lock_acquire_queued_once(void **)
{
    Replica r;
    uint64_t A = sid(1, 1), B = sid(2, 1);
    r.at(100, {acquire(A, 1, "L")});
    std::vector<CommandResult> all = r.at(200, {acquire(B, 2, "L"), retried(acquire(B, 2, "L"))});
    assert_same(r.of(all, 2), 2, ResultCode::Pending, 0);
    assert_int_equal(r.lock("L").waiters.size(), 1);

    /* a copy in a later entry is still only Pending */
    assert_same(r.of(r.at(250, {acquire(B, 2, "L")}), 2), 1, ResultCode::Pending, 0);
    assert_int_equal(r.lock("L").waiters.size(), 1);

    std::vector<CommandResult> rel = r.at(300, {release(A, 3, "L")});
    int64_t token = make_version(r.index, 0);
    assert_same(r.of(rel, 2), 1, ResultCode::Ok, token);
    assert_true(r.lock("L").holder == B);

    /* the late copy: answered with the grant, nothing queued */
    assert_same(r.of(r.at(400, {acquire(B, 2, "L")}), 2), 1, ResultCode::Ok, token);
    assert_true(r.lock("L").waiters.empty());
    assert_true(r.lock("L").holder == B);
}

/* A waiting lock_acquire and the release that grants it, with a copy of the
 * acquire behind both, all in one entry. */
static void settled_in_the_same_entry(void **)
{
    Replica r;
    uint64_t A = sid(1, 1), B = sid(2, 1);
    r.at(100, {acquire(A, 1, "L")});
    std::vector<CommandResult> all =
        r.at(200, {acquire(B, 2, "L"), release(A, 3, "L"), retried(acquire(B, 2, "L"))});
    std::vector<CommandResult> b = r.of(all, 2);
    assert_int_equal(b.size(), 3); /* Pending, the grant, the copy's answer */
    int64_t token = make_version(r.index, 1);
    assert_int_equal(static_cast<int>(b[0].code), static_cast<int>(ResultCode::Pending));
    assert_int_equal(static_cast<int>(b[1].code), static_cast<int>(ResultCode::Ok));
    assert_int_equal(b[1].value, token);
    assert_int_equal(static_cast<int>(b[2].code), static_cast<int>(ResultCode::Ok));
    assert_int_equal(b[2].value, token);
    assert_true(r.lock("L").holder == B);
    assert_true(r.lock("L").waiters.empty());
}

/* A waiting semaphore acquire duplicated: permits granted once. */
static void waiting_semaphore_acquire_queued_once(void **)
{
    Replica r;
    uint64_t A = sid(1, 1), B = sid(2, 1);
    Command create = with_rid(counter_cmd(Op::SemaphoreCreate, "S", 1), 1);
    Command take_a = in_session(cmd_of(Op::SemaphoreAcquire, "S"), A, 2);
    take_a.arg1 = 1;
    take_a.arg2 = 1;
    Command take_b = in_session(cmd_of(Op::SemaphoreAcquire, "S"), B, 3);
    take_b.arg1 = 1;
    take_b.arg2 = 1;
    r.at(100, {create, take_a});
    std::vector<CommandResult> all = r.at(200, {take_b, take_b, retried(take_b)});
    assert_same(r.of(all, 3), 3, ResultCode::Pending, 0);
    assert_int_equal(r.semaphore("S").waiters.size(), 1);

    Command give_a = in_session(cmd_of(Op::SemaphoreRelease, "S"), A, 4);
    give_a.arg1 = 1;
    assert_same(r.of(r.at(300, {give_a}), 3), 1, ResultCode::Ok, 1);
    assert_same(r.of(r.at(400, {take_b}), 3), 1, ResultCode::Ok, 1);
    SemaphoreState s = r.semaphore("S");
    assert_int_equal(s.available, 0);
    assert_true(s.waiters.empty());
    assert_int_equal(s.holders.size(), 1);
    assert_int_equal(s.holders[0].permits, 1);
}

/* map_commit duplicated: applied once; a copy after another write to the
 * same key does not overwrite it. */
static void map_commit_applied_once(void **)
{
    Replica r;
    std::vector<MapCommitOp> ops(1);
    ops[0].key = "{o}:a";
    ops[0].value = "1";
    Command commit = with_rid(cmd_of(Op::MapCommit, "m"), 41);
    encode_commit_ops(ops, commit.value);
    std::vector<CommandResult> all = r.at(100, {commit, retried(commit)});
    assert_same(r.of(all, 41), 2, ResultCode::Ok, make_version(1, 0));
    r.at(200, {with_rid(cmd_of(Op::MapPut, "m", "{o}:a", "2"), 42)});
    assert_same(r.of(r.at(300, {commit}), 41), 1, ResultCode::Ok, make_version(1, 0));
    assert_true(r.st.map_get(kEntryMap, "m", "{o}:a")->value == "2");
}

/* Over-limit commands are refused by every replica before any write: the
 * storage never sees what it would refuse, and the entry applies. */
static void limits_refused_before_any_write(void **)
{
    Replica r;
    std::vector<Command> bad = {
        with_rid(cmd_of(Op::MapPut, std::string(256, 'n'), "k", "v"), 51),
        with_rid(cmd_of(Op::MapPut, "m", std::string(3000, 'k'), "v"), 52),
        with_rid(cmd_of(Op::MapPut, "m", std::string("a\0b", 3), "v"), 53),
        with_rid(counter_cmd(Op::CounterIncr, std::string("c\0", 2), 1), 54),
        with_rid(cmd_of(Op::LockAcquire, std::string(4000, 'l')), 55),
    };
    std::vector<MapCommitOp> ops(1);
    ops[0].key = std::string(2000, 'x');
    Command commit = with_rid(cmd_of(Op::MapCommit, "m"), 56);
    encode_commit_ops(ops, commit.value);
    bad.push_back(commit);
    bad.push_back(with_rid(cmd_of(Op::MapPut, "m", "ok", "v"), 57));
    std::vector<CommandResult> all = r.at(100, bad);
    for (uint64_t rid = 51; rid <= 56; rid++)
        assert_same(r.of(all, rid), 1, ResultCode::Refused, 0);
    assert_same(r.of(all, 57), 1, ResultCode::Ok, make_version(1, 6));
    assert_int_equal(r.st.map_count(), 1);
    assert_int_equal(r.counter(std::string("c\0", 2)), 0);
}

/* A failing storage makes apply throw — never a command result — and the
 * applied index does not move, so the entry is applied again later. */
static void storage_failure_is_a_machine_failure(void **)
{
    Replica r;
    r.st.fail_writes = true;
    std::string e = pack(100, {with_rid(counter_cmd(Op::CounterIncr, "c", 1), 61)});
    std::vector<CommandResult> results;
    bool threw = false;
    try {
        r.sm.apply(1, e.data(), e.size(), results);
    } catch (const StorageRefused &) {
        threw = true;
    }
    assert_true(threw);
    assert_int_equal(r.st.load_meta().applied_index, 0);
    r.st.fail_writes = false;
    r.sm.forget_caches();
    results.clear();
    assert_true(r.sm.apply(1, e.data(), e.size(), results));
    assert_int_equal(r.counter("c"), 1);
    assert_int_equal(r.st.load_meta().applied_index, 1);
}

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(memory_storage_is_as_strict_as_postgres),
        cmocka_unit_test(put_twice_in_one_entry),
        cmocka_unit_test(counter_incr_applied_once),
        cmocka_unit_test(waiting_lock_acquire_queued_once),
        cmocka_unit_test(settled_in_the_same_entry),
        cmocka_unit_test(waiting_semaphore_acquire_queued_once),
        cmocka_unit_test(map_commit_applied_once),
        cmocka_unit_test(limits_refused_before_any_write),
        cmocka_unit_test(storage_failure_is_a_machine_failure),
        cmocka_unit_test(copies_below_the_floor_are_refused),
        cmocka_unit_test(floors_are_per_origin),
        cmocka_unit_test(a_stuck_request_cannot_grow_the_table_for_ever),
        cmocka_unit_test(the_floor_passes_a_waiting_acquire),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
