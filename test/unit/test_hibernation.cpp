/*
 * test_hibernation.cpp — idle Raft groups stop their heartbeats
 * (replication/hibernation.*), and every way they wake.
 *
 * First the pieces: the digest wire format and the two decisions, one
 * condition at a time.  Then three real RaftGroups on raft_uv logs, ticked
 * the way the worker ticks them (raft_group_cluster.h): an idle group goes
 * quiet; a proposal wakes it; a leader cut off from both followers is
 * replaced although nobody proposes anything; a follower that restarts
 * learns its leader from a leader that was asleep; ticks with nothing new
 * to decide walk no group, yet miss no change.
 */
#include <string>
#include <vector>

#include "raft_group_cluster.h"

using namespace atomix;
using namespace atomix_test;

namespace {

/* ---- the digest wire format ---- */

void test_digest_round_trip(void **)
{
    std::vector<GroupDigest> in(3);
    for (uint32_t i = 0; i < 3; i++) {
        in[i].partition = i * 100;
        in[i].term = 7 + i;
        in[i].commit = 1000 + i;
        in[i].last = 1001 + i;
        in[i].leader = i + 1;
        in[i].flags = (uint8_t)i;
    }
    std::string wire = encode_digests(in);
    std::vector<GroupDigest> out;
    assert_true(decode_digests(wire.data(), wire.size(), &out));
    assert_int_equal(out.size(), 3);
    for (size_t i = 0; i < 3; i++)
        assert_true(out[i] == in[i]);

    /* an empty digest is a digest (the sender shares no running partition) */
    wire = encode_digests({});
    assert_true(decode_digests(wire.data(), wire.size(), &out));
    assert_int_equal(out.size(), 0);
}

void test_digest_malformed(void **)
{
    std::vector<GroupDigest> in(2);
    std::string wire = encode_digests(in);
    std::vector<GroupDigest> out(5);
    assert_false(decode_digests(wire.data(), 3, &out));
    assert_false(decode_digests(wire.data(), wire.size() - 1, &out));
    std::string longer = wire + "x";
    assert_false(decode_digests(longer.data(), longer.size(), &out));
    /* a count that promises more than the payload holds */
    std::string huge = wire;
    huge[3] = (char)0x7f;
    assert_false(decode_digests(huge.data(), huge.size(), &out));
    assert_int_equal(out.size(), 5); /* untouched */
}

/* ---- the decisions ---- */

GroupView leader_view()
{
    GroupView v;
    v.running = v.leading = true;
    v.term = 4;
    v.commit = v.last = v.applied = 50;
    v.leader = 1;
    v.members = {{2, 50}, {3, 50}};
    return v;
}

PeerReport follower_report(uint32_t from, uint64_t heard_ms)
{
    PeerReport r;
    r.known = true;
    r.heard_ms = heard_ms;
    r.digest.term = 4;
    r.digest.commit = r.digest.last = 50;
    r.digest.leader = 1;
    (void)from;
    return r;
}

void test_leader_decision(void **)
{
    const uint64_t now = 10000, fresh = 1000;
    GroupView v = leader_view();
    std::vector<PeerReport> reports = {follower_report(2, 9900), follower_report(3, 9500)};
    assert_true(leader_may_hibernate(1, v, reports, now, fresh));

    auto refuses = [&](GroupView view, std::vector<PeerReport> r) {
        assert_false(leader_may_hibernate(1, view, r, now, fresh));
    };
    GroupView w = v;
    w.members[1].second = 49; /* a member lacks the last entry */
    refuses(w, reports);
    w = v;
    w.commit = 49; /* our own last entry is not committed */
    refuses(w, reports);
    w = v;
    w.applied = 49;
    refuses(w, reports);
    w = v;
    w.busy = true; /* a log write or a transfer under way */
    refuses(w, reports);
    w = v;
    w.leading = false;
    refuses(w, reports);

    std::vector<PeerReport> r = reports;
    r[1].heard_ms = now - fresh; /* stale: a member went silent */
    refuses(v, r);
    r = reports;
    r[0].known = false; /* the member's node does not run the partition */
    refuses(v, r);
    r = reports;
    r[0].digest.term = 5; /* the member moved on to a later term */
    refuses(v, r);
    r = reports;
    r[1].digest.leader = 2; /* it follows somebody else */
    refuses(v, r);
    r = reports;
    r[0].digest.commit = 49; /* it does not know the last entry is committed */
    refuses(v, r);
    r = reports;
    r[0].digest.last = 49;
    refuses(v, r);
    r = reports;
    r.pop_back(); /* a report missing */
    refuses(v, r);
}

void test_follower_decision(void **)
{
    const uint64_t now = 10000, fresh = 1000;
    GroupView v;
    v.running = v.following = true;
    v.term = 4;
    v.commit = v.last = v.applied = 50;
    v.leader = 1;
    PeerReport r = follower_report(1, 9800);
    r.digest.flags = kDigestLeading | kDigestHibernating;
    assert_true(follower_may_hibernate(v, r, now, fresh));

    auto refuses = [&](GroupView view, PeerReport rep) {
        assert_false(follower_may_hibernate(view, rep, now, fresh));
    };
    PeerReport q = r;
    q.digest.flags = kDigestLeading; /* the leader is awake */
    refuses(v, q);
    q = r;
    q.heard_ms = now - fresh; /* the leader's node went silent */
    refuses(v, q);
    q = r;
    q.known = false;
    refuses(v, q);
    q = r;
    q.digest.term = 5;
    refuses(v, q);
    q = r;
    q.digest.last = 51; /* the leader has an entry we lack */
    refuses(v, q);
    q = r;
    q.digest.commit = 51;
    refuses(v, q);
    GroupView w = v;
    w.commit = 49; /* we do not know our last entry is committed */
    refuses(w, r);
    w = v;
    w.following = false; /* no leader known */
    refuses(w, r);
    w = v;
    w.busy = true;
    refuses(w, r);
}

/* ---- three real groups ---- */

bool all_asleep(Cluster &c)
{
    for (Member &m : c.members)
        if (!running(m) || !m.group->hibernating())
            return false;
    return true;
}

uint64_t messages_sent(Cluster &c)
{
    uint64_t n = 0;
    for (Member &m : c.members)
        if (m.group)
            n += m.group->messages_sent();
    return n;
}

/* Starts a hibernating cluster, elects a leader and commits one entry. */
int start_with_one_entry(Cluster &c)
{
    c.hibernate = true;
    cluster_start(c);
    assert_true(run_until(c, [&] { return leader_of(c) >= 0; }, 10000));
    int lead = leader_of(c);
    std::vector<int> outcomes;
    assert_int_equal(c.members[lead].group->propose("first", proposal_done, &outcomes), 0);
    assert_true(run_until(c, [&] { return outcomes.size() == 1; }, 5000));
    assert_int_equal(outcomes[0], 0);
    return lead;
}

/* An idle group sleeps on every member and sends nothing; a proposal wakes
 * it, commits, and it sleeps again. */
void test_idle_group_sleeps_and_a_proposal_wakes_it(void **)
{
    Cluster c;
    int lead = start_with_one_entry(c);
    assert_true(run_until(c, [&] { return all_asleep(c); }, 5000));
    uint64_t sent = messages_sent(c);
    run_until(c, [] { return false; }, 2000); /* twenty heartbeat intervals */
    assert_int_equal(messages_sent(c), sent);
    assert_true(all_asleep(c));
    assert_int_equal(leader_of(c), lead);

    RaftGroup &leader = *c.members[lead].group;
    uint64_t applied = c.members[(lead + 1) % 3].applied;
    std::vector<int> outcomes;
    assert_int_equal(leader.propose("wake", proposal_done, &outcomes), 0);
    assert_false(leader.hibernating());
    assert_true(run_until(c, [&] { return outcomes.size() == 1; }, 1000));
    assert_int_equal(outcomes[0], 0);
    /* the followers woke with the append and applied it too */
    assert_true(run_until(c, [&] { return c.members[(lead + 1) % 3].applied > applied; }, 1000));
    assert_true(run_until(c, [&] { return all_asleep(c); }, 5000));
    assert_int_equal(leader_of(c), lead);
    assert_true(leader.hibernations() >= 2);
    cluster_stop(c);
}

/* A sleeping leader cut off from both followers (a frozen node, a cut
 * network): its digests stop, the followers wake, elect a leader among
 * themselves and commit, although nobody proposed anything to wake them. */
void test_followers_of_a_silent_leader_elect_another(void **)
{
    Cluster c;
    int lead = start_with_one_entry(c);
    assert_true(run_until(c, [&] { return all_asleep(c); }, 5000));
    uint64_t term = c.members[lead].group->term();

    c.members[lead].cut = true;
    auto started = std::chrono::steady_clock::now();
    assert_true(run_until(c, [&] { return leader_of(c, lead) >= 0; }, 6000));
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
    /* silence for an election timeout, then c-raft's randomized one counted
     * from when the leader last vouched: no slower than without sleep */
    assert_true(took.count() < 4500);
    int next = leader_of(c, lead);
    assert_true(c.members[next].group->term() > term);
    std::vector<int> outcomes;
    assert_int_equal(c.members[next].group->propose("after", proposal_done, &outcomes), 0);
    assert_true(run_until(c, [&] { return outcomes.size() == 1; }, 3000));
    assert_int_equal(outcomes[0], 0);

    /* the old leader comes back: it learns the new term and follows */
    c.members[lead].cut = false;
    assert_true(run_until(c, [&] {
        return !c.members[lead].group->is_leader() && c.members[lead].group->term() >= c.members[next].group->term();
    }, 5000));
    assert_true(run_until(c, [&] { return all_asleep(c); }, 8000));
    cluster_stop(c);
}

/* A follower restarts while the others sleep: it knows no leader and times
 * out; its vote request wakes the leader, whose heartbeats tell it, and
 * nobody is deposed. */
void test_a_restarted_follower_learns_a_sleeping_leader(void **)
{
    Cluster c;
    int lead = start_with_one_entry(c);
    assert_true(run_until(c, [&] { return all_asleep(c); }, 5000));
    uint64_t term = c.members[lead].group->term();
    uint32_t f = (uint32_t)(lead + 1) % 3;

    member_stop(c, f);
    run_until(c, [] { return false; }, 300);
    member_start(c, f);
    assert_true(run_until(c, [&] { return c.members[f].group->leader_id() == (uint64_t)lead + 1; }, 6000));
    assert_int_equal(leader_of(c), lead);
    /* pre-vote kept the sleeping leader in office */
    assert_int_equal(c.members[lead].group->term(), term);
    assert_true(run_until(c, [&] { return all_asleep(c); }, 8000));
    cluster_stop(c);
}

/* A sleeping follower whose leader's node keeps talking but stops leading
 * the partition (its group stopped there) wakes and takes part in electing
 * a new leader. */
void test_a_leader_that_stops_leading_wakes_its_followers(void **)
{
    Cluster c;
    int lead = start_with_one_entry(c);
    assert_true(run_until(c, [&] { return all_asleep(c); }, 5000));
    member_stop(c, (uint32_t)lead, true);
    assert_true(run_until(c, [&] { return leader_of(c, lead) >= 0; }, 6000));
    member_start(c, (uint32_t)lead);
    assert_true(run_until(c, [&] { return all_asleep(c); }, 8000));
    cluster_stop(c);
}

/* A digest from the leader's node with one record: the partition at the
 * leader's term, commit and last index, with these flags. */
std::string leader_digest(Cluster &c, int lead, uint32_t partition, uint8_t flags)
{
    GroupDigest d;
    d.partition = partition;
    d.term = c.members[lead].group->term();
    d.commit = d.last = c.members[lead].group->last_index();
    d.leader = (uint32_t)lead + 1;
    d.flags = flags;
    return encode_digests({d});
}

/* Digests may be read later than they came and, across a peer's two links,
 * out of order (node_transport.h): a digest heard earlier than the peer's
 * last must never move a sleeping follower's vouching back, since its
 * read-lease promise counts from it (RaftGroup::vote_promise_ms). */
void test_an_earlier_digest_never_moves_vouching_back(void **)
{
    Cluster c;
    int lead = start_with_one_entry(c);
    assert_true(run_until(c, [&] { return all_asleep(c); }, 5000));
    uint32_t f = (uint32_t)(lead + 1) % 3;
    Hibernation &fh = *c.members[f].hibernation;
    /* no more digests from the leader's node: only the one below */
    c.members[lead].cut = true;
    uint64_t vouched = fh.vouched_ms(0);
    assert_true(vouched > 300);
    /* what the sleeping leader says of the partition, heard 300 ms before
     * its last digest */
    std::string asleep = leader_digest(c, lead, c.members[f].group->partition(),
                                       kDigestLeading | kDigestHibernating);
    fh.on_digest((uint32_t)lead + 1, asleep.data(), asleep.size(), vouched - 300);
    run_until(c, [] { return false; }, 250); /* two ticks */
    assert_true(c.members[f].group->hibernating());
    assert_true(fh.vouched_ms(0) >= vouched);
    c.members[lead].cut = false;
    cluster_stop(c);
}

/* Once every group sleeps, ticks whose inputs did not change decide
 * nothing and walk no group (sleeping ticks), yet a follower's leader keeps
 * vouching for it, and every change still reaches a decision: a digest
 * with other content, a peer falling silent, a group waking. */
void test_sleeping_ticks_still_notice_every_change(void **)
{
    Cluster c;
    int lead = start_with_one_entry(c);
    assert_true(run_until(c, [&] { return all_asleep(c); }, 5000));
    uint32_t f = (uint32_t)(lead + 1) % 3;
    Hibernation &fh = *c.members[f].hibernation;
    uint64_t sleeping = fh.sleeping_ticks();
    uint64_t vouched = fh.vouched_ms(0); /* the cluster ticks one group, at index 0 */
    uint64_t sent = messages_sent(c);
    run_until(c, [] { return false; }, 1500);
    /* ticks every 100 ms: nearly all of them slept through */
    assert_true(fh.sleeping_ticks() >= sleeping + 10);
    assert_true(c.members[lead].hibernation->sleeping_ticks() >= 10);
    assert_int_equal(messages_sent(c), sent);
    assert_true(all_asleep(c));
    /* the leader's digests (every 500 ms) went on vouching */
    assert_true(vouched > 0);
    assert_true(fh.vouched_ms(0) >= vouched + 1000);

    /* a digest with other content: the leader's node says it is awake */
    std::string awake = leader_digest(c, lead, 1, kDigestLeading);
    fh.on_digest((uint32_t)lead + 1, awake.data(), awake.size(), uv_now(&c.loop));
    assert_true(run_until(c, [&] { return !c.members[f].group->hibernating(); }, 300));
    assert_false(fh.ticked_asleep());
    assert_true(run_until(c, [&] { return all_asleep(c); }, 5000));

    /* the leader's node falls silent: its followers wake, elect another */
    run_until(c, [] { return false; }, 600);
    assert_true(fh.ticked_asleep());
    c.members[lead].cut = true;
    assert_true(run_until(c, [&] { return leader_of(c, lead) >= 0; }, 6000));
    c.members[lead].cut = false;
    assert_true(run_until(c, [&] { return all_asleep(c); }, 8000));
    cluster_stop(c);
}

} // namespace

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_digest_round_trip),
        cmocka_unit_test(test_digest_malformed),
        cmocka_unit_test(test_leader_decision),
        cmocka_unit_test(test_follower_decision),
        cmocka_unit_test(test_idle_group_sleeps_and_a_proposal_wakes_it),
        cmocka_unit_test(test_followers_of_a_silent_leader_elect_another),
        cmocka_unit_test(test_a_restarted_follower_learns_a_sleeping_leader),
        cmocka_unit_test(test_a_leader_that_stops_leading_wakes_its_followers),
        cmocka_unit_test(test_sleeping_ticks_still_notice_every_change),
        cmocka_unit_test(test_an_earlier_digest_never_moves_vouching_back),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
