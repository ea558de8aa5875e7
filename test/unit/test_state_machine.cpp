/*
 * test_state_machine.cpp — command semantics, time, idempotence and
 * snapshots of the partition state machine over MemoryStorage.
 *
 * Every entry is given an explicit raft index and leader stamp, so each test
 * is fully deterministic, like a replica replaying a known log.
 */
#include "unit_helpers.h"

#include <limits>

#include "memory_storage.h"

using namespace atomix;
using namespace unit;

namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

/* One replica: storage + state machine + helpers to feed it entries. */
struct Replica {
    MemoryStorage st;
    StateMachine sm{st};

    /* Applies cmds as one entry; fails the test if the index was skipped. */
    std::vector<CommandResult> apply(uint64_t index, int64_t stamp, const std::vector<Command> &cmds)
    {
        std::string e = pack(stamp, cmds);
        std::vector<CommandResult> out;
        bool malformed = true;
        assert_true(sm.apply(index, e.data(), e.size(), out, &malformed));
        assert_false(malformed);
        assert_int_equal(out.size(), cmds.size());
        return out;
    }
    CommandResult one(uint64_t index, int64_t stamp, const Command &c)
    {
        return apply(index, stamp, {c})[0];
    }
    std::optional<MapRow> get(const std::string &map, const std::string &key)
    {
        return st.map_get(kEntryMap, map, key);
    }
};

void assert_result(const CommandResult &r, ResultCode code, int64_t value)
{
    assert_int_equal(static_cast<int>(r.code), static_cast<int>(code));
    if (r.value != value)
        fail_msg("result value %lld, expected %lld", (long long)r.value, (long long)value);
}

Command put(const std::string &key, const std::string &value, const std::string &map = "m")
{
    return cmd_of(Op::MapPut, map, key, value);
}

} // namespace

/* A command resent with the retry flag after a leader change is answered
 * from its recorded outcome when its first attempt was applied, and applied when
 * it was not. */
static void retried_command_applies_once(void **)
{
    Replica r;
    Command incr = counter_cmd(Op::CounterIncr, "c", 5);
    incr.request_id = 42;
    assert_result(r.one(3, 1000, incr), ResultCode::Ok, 5);

    Command again = incr;
    again.flags |= kFlagRetry;
    assert_result(r.one(4, 2000, again), ResultCode::Ok, 5); /* same answer ... */
    assert_true(*r.st.counter_get("c") == 5);                 /* ... not applied twice */

    /* a retry whose first attempt never made it into the log is applied */
    Command fresh = counter_cmd(Op::CounterIncr, "c", 1);
    fresh.request_id = 43;
    fresh.flags |= kFlagRetry;
    assert_result(r.one(5, 3000, fresh), ResultCode::Ok, 6);

    /* map versions come back as first assigned */
    Command p = put("k", "v");
    p.request_id = 44;
    int64_t v = r.one(6, 4000, p).value;
    p.flags |= kFlagRetry;
    assert_result(r.one(7, 5000, p), ResultCode::Ok, v);
    assert_true(r.get("m", "k")->version == v);
}

/* What a partition remembers of a request's origin travels in snapshots,
 * and an origin unheard of for kOriginIdleUs is forgotten at a log-time
 * minute boundary, identically on every replica. */
static void request_origins_window_and_snapshots(void **)
{
    Replica r;
    Command incr = counter_cmd(Op::CounterIncr, "c", 1);
    incr.request_id = (7ULL << 32) | 1;
    r.one(1, 1000, incr);

    Replica copy;
    std::string snap = r.sm.snapshot();
    assert_true(copy.sm.restore(snap.data(), snap.size()));
    Command again = incr;
    again.flags |= kFlagRetry;
    assert_result(copy.one(2, 2000, again), ResultCode::Ok, 1);
    assert_true(*copy.st.counter_get("c") == 1);
    assert_true(copy.sm.recorded_outcome(incr.request_id)->value == 1);

    /* past the window the origin is forgotten: a (very late) retry applies */
    int64_t later = 1000 + kOriginIdleUs + kForgetEveryUs;
    assert_result(r.one(2, later, again), ResultCode::Ok, 2);
    RequestOrigins left = RequestOrigins::decode(r.st.load_meta().origins);
    assert_int_equal(left.origins().size(), 1); /* heard again by the late one */
    assert_int_equal(left.origins()[0].heard_us, later);
}

static void version_layout(void **)
{
    assert_true(make_version(5, 0) == (5LL << 16));
    assert_true(make_version(5, 3) == (5LL << 16) + 3);
    assert_true(make_version(5, 65535) < make_version(6, 0));
}

static void map_put_versions_strictly_increase(void **)
{
    Replica r;
    auto res = r.apply(5, 100, {put("a", "1"), put("b", "2"), put("a", "3")});
    assert_result(res[0], ResultCode::Ok, make_version(5, 0));
    assert_result(res[1], ResultCode::Ok, make_version(5, 1));
    assert_result(res[2], ResultCode::Ok, make_version(5, 2));

    int64_t last = res[2].value;
    for (uint64_t index = 6; index < 40; index += 3) { /* gaps: other entry types */
        CommandResult c = r.one(index, 100, put("a", std::to_string(index)));
        assert_true(c.value > last);
        assert_true(c.value == make_version(index, 0));
        last = c.value;
    }
    auto row = r.get("m", "a");
    assert_true(row && row->value == "39" && row->version == last && !row->expires_at_us);
    assert_true(r.get("m", "b")->version == make_version(5, 1));
}

static void request_ids_are_echoed(void **)
{
    Replica r;
    Command a = put("k", "v"), b = counter_cmd(Op::CounterIncr, "c", 1);
    a.request_id = 0xabcdef;
    b.request_id = 7;
    auto res = r.apply(1, 0, {a, b, cmd_of(Op::Barrier)});
    assert_true(res[0].request_id == 0xabcdef);
    assert_true(res[1].request_id == 7);
    assert_true(res[2].request_id == 0);
}

static void map_put_if_version(void **)
{
    Replica r;
    int64_t v1 = r.one(1, 0, put("k", "one")).value;

    /* match: written, new version */
    CommandResult ok = r.one(2, 0, with_if_version(put("k", "two"), v1));
    assert_result(ok, ResultCode::Ok, make_version(2, 0));
    /* mismatch (stale version): Null, nothing changes */
    assert_result(r.one(3, 0, with_if_version(put("k", "three"), v1)), ResultCode::Null, 0);
    assert_true(r.get("m", "k")->value == "two");
    assert_true(r.get("m", "k")->version == make_version(2, 0));
    /* absent key never matches, not even version 0 */
    assert_result(r.one(4, 0, with_if_version(put("nope", "x"), 0)), ResultCode::Null, 0);
    assert_false(r.get("m", "nope").has_value());
    /* if_version is only honoured with its flag */
    Command unflagged = put("k", "four");
    unflagged.if_version = 12345;
    assert_result(r.one(5, 0, unflagged), ResultCode::Ok, make_version(5, 0));
}

static void map_insert_only_when_absent(void **)
{
    Replica r;
    assert_result(r.one(1, 0, cmd_of(Op::MapInsert, "m", "k", "first")), ResultCode::Ok,
                  make_version(1, 0));
    assert_result(r.one(2, 0, cmd_of(Op::MapInsert, "m", "k", "second")), ResultCode::Null, 0);
    assert_true(r.get("m", "k")->value == "first");
    assert_true(r.get("m", "k")->version == make_version(1, 0));
    /* same key in another map is another entry */
    assert_result(r.one(3, 0, cmd_of(Op::MapInsert, "other", "k", "x")), ResultCode::Ok,
                  make_version(3, 0));
}

static void map_remove(void **)
{
    Replica r;
    int64_t v = r.one(1, 0, put("k", "v")).value;
    r.one(2, 0, put("j", "v"));

    assert_result(r.one(3, 0, cmd_of(Op::MapRemove, "m", "absent")), ResultCode::Ok, 0);
    /* wrong version: kept */
    assert_result(r.one(4, 0, with_if_version(cmd_of(Op::MapRemove, "m", "k"), v + 1)),
                  ResultCode::Ok, 0);
    assert_true(r.get("m", "k").has_value());
    /* right version: removed */
    assert_result(r.one(5, 0, with_if_version(cmd_of(Op::MapRemove, "m", "k"), v)), ResultCode::Ok,
                  1);
    assert_false(r.get("m", "k").has_value());
    /* unconditional */
    assert_result(r.one(6, 0, cmd_of(Op::MapRemove, "m", "j")), ResultCode::Ok, 1);
    assert_int_equal(r.st.map_count(), 0);
    /* insert after remove works again */
    assert_result(r.one(7, 0, cmd_of(Op::MapInsert, "m", "k", "back")), ResultCode::Ok,
                  make_version(7, 0));
}

static void map_clear_counts(void **)
{
    Replica r;
    r.apply(1, 0, {put("1", "", "a"), put("2", "", "a"), put("3", "", "a"), put("1", "", "b"),
                   put("2", "", "b")});
    r.one(2, 0, counter_cmd(Op::CounterSet, "a", 5)); /* counters are not map entries */
    assert_result(r.one(3, 0, cmd_of(Op::MapClear, "a")), ResultCode::Ok, 3);
    assert_result(r.one(4, 0, cmd_of(Op::MapClear, "a")), ResultCode::Ok, 0);
    assert_int_equal(r.st.map_count(), 2);
    assert_true(r.st.counter_get("a") == 5);
    assert_result(r.one(5, 0, cmd_of(Op::MapClear, "b")), ResultCode::Ok, 2);
}

/* expires_at = log time + ttl; the row is purged by the first later entry
 * whose stamp reaches expires_at, before that entry's commands run. */
static void ttl_expires_on_later_stamp(void **)
{
    Replica r;
    r.one(1, 10000, with_ttl(put("k", "v"), 1000));
    assert_true(r.get("m", "k")->expires_at_us == 11000);

    r.one(2, 10999, cmd_of(Op::Barrier));
    assert_true(r.get("m", "k").has_value());
    /* purged first, so an insert in the same entry finds the key free */
    assert_result(r.one(3, 11000, cmd_of(Op::MapInsert, "m", "k", "new")), ResultCode::Ok,
                  make_version(3, 0));
    assert_true(r.get("m", "k")->value == "new");
    assert_false(r.get("m", "k")->expires_at_us.has_value());
}

static void ttl_overwritten_without_ttl_stays(void **)
{
    Replica r;
    r.apply(1, 100, {with_ttl(put("k", "v"), 50), with_ttl(put("other", "v"), 500)});
    r.one(2, 120, put("k", "forever"));
    assert_false(r.get("m", "k")->expires_at_us.has_value());
    r.one(3, 10000, cmd_of(Op::Barrier));
    assert_true(r.get("m", "k")->value == "forever");
    assert_false(r.get("m", "other").has_value());
}

static void ttl_edge_values(void **)
{
    Replica r;
    /* an absurd ttl saturates instead of overflowing (UBSan would object) */
    r.one(1, 1000, with_ttl(put("huge", "v"), kMax));
    assert_true(r.get("m", "huge")->expires_at_us == kMax);
    /* ttl 0 / negative: already due, gone with the next entry */
    r.apply(2, 2000, {with_ttl(put("zero", "v"), 0), with_ttl(put("neg", "v"), kMin)});
    assert_true(r.get("m", "zero")->expires_at_us == 2000);
    r.one(3, 2000, cmd_of(Op::Barrier));
    assert_false(r.get("m", "zero").has_value());
    assert_false(r.get("m", "neg").has_value());
    assert_true(r.get("m", "huge").has_value());
}

static void log_time_never_goes_backwards(void **)
{
    Replica r;
    r.one(1, 20000, cmd_of(Op::Barrier));
    /* a new leader whose clock is behind: time stays at 20000 */
    r.one(2, 5000, with_ttl(put("k", "v"), 100));
    assert_true(r.st.load_meta().log_time_us == 20000);
    assert_true(r.get("m", "k")->expires_at_us == 20100);

    r.one(3, 20050, cmd_of(Op::Barrier));
    r.one(4, 1, cmd_of(Op::Barrier)); /* smaller again: no jump back, no expiry */
    assert_true(r.st.load_meta().log_time_us == 20050);
    assert_true(r.get("m", "k").has_value());
    r.one(5, 20100, cmd_of(Op::Barrier));
    assert_false(r.get("m", "k").has_value());
    assert_true(r.st.load_meta().log_time_us == 20100);
}

static void counter_set_returns_previous(void **)
{
    Replica r;
    assert_result(r.one(1, 0, counter_cmd(Op::CounterSet, "c", 42)), ResultCode::Ok, 0);
    assert_result(r.one(2, 0, counter_cmd(Op::CounterSet, "c", -7)), ResultCode::Ok, 42);
    assert_true(r.st.counter_get("c") == -7);
    assert_false(r.st.counter_get("d").has_value());
}

static void counter_incr_and_overflow(void **)
{
    Replica r;
    assert_result(r.one(1, 0, counter_cmd(Op::CounterIncr, "c", 5)), ResultCode::Ok, 5);
    assert_result(r.one(2, 0, counter_cmd(Op::CounterIncr, "c", -8)), ResultCode::Ok, -3);

    r.one(3, 0, counter_cmd(Op::CounterSet, "hi", kMax - 1));
    assert_result(r.one(4, 0, counter_cmd(Op::CounterIncr, "hi", 1)), ResultCode::Ok, kMax);
    assert_int_equal(static_cast<int>(r.one(5, 0, counter_cmd(Op::CounterIncr, "hi", 1)).code),
                     static_cast<int>(ResultCode::OutOfRange));
    assert_true(r.st.counter_get("hi") == kMax);

    r.one(6, 0, counter_cmd(Op::CounterSet, "lo", kMin));
    assert_int_equal(static_cast<int>(r.one(7, 0, counter_cmd(Op::CounterIncr, "lo", -1)).code),
                     static_cast<int>(ResultCode::OutOfRange));
    assert_true(r.st.counter_get("lo") == kMin);

    /* overflow on an absent counter (0 + kMin is fine, kMin + kMin is not) */
    assert_result(r.one(8, 0, counter_cmd(Op::CounterIncr, "new", kMin)), ResultCode::Ok, kMin);
    assert_int_equal(static_cast<int>(r.one(9, 0, counter_cmd(Op::CounterIncr, "new", kMin)).code),
                     static_cast<int>(ResultCode::OutOfRange));
    assert_true(r.st.counter_get("new") == kMin);
}

static void counter_cas(void **)
{
    Replica r;
    /* absent counts as 0 */
    assert_result(r.one(1, 0, counter_cmd(Op::CounterCas, "c", 0, 10)), ResultCode::Ok, 1);
    assert_true(r.st.counter_get("c") == 10);
    assert_result(r.one(2, 0, counter_cmd(Op::CounterCas, "c", 9, 20)), ResultCode::Ok, 0);
    assert_true(r.st.counter_get("c") == 10);
    assert_result(r.one(3, 0, counter_cmd(Op::CounterCas, "c", 10, 20)), ResultCode::Ok, 1);
    assert_true(r.st.counter_get("c") == 20);
    assert_result(r.one(4, 0, counter_cmd(Op::CounterCas, "absent", 1, 5)), ResultCode::Ok, 0);
    assert_false(r.st.counter_get("absent").has_value());
}

static void barrier_result(void **)
{
    Replica r;
    r.one(3, 0, put("k", "v"));
    std::string before = dump(r.st);
    auto res = r.apply(9, 0, {cmd_of(Op::Barrier), cmd_of(Op::Barrier)});
    assert_result(res[0], ResultCode::Ok, 9);
    assert_result(res[1], ResultCode::Ok, 9);
    assert_true(dump(r.st) == before);
    assert_int_equal(r.st.load_meta().applied_index, 9);
}

/* Replaying the log after a crash must be harmless. */
static void same_index_twice_is_skipped(void **)
{
    Replica r;
    std::string e = pack(500, {counter_cmd(Op::CounterIncr, "c", 1), put("k", "v"),
                               with_ttl(put("t", "v"), 10)});
    std::vector<CommandResult> out;
    assert_true(r.sm.apply(7, e.data(), e.size(), out));
    assert_int_equal(out.size(), 3);
    std::string state = dump(r.st);

    out.clear();
    bool malformed = false;
    assert_false(r.sm.apply(7, e.data(), e.size(), out, &malformed));
    assert_false(r.sm.apply(3, e.data(), e.size(), out, &malformed));
    std::string later = pack(100000, {counter_cmd(Op::CounterIncr, "c", 1)});
    assert_false(r.sm.apply(6, later.data(), later.size(), out)); /* would also purge */
    assert_true(out.empty());
    assert_true(dump(r.st) == state);
    assert_true(r.st.counter_get("c") == 1);
    assert_int_equal(r.st.load_meta().applied_index, 7);
    assert_true(r.st.load_meta().log_time_us == 500);
}

static void malformed_entry_skipped_index_advances(void **)
{
    Replica r;
    r.one(1, 100, counter_cmd(Op::CounterSet, "c", 1));
    std::string state = dump(r.st);

    std::vector<std::string> bad = {
        "", "garbage", std::string(kEntryHeaderSize, '\0'),
        /* valid header, 2 commands, the second cut short: the first must not
         * be applied either (no half-applied entries) */
        pack(100, {counter_cmd(Op::CounterIncr, "c", 1), put("k", "v")}),
    };
    bad.back().resize(bad.back().size() - 1);

    uint64_t index = 2;
    for (const std::string &e : bad) {
        std::vector<CommandResult> out;
        bool malformed = false;
        assert_true(r.sm.apply(index, e.data(), e.size(), out, &malformed));
        assert_true(malformed);
        assert_true(out.empty());
        assert_int_equal(r.st.load_meta().applied_index, index);
        assert_true(dump(r.st) == state);
        index++;
    }
    /* later entries still apply normally */
    assert_result(r.one(index, 100, counter_cmd(Op::CounterIncr, "c", 1)), ResultCode::Ok, 2);
}

namespace {

/* A state touching every record kind and field of the snapshot format. */
void build_varied_state(Replica &r)
{
    r.apply(3, 1000,
            {put("k", "v"), put(std::string("\0bin", 4), std::string("\0\xff", 2), "m2"),
             put("", ""), with_ttl(put("ttl", "x"), 500), with_ttl(put("far", "x"), kMax)});
    r.apply(8, 1200, {counter_cmd(Op::CounterSet, "c", -5), counter_cmd(Op::CounterSet, "", kMax),
                      counter_cmd(Op::CounterIncr, std::string("z\0", 2), 3)});
    r.one(9, 1300, put("big", std::string(100000, 'b')));
}

} // namespace

static void snapshot_restore_round_trip(void **)
{
    Replica a;
    build_varied_state(a);
    std::string snap = a.sm.snapshot();

    Replica b;
    assert_true(b.sm.restore(snap.data(), snap.size()));
    assert_true(dump(b.st) == dump(a.st));
    assert_int_equal(b.st.load_meta().applied_index, 9);
    assert_true(b.sm.snapshot() == snap);

    /* both continue identically, including the TTL purge at 1500 */
    std::vector<Command> next = {cmd_of(Op::MapInsert, "m", "ttl", "again"), put("k", "w")};
    auto ra = a.apply(10, 1500, next);
    auto rb = b.apply(10, 1500, next);
    for (size_t i = 0; i < next.size(); i++) {
        assert_int_equal(static_cast<int>(ra[i].code), static_cast<int>(rb[i].code));
        assert_true(ra[i].value == rb[i].value);
    }
    assert_result(rb[0], ResultCode::Ok, make_version(10, 0)); /* "ttl" had expired */
    assert_true(dump(b.st) == dump(a.st));
}

static void restore_replaces_existing_older_state(void **)
{
    Replica a;
    build_varied_state(a);
    std::string snap = a.sm.snapshot();

    Replica b;
    b.apply(2, 50, {put("stale", "x"), counter_cmd(Op::CounterSet, "stale", 1),
                    with_ttl(put("soon", "x"), 1)});
    b.one(3, 60, cmd_of(Op::Barrier)); /* still below the snapshot's 9 */
    assert_true(b.sm.restore(snap.data(), snap.size()));
    assert_true(dump(b.st) == dump(a.st));
}

static void restore_at_or_after_snapshot_index_is_refused(void **)
{
    Replica a;
    build_varied_state(a); /* applied index 9 */
    std::string snap = a.sm.snapshot();

    for (uint64_t index : {9u, 12u}) {
        Replica b;
        b.apply(index, 7, {put("mine", "x"), counter_cmd(Op::CounterSet, "mine", 3)});
        std::string before = dump(b.st);
        assert_false(b.sm.restore(snap.data(), snap.size()));
        assert_true(dump(b.st) == before);
        assert_int_equal(b.st.load_meta().applied_index, index);
    }
}

static void restore_rejects_damaged_snapshots(void **)
{
    Replica a;
    build_varied_state(a);
    std::string snap = a.sm.snapshot();
    /* every truncation: the end marker is missing, so DecodeError (never an
     * over-read) */
    for (size_t len = 0; len < snap.size(); len += (len < 200 ? 1 : 997)) {
        Replica b;
        std::vector<uint8_t> exact(snap.begin(), snap.begin() + len);
        bool threw = false;
        try {
            b.sm.restore(exact.data(), exact.size());
        } catch (const DecodeError &) {
            threw = true;
        }
        if (!threw)
            fail_msg("snapshot cut to %zu of %zu bytes was accepted", len, snap.size());
    }
    std::string bad_record = snap;
    bad_record[4 + 1 + 8 + 8] = 0x33; /* first record kind */
    Replica b;
    bool threw = false;
    try {
        b.sm.restore(bad_record.data(), bad_record.size());
    } catch (const DecodeError &) {
        threw = true;
    }
    assert_true(threw);
}

/* "Nothing is half-applied": a snapshot that fails to decode must leave the
 * replica as it was.  restore() clears the storage and installs records as it
 * parses them, so a damaged snapshot leaves a partial state behind while the
 * old applied index stays -- later entries then apply on top of the wrong
 * state (MemoryStorage has no transaction to roll back). */
static void damaged_snapshot_leaves_state_unchanged(void **)
{
    bool unchanged;
    {
        Replica a;
        build_varied_state(a);
        std::string snap = a.sm.snapshot();
        snap.resize(snap.size() - 1); /* drop the end marker only */

        Replica b;
        b.apply(2, 50, {put("mine", "x"), counter_cmd(Op::CounterSet, "mine", 3)});
        std::string before = dump(b.st);
        try {
            b.sm.restore(snap.data(), snap.size());
        } catch (const DecodeError &) {
        }
        unchanged = dump(b.st) == before;
    }
    if (!unchanged)
        fail_msg("restore() of a truncated snapshot threw DecodeError but had already "
                 "replaced the replica's state");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(version_layout),
        cmocka_unit_test(retried_command_applies_once),
        cmocka_unit_test(request_origins_window_and_snapshots),
        cmocka_unit_test(map_put_versions_strictly_increase),
        cmocka_unit_test(request_ids_are_echoed),
        cmocka_unit_test(map_put_if_version),
        cmocka_unit_test(map_insert_only_when_absent),
        cmocka_unit_test(map_remove),
        cmocka_unit_test(map_clear_counts),
        cmocka_unit_test(ttl_expires_on_later_stamp),
        cmocka_unit_test(ttl_overwritten_without_ttl_stays),
        cmocka_unit_test(ttl_edge_values),
        cmocka_unit_test(log_time_never_goes_backwards),
        cmocka_unit_test(counter_set_returns_previous),
        cmocka_unit_test(counter_incr_and_overflow),
        cmocka_unit_test(counter_cas),
        cmocka_unit_test(barrier_result),
        cmocka_unit_test(same_index_twice_is_skipped),
        cmocka_unit_test(malformed_entry_skipped_index_advances),
        cmocka_unit_test(snapshot_restore_round_trip),
        cmocka_unit_test(restore_replaces_existing_older_state),
        cmocka_unit_test(restore_at_or_after_snapshot_index_is_refused),
        cmocka_unit_test(restore_rejects_damaged_snapshots),
        cmocka_unit_test(damaged_snapshot_leaves_state_unchanged),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
