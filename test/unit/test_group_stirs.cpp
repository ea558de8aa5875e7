/*
 * test_group_stirs.cpp — the worker's busy turns poll only the Raft groups
 * something stirred since their last poll (RaftGroupConfig::on_stir,
 * bgworker/group_polls.cpp).  Three real RaftGroups on raft_uv logs whose
 * turns poll nothing else (raft_group_cluster.h): every change poll() acts
 * on — a commit to announce, an election won, a send to complete — must
 * stir its group, or what it does comes a heartbeat late or never.
 */
#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "raft_group_cluster.h"

using namespace atomix;
using namespace atomix_test;

namespace {

int start_cluster(Cluster &c)
{
    c.hibernate = true; /* ticked by the owner, as the worker ticks */
    cluster_start(c);
    assert_true(run_until(c, [&] { return leader_of(c) >= 0; }, 10000));
    return leader_of(c);
}

/* Milliseconds from proposing one entry on `lead` until every running member
 * not cut off has applied it. */
double commit_everywhere_ms(Cluster &c, int lead)
{
    uint64_t before[3];
    for (int i = 0; i < 3; i++)
        before[i] = c.members[i].applied;
    std::vector<int> outcomes;
    auto t0 = std::chrono::steady_clock::now();
    assert_int_equal(c.members[lead].group->propose("entry", proposal_done, &outcomes), 0);
    assert_true(run_until(c, [&] {
        for (int i = 0; i < 3; i++)
            if (running(c.members[i]) && !c.members[i].cut && c.members[i].applied <= before[i])
                return false;
        return outcomes.size() == 1;
    }, 5000));
    assert_int_equal(outcomes[0], 0);
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

/* Entries commit and reach the followers' state machines within a few log
 * writes, not a heartbeat (100 ms): the leader's poll announces the commit
 * as soon as a follower's answer stirs it.  A new leader, elected while the
 * old one is cut off, is polled when it wins (the vote stirred it): it
 * appends its barrier, can serve read indexes, and commits. */
void test_commits_and_elections_need_no_full_walk(void **)
{
    Cluster c;
    int lead = start_cluster(c);
    std::vector<double> ms;
    for (int i = 0; i < 21; i++)
        ms.push_back(commit_everywhere_ms(c, lead));
    print_message("    proposal applied on all three: median %.1f ms, slowest %.1f ms\n", median(ms),
                  *std::max_element(ms.begin(), ms.end()));
    assert_true(median(ms) < 50.0);

    c.members[lead].cut = true;
    int next = -1;
    assert_true(run_until(c, [&] {
        next = leader_of(c, lead);
        uint64_t term, commit;
        return next >= 0 && c.members[next].group->read_index_state(&term, &commit);
    }, 10000));
    ms.clear();
    for (int i = 0; i < 11; i++)
        ms.push_back(commit_everywhere_ms(c, next));
    assert_true(median(ms) < 50.0);
    c.members[lead].cut = false;
    cluster_stop(c);
}

/* Polls until a poll stirs nothing (one may: an announcement it sent). */
void settle(RaftGroup &g)
{
    for (int k = 0; k < 10 && g.stirred(); k++)
        g.poll();
}

/* Each event, in isolation: poll the group right before it (which clears
 * the stir), then see it stirred.  Every message delivered stirs the group
 * that receives it (a follower's answer moves the leader's commit index,
 * which only the leader's poll announces); a proposal stirs the leader; a
 * log write that completes stirs its group. */
void test_every_event_stirs_its_group(void **)
{
    Cluster c;
    int lead = start_cluster(c);
    RaftGroup &leader = *c.members[lead].group;
    for (int round = 0; round < 5; round++) {
        settle(leader);
        assert_false(leader.stirred());
        std::vector<int> outcomes;
        assert_int_equal(leader.propose("entry", proposal_done, &outcomes), 0);
        assert_true(leader.stirred());
        int delivered = 0, writes_done = 0;
        for (int turn = 0; turn < 2000 && outcomes.empty(); turn++) {
            for (Member &m : c.members)
                settle(*m.group);
            bool busy[3];
            for (int i = 0; i < 3; i++)
                busy[i] = c.members[i].group->io_busy() && !c.members[i].group->stirred();
            uv_run(&c.loop, UV_RUN_NOWAIT);
            for (int i = 0; i < 3; i++)
                if (busy[i] && !c.members[i].group->io_busy()) {
                    assert_true(c.members[i].group->stirred()); /* its log write completed */
                    writes_done++;
                }
            std::deque<Message> batch;
            batch.swap(c.wire);
            for (const Message &msg : batch) {
                RaftGroup &to = *c.members[msg.to - 1].group;
                settle(to);
                assert_false(to.stirred());
                to.deliver(msg.from, address_of(msg.from), msg.encoded.data(), msg.encoded.size());
                assert_true(to.stirred());
                delivered++;
            }
            usleep(500);
        }
        assert_int_equal(outcomes.size(), 1);
        assert_true(delivered >= 4);   /* two appends, two answers */
        assert_true(writes_done >= 1); /* the leader's own */
    }
    cluster_stop(c);
}

/* A group asleep is never stirred, so the worker's busy turns skip it: the
 * digests that keep it asleep do not go through the group. */
void test_sleeping_groups_are_not_stirred(void **)
{
    Cluster c;
    int lead = start_cluster(c);
    (void)commit_everywhere_ms(c, lead);
    assert_true(run_until(c, [&] {
        for (Member &m : c.members)
            if (!m.group->hibernating())
                return false;
        return true;
    }, 5000));
    uint64_t stirs[3], polls[3];
    for (int i = 0; i < 3; i++) {
        stirs[i] = c.members[i].stirs;
        polls[i] = c.members[i].polls;
    }
    run_until(c, [] { return false; }, 1500); /* three digest rounds, fifteen ticks */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c.members[i].stirs, stirs[i]);
        assert_int_equal(c.members[i].polls, polls[i]);
    }
    /* and a proposal stirs the leader again */
    (void)commit_everywhere_ms(c, lead);
    assert_true(c.members[lead].stirs > stirs[lead]);
    cluster_stop(c);
}

} // namespace

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commits_and_elections_need_no_full_walk),
        cmocka_unit_test(test_every_event_stirs_its_group),
        cmocka_unit_test(test_sleeping_groups_are_not_stirred),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
