/*
 * test_vote_promises.cpp — the follower side of read leases on real c-raft:
 * three RaftGroups on raft_uv logs (raft_group_cluster.h).
 *
 * A leader serves leased reads only while enough followers' promises hold
 * (replication/read_index.h).  A promise is RaftGroup::vote_promise_ms: how
 * long c-raft's own rules (has_leader, the election timer) keep this
 * replica from voting or standing.  These tests check the promise against
 * what c-raft really does when the leader is cut off — awake and asleep —
 * and that a restarted replica, which forgot its leader, withholds its vote
 * for an election timeout.
 */
#include "raft_group_cluster.h"

#include "clock.h"
#include "raft_message_codec.h"

using namespace atomix_test;

namespace {

uint64_t mono_ms() { return (uint64_t)(mono_now_us() / 1000); }

uint64_t promise_of(Cluster &c, int member, int leader, bool asleep)
{
    Member &m = c.members[member];
    uint64_t vouched = asleep && m.hibernation ? m.hibernation->vouched_ms(0) : 0;
    return m.group->vote_promise_ms((uint32_t)leader + 1, m.group->term(), vouched, mono_ms());
}

/* Cuts the leader off at `now` and returns when another member was elected. */
uint64_t elected_after_cut(Cluster &c, int leader)
{
    c.members[leader].cut = true;
    assert_true(run_until(c, [&] { return leader_of(c, leader) >= 0; }, 20000));
    return mono_ms();
}

} // namespace

/* Awake: the followers' promises run to their election timers; with the
 * leader cut off, nobody else is elected before the longer one ends (a
 * quorum of the two needs both). */
static void promises_hold_until_another_leader(void **)
{
    Cluster c;
    cluster_start(c);
    assert_true(run_until(c, [&] { return leader_of(c) >= 0; }, 10000));
    run_until(c, [] { return false; }, 400); /* heartbeats: both follow it */
    int L = leader_of(c), F = (L + 1) % 3, G = (L + 2) % 3;
    uint64_t term = c.members[L].group->term();
    /* no promise from the leader, to another leader, or in another term */
    assert_int_equal(c.members[L].group->vote_promise_ms((uint32_t)L + 1, term, 0, mono_ms()), 0);
    assert_int_equal(c.members[F].group->vote_promise_ms((uint32_t)G + 1, term, 0, mono_ms()), 0);
    assert_int_equal(c.members[F].group->vote_promise_ms((uint32_t)L + 1, term + 1, 0, mono_ms()), 0);

    uint64_t now = mono_ms();
    uint64_t pf = promise_of(c, F, L, false), pg = promise_of(c, G, L, false);
    /* heartbeats every 100 ms restart the timers: most of 1 s is left */
    assert_true(pf > 600 && pf < 1000);
    assert_true(pg > 600 && pg < 1000);
    uint64_t elected = elected_after_cut(c, L);
    printf("    promises %llu / %llu ms; another leader after %llu ms\n", (unsigned long long)pf,
           (unsigned long long)pg, (unsigned long long)(elected - now));
    assert_true(elected >= now + std::max(pf, pg));
    cluster_stop(c);
}

/* Asleep (hibernation): a sleeping follower's timer is frozen and restarts,
 * once its leader's node goes silent, from when the leader last vouched for
 * it — so that is what its promise counts from. */
static void sleeping_followers_promise_from_the_last_vouch(void **)
{
    Cluster c;
    c.hibernate = true;
    cluster_start(c);
    assert_true(run_until(c, [&] { return leader_of(c) >= 0; }, 10000));
    assert_true(run_until(c, [&] {
        for (Member &m : c.members)
            if (!m.group->hibernating())
                return false;
        return true;
    }, 15000));
    int L = leader_of(c), F = (L + 1) % 3, G = (L + 2) % 3;
    uint64_t now = mono_ms();
    uint64_t pf = promise_of(c, F, L, true), pg = promise_of(c, G, L, true);
    /* a digest every 500 ms vouches anew */
    assert_true(pf > 300 && pf < 1000);
    assert_true(pg > 300 && pg < 1000);
    /* without the vouch, only what is left since its last heartbeat */
    assert_true(c.members[F].group->vote_promise_ms((uint32_t)L + 1, c.members[F].group->term(), 0,
                                                    mono_ms()) < pf);
    uint64_t elected = elected_after_cut(c, L);
    printf("    sleeping promises %llu / %llu ms; another leader after %llu ms\n", (unsigned long long)pf,
           (unsigned long long)pg, (unsigned long long)(elected - now));
    assert_true(elected >= now + std::max(pf, pg));
    cluster_stop(c);
}

namespace {

std::string vote_request(uint64_t term, uint32_t candidate, uint64_t last_index, bool disrupt)
{
    struct raft_message msg;
    memset(&msg, 0, sizeof msg);
    msg.type = RAFT_IO_REQUEST_VOTE;
    msg.request_vote.term = term;
    msg.request_vote.candidate_id = candidate;
    msg.request_vote.last_log_index = last_index;
    msg.request_vote.last_log_term = term - 1;
    msg.request_vote.disrupt_leader = disrupt;
    msg.request_vote.pre_vote = false;
    std::string out;
    encode_raft_message(msg, out);
    return out;
}

} // namespace

/* A replica that restarts forgets the leader it may have promised: for an
 * election timeout after its start it lets no vote request reach c-raft,
 * but a transfer's (disrupt_leader) — whose leader gave its lease up. */
static void a_restarted_replica_withholds_its_vote(void **)
{
    Cluster c;
    cluster_start(c);
    assert_true(run_until(c, [&] { return leader_of(c) >= 0; }, 10000));
    int L = leader_of(c), F = (L + 1) % 3, G = (L + 2) % 3;
    member_stop(c, (uint32_t)F);
    member_start(c, (uint32_t)F);
    RaftGroup &f = *c.members[F].group;
    uint64_t term = f.term();
    std::string plain = vote_request(term + 1, (uint32_t)G + 1, 1000, false);
    f.deliver((uint32_t)G + 1, address_of((uint32_t)G + 1), plain.data(), plain.size());
    assert_int_equal(f.votes_withheld(), 1);
    assert_int_equal(f.term(), term); /* c-raft never saw it */
    std::string transfer = vote_request(term + 1, (uint32_t)G + 1, 1000, true);
    f.deliver((uint32_t)G + 1, address_of((uint32_t)G + 1), transfer.data(), transfer.size());
    assert_int_equal(f.votes_withheld(), 1);
    assert_int_equal(f.term(), term + 1); /* c-raft took it (and granted or not) */
    /* an election timeout after its start, votes reach c-raft again */
    usleep(1000 * 1000);
    std::string later = vote_request(term + 2, (uint32_t)G + 1, 1000, false);
    f.deliver((uint32_t)G + 1, address_of((uint32_t)G + 1), later.data(), later.size());
    assert_int_equal(f.votes_withheld(), 1);
    cluster_stop(c);
}

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(promises_hold_until_another_leader),
        cmocka_unit_test(sleeping_followers_promise_from_the_last_vouch),
        cmocka_unit_test(a_restarted_replica_withholds_its_vote),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
