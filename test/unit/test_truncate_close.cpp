/*
 * test_truncate_close.cpp — a halted group is never closed while raft_uv
 * runs a truncate of its log (RaftGroup::truncate_in_doubt,
 * replication/thread_pool_work.*).
 *
 * raft_uv 0.15 frees a truncate request that its thread pool is still
 * running when it is closed: the raft worker's SIGSEGV in test/chaos (a
 * node back from a network cut truncated its log, the append after the
 * truncate failed on a full disk, the halted group was closed).  Here the
 * same sequence on three real RaftGroups, with libuv's thread pool cut to
 * one thread and held by gate works, so that the truncate sits in the
 * pool while the group waits to be closed.  Closed at that moment, raft_uv
 * frees the request twice (ASan: double free) or crashes.
 */
#include <atomic>
#include <cstdlib>
#include <string>
#include <vector>

#include "raft_group_cluster.h"
#include "thread_pool_work.h"

using namespace atomix;
using namespace atomix_test;

namespace {

/* A work that holds the pool's only thread until it is let go. */
struct Gate {
    uv_work_t req;
    std::atomic<bool> running{false};
    std::atomic<bool> open{false};
    bool done = false;
};

void gate_work(uv_work_t *req)
{
    Gate *g = static_cast<Gate *>(req->data);
    g->running = true;
    for (int i = 0; i < 30000 && !g->open; i++) /* at most 30 s */
        usleep(1000);
}

void gate_done(uv_work_t *req, int) { static_cast<Gate *>(req->data)->done = true; }

void gate_hold(Cluster &c, Gate &g)
{
    g.req.data = &g;
    assert_int_equal(uv_queue_work(&c.loop, &g.req, gate_work, gate_done), 0);
}

/* The old leader, cut off, wrote entries no one else has; back, it must
 * truncate them, and the append after the truncate fails. */
void test_halted_group_waits_for_its_truncate(void **)
{
    Cluster c;
    cluster_start(c);
    assert_true(run_until(c, [&] { return leader_of(c) >= 0; }, 10000));
    int old = leader_of(c);
    Member &m = c.members[old];
    std::vector<int> outcomes;
    for (int i = 0; i < 5; i++)
        assert_int_equal(m.group->propose("entry-" + std::to_string(i), proposal_done, &outcomes), 0);
    assert_true(run_until(c, [&] { return outcomes.size() == 5; }, 5000));
    /* raft_uv's own work passes through the counting uv_queue_work */
    assert_true(thread_pool_work_queued(&c.loop) > 0);

    /* cut off, it writes entries nobody else gets */
    m.cut = true;
    uint64_t before = m.group->last_index();
    std::vector<int> lost;
    for (int i = 0; i < 3; i++)
        assert_int_equal(m.group->propose("lost-" + std::to_string(i), proposal_done, &lost), 0);
    assert_true(run_until(c, [&] { return m.group->io_busy() == false && m.group->last_index() == before + 3; },
                          5000));
    /* the others elect a leader and commit entries of their own */
    assert_true(run_until(c, [&] { return leader_of(c) >= 0; }, 10000));
    Member &n = c.members[leader_of(c)];
    std::vector<int> kept;
    for (int i = 0; i < 3; i++)
        assert_int_equal(n.group->propose("kept-" + std::to_string(i), proposal_done, &kept), 0);
    assert_true(run_until(c, [&] { return kept.size() == 3; }, 5000));
    for (int s : kept)
        assert_int_equal(s, 0);

    /* hold the pool; back on the wire, the old leader truncates its lost
     * entries (raft_uv queues the closing of its segment, then the
     * truncate) and the append after the truncate fails */
    Gate first, second;
    gate_hold(c, first);
    assert_true(run_until(c, [&] { return first.running.load(); }, 5000));
    m.fail_next = 1;
    m.cut = false;
    assert_true(run_until(c, [&] { return m.group->io_failed(); }, 10000));
    m.group->quiesce(); /* as a halted partition's group: it hears no more */
    /* the segment is closed in the pool, its completion fires the barrier,
     * and the truncate queues behind the second gate */
    gate_hold(c, second);
    first.open = true;
    assert_true(run_until(c, [&] { return first.done && second.running.load(); }, 5000));
    run_until(c, [&] { return false; }, 200);
    assert_true(thread_pool_work_in_flight(&c.loop) >= 2); /* the gate and the truncate */

    /* nothing of the group's is in flight in our own queue, yet it must not
     * be closed: raft_uv would free the truncate under the pool's thread */
    assert_false(m.group->io_busy());
    assert_true(m.group->truncate_in_doubt());
    run_until(c, [&] { return false; }, 300);
    assert_true(m.group->truncate_in_doubt());

    /* once the truncate has run, it may */
    second.open = true;
    assert_true(run_until(c, [&] { return !m.group->truncate_in_doubt(); }, 5000));
    assert_true(second.done);
    member_stop(c, (uint32_t)old, true);

    /* reopened, its log loads and it follows the new leader: the lost
     * entries are gone, the kept ones applied */
    m.applied = 0;
    member_start(c, (uint32_t)old);
    assert_true(run_until(c, [&] {
        int l = leader_of(c);
        return l >= 0 && m.group->last_applied() >= c.members[l].group->last_applied() &&
               m.group->last_applied() >= before + 3;
    }, 10000));
    assert_false(m.group->io_failed());
    for (int s : lost)
        assert_int_not_equal(s, 0);
    cluster_stop(c);
}

/* Without a truncate, a failed group closes as soon as its own write is
 * done, whatever else the pool is running. */
void test_no_truncate_no_wait(void **)
{
    Cluster c;
    cluster_start(c);
    assert_true(run_until(c, [&] { return leader_of(c) >= 0; }, 10000));
    Member &m = c.members[leader_of(c)];
    std::vector<int> outcomes;
    m.fail_next = 1;
    assert_int_equal(m.group->propose("fails", proposal_done, &outcomes), 0);
    assert_true(run_until(c, [&] { return m.group->io_failed(); }, 5000));
    Gate g;
    gate_hold(c, g);
    assert_true(run_until(c, [&] { return g.running.load(); }, 5000));
    assert_false(m.group->io_busy());
    assert_false(m.group->truncate_in_doubt());
    g.open = true;
    assert_true(run_until(c, [&] { return g.done; }, 5000));
    cluster_stop(c);
}

} // namespace

extern "C" const char *__lsan_default_suppressions() { return "leak:libraft.so\n"; }

int main()
{
    /* one pool thread, so that a gate holds all of it (read when libuv
     * starts its pool, at the first work) */
    setenv("UV_THREADPOOL_SIZE", "1", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_halted_group_waits_for_its_truncate),
        cmocka_unit_test(test_no_truncate_no_wait),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
