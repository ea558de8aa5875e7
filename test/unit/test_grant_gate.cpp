/*
 * test_grant_gate.cpp — the node-side rule for answering grants
 * (src/core/grant_gate.h), with injected time.
 *
 * The node vouches for a partition's sessions until the deadline its last
 * acknowledged keep-alive reported minus a margin.  A grant may be answered
 * only while that holds and while the applied log has not closed the
 * session in the same turn (a backlog: grant, then the session's close).
 */
#include "unit_helpers.h"

#include "grant_gate.h"

using namespace atomix;

static constexpr int64_t kSec = 1000000;

static void grants_are_only_session_bound_successes(void **)
{
    assert_true(grants_to_session(Op::LockAcquire, 12345));
    assert_true(grants_to_session(Op::ElectionEnter, 3));
    assert_true(grants_to_session(Op::ElectionAnoint, 3));
    assert_true(grants_to_session(Op::ElectionPromote, 3));
    assert_true(grants_to_session(Op::SemaphoreAcquire, 1));
    assert_false(grants_to_session(Op::SemaphoreAcquire, 0)); /* not granted */
    assert_false(grants_to_session(Op::LockRelease, 1));
    assert_false(grants_to_session(Op::ElectionWithdraw, 1));
    assert_false(grants_to_session(Op::MapPut, 1));
}

/* A node that keeps renewing delivers; one woken from a pause past its
 * vouching deadline does not, by a microsecond or by minutes. */
static void deadline_decides(void **)
{
    GrantGate gate;
    int64_t session_timeout = 5 * kSec, margin = session_timeout / 8;
    int64_t renewed_at = 1000 * kSec;
    int64_t vouched = renewed_at + session_timeout - margin; /* as extend_lease keeps it */
    assert_true(gate.may_deliver(7, vouched, renewed_at + 1 * kSec, false));
    assert_true(gate.may_deliver(7, vouched, vouched, false));
    assert_false(gate.may_deliver(7, vouched, vouched + 1, false));
    /* the 4.8 s freeze of the bug report, renewed 1 s before it began */
    int64_t froze_at = renewed_at + 1 * kSec;
    assert_false(gate.may_deliver(7, vouched, froze_at + 4800000, false));
    /* a clock step forward on this node: refused (the safe direction) */
    assert_false(gate.may_deliver(7, vouched, renewed_at + 120 * kSec, false));
    /* nothing vouched yet for the partition */
    assert_false(gate.may_deliver(7, 0, renewed_at, false));
}

/* The backlog case: the grant and the session's close applied in one turn.
 * Even a node that still vouches (a keep-alive later in the backlog moved
 * its deadline) must not answer the grant. */
static void closed_in_the_same_turn(void **)
{
    GrantGate gate;
    int64_t now = 2000 * kSec, vouched = now + 3 * kSec;
    assert_true(gate.may_deliver(42, vouched, now, false));
    gate.session_closed(42);
    assert_true(gate.closed_in_log(42));
    assert_false(gate.may_deliver(42, vouched, now, false));
    assert_true(gate.may_deliver(43, vouched, now, false)); /* other sessions unaffected */
    gate.turn_done();
    assert_false(gate.closed_in_log(42));
    assert_true(gate.may_deliver(42, vouched, now, false));
}

/* test/chaos, 21-min run: node 1 could not renew partition 0, flagged the
 * session expired and proposed its close everywhere; the close released a
 * lock in partition 14 on its leader, which gave it to the next waiter —
 * while an older grant of that lock to this session was still on its way to
 * node 1, whose vouching deadline for partition 14 had not passed.  The
 * node's own flag must stop that grant, in any later turn. */
static void flagged_by_this_node(void **)
{
    GrantGate gate;
    int64_t now = 3000 * kSec, vouched = now + 2 * kSec;
    assert_true(gate.may_deliver(9, vouched, now, false));
    assert_false(gate.may_deliver(9, vouched, now, true));
    gate.turn_done();
    assert_false(gate.may_deliver(9, vouched, now + 1, true));
}

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(flagged_by_this_node),
        cmocka_unit_test(grants_are_only_session_bound_successes),
        cmocka_unit_test(deadline_decides),
        cmocka_unit_test(closed_in_the_same_turn),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
