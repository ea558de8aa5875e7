/*
 * test_request_origins.cpp — the table a partition keeps of each node that
 * sends it commands (src/core/request_origins.h): its encoding, which is
 * stored in partition_state.origins and in snapshots, and its rules on its
 * own.  How the state machine uses it is test_at_most_once's.
 */
#include "unit_helpers.h"

#include "codec.h"
#include "request_origins.h"

using namespace atomix;

static uint64_t oid(uint64_t origin, uint32_t n) { return (origin << 32) | n; }

/* What goes in comes back out byte for byte; "" is the empty table. */
static void encoding_round_trips(void **)
{
    assert_true(RequestOrigins().encode().empty());
    assert_true(RequestOrigins::decode("").origins().empty());

    RequestOrigins t;
    t.heard(oid(3, 10), oid(3, 10), 1000);
    t.record(oid(3, 10), 0, 42, 1000);
    t.record(oid(3, 12), 3, -7, 1000);
    t.heard(oid(1, 5), 0, 2000);
    t.record(oid(1, 5), 1, 0, 2000);
    std::string bytes = t.encode();
    RequestOrigins back = RequestOrigins::decode(bytes);
    assert_true(back.encode() == bytes);
    assert_int_equal(back.origins().size(), 2);
    assert_true(back.origins()[0].key == 1); /* sorted by origin */
    assert_true(back.origins()[1].floor == oid(3, 10));
    assert_int_equal(back.origins()[1].heard_us, 1000);
    RecordedOutcome out;
    assert_true(back.lookup(oid(3, 12), &out) == RequestOrigins::Seen::Applied);
    assert_int_equal(out.code, 3);
    assert_int_equal(out.value, -7);
    assert_true(back.lookup(oid(3, 11), nullptr) == RequestOrigins::Seen::New);
    assert_true(back.lookup(oid(3, 9), nullptr) == RequestOrigins::Seen::Finished);
    assert_true(back.lookup(oid(4, 1), nullptr) == RequestOrigins::Seen::New);
    assert_false(back.changed());
}

/* Damaged bytes are refused whole (the entry or snapshot fails to apply,
 * never half a table). */
static void damaged_encodings_are_refused(void **)
{
    RequestOrigins t;
    t.record(oid(2, 1), 0, 1, 10);
    std::string good = t.encode();
    const std::string bad[] = {
        std::string("\x02", 1) + good.substr(1), /* unknown format */
        good.substr(0, good.size() - 1),          /* truncated */
        good + "x",                               /* trailing bytes */
    };
    for (const std::string &b : bad) {
        bool refused = false;
        try {
            (void)RequestOrigins::decode(b);
        } catch (const DecodeError &) {
            refused = true;
        }
        assert_true(refused);
    }
    /* an outcome count over the bound */
    std::string huge;
    ByteWriter w(huge);
    w.u8(1);
    w.u32(1);
    w.u64(2);
    w.u64(0);
    w.i64(0);
    w.u32((uint32_t)kMaxOutcomesPerOrigin + 1);
    bool refused = false;
    try {
        (void)RequestOrigins::decode(huge);
    } catch (const DecodeError &) {
        refused = true;
    }
    assert_true(refused);
}

/* The floor only rises, only from its own origin's requests, drops the
 * outcomes below it, and nothing is recorded below it. */
static void the_floor_only_rises(void **)
{
    RequestOrigins t;
    t.record(oid(7, 1), 0, 1, 10);
    t.record(oid(7, 2), 0, 2, 10);
    t.heard(oid(7, 3), oid(7, 2), 20);
    assert_true(t.lookup(oid(7, 1), nullptr) == RequestOrigins::Seen::Finished);
    assert_true(t.lookup(oid(7, 2), nullptr) == RequestOrigins::Seen::Applied);
    t.heard(oid(7, 2), oid(7, 1), 30); /* a stale copy's older floor */
    assert_true(t.origins()[0].floor == oid(7, 2));
    t.heard(oid(7, 4), oid(8, 100), 30); /* another origin's id is no floor here */
    assert_true(t.origins()[0].floor == oid(7, 2));
    t.record(oid(7, 1), 0, 9, 40);
    assert_true(t.lookup(oid(7, 1), nullptr) == RequestOrigins::Seen::Finished);
    assert_int_equal(t.origins()[0].outcomes.size(), 1);
}

/* Origins unheard of since the forget bound are forgotten.  A quiet one
 * whose node was heard from since under another origin (a later worker life:
 * lives of a node never overlap) keeps only its floor, past its last outcome;
 * a quiet one that is its node's latest keeps everything — log time may have
 * jumped (a leader's clock stepped), and it may still wait for answers. */
static void quiet_origins_of_finished_lives_retire(void **)
{
    const uint64_t node2_old = (2 << 16) | 7, node2_new = (2 << 16) | 8, node3 = (3 << 16) | 1;
    RequestOrigins t;
    t.heard(oid(1, 1), 0, 100);
    t.heard(oid(node2_old, 5), oid(node2_old, 3), 300);
    t.record(oid(node2_old, 3), 0, 0, 300);
    t.record(oid(node2_old, 5), 0, 0, 300);
    t.heard(oid(node2_new, 1), 0, 500);
    t.record(oid(node2_new, 1), 0, 7, 500);
    t.heard(oid(node3, 4), 0, 300);
    t.record(oid(node3, 4), 0, 1, 300);
    RequestOrigins stored = RequestOrigins::decode(t.encode());
    stored.forget_idle(200, 400);
    assert_true(stored.changed());
    assert_int_equal(stored.origins().size(), 3); /* oid(1, *) forgotten */
    assert_true(stored.lookup(oid(node2_old, 4), nullptr) == RequestOrigins::Seen::Finished);
    assert_true(stored.lookup(oid(node2_old, 5), nullptr) == RequestOrigins::Seen::Finished);
    assert_true(stored.lookup(oid(node2_old, 6), nullptr) == RequestOrigins::Seen::New);
    assert_true(stored.lookup(oid(node2_new, 1), nullptr) == RequestOrigins::Seen::Applied);
    assert_true(stored.lookup(oid(node3, 4), nullptr) == RequestOrigins::Seen::Applied); /* its node's latest */
    RequestOrigins again = RequestOrigins::decode(stored.encode());
    again.forget_idle(200, 400);
    assert_false(again.changed());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encoding_round_trips),
        cmocka_unit_test(damaged_encodings_are_refused),
        cmocka_unit_test(the_floor_only_rises),
        cmocka_unit_test(quiet_origins_of_finished_lives_retire),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
