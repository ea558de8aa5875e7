/*
 * test_read_index.cpp — the read index (replication/read_index.h) on three
 * scripted nodes: each node's Raft view (leader, term, commit index, links)
 * is set by the test, and frames travel only when the test delivers them,
 * so lost, late and refused confirmations are exact.
 *
 * The real path (c-raft, the node transport, a deposed leader frozen and
 * cut off) is TAP 115; this covers every resend and timeout path one by one.
 */
#include "unit_helpers.h"

#include <algorithm>
#include <map>
#include <memory>

#include "read_index.h"

using namespace atomix;

namespace {

struct Frame {
    uint32_t from, to;
    FrameType type;
    std::string body;
};

struct Net;

/* One node's view, as the test scripts it. */
class FakeNode : public ReadIndexHost {
  public:
    FakeNode(Net &net, uint32_t id) : net_(net), id_(id), reads(*this, 2) {}
    uint32_t self() const override { return id_; }
    uint32_t leader_of(int32_t) override { return leader; }
    bool leads(int32_t) override { return leader == id_ && !halted; }
    bool send(uint32_t peer, FrameType type, const std::string &, const std::string &body) override;
    bool connected(uint32_t peer) override { return std::find(cut.begin(), cut.end(), peer) == cut.end(); }
    uint64_t link_generation(uint32_t peer) override { return links[peer]; }
    int64_t monotonic_us() override { return now; }
    int64_t unavailable_timeout_us() override { return 3000000; }
    void fail_request(uint64_t id, RouteFailure why, const std::string &) override
    {
        assert_true(why == RouteFailure::NotApplied);
        failed.push_back(id);
    }
    bool leader_read_state(int32_t, uint64_t *t, uint64_t *c) override
    {
        if (!leads(0) || !term_entry_committed)
            return false;
        *t = term;
        *c = commit;
        return true;
    }
    uint64_t current_term(int32_t) override { return halted ? 0 : term; }
    std::vector<uint32_t> voters(int32_t) override { return voter_ids; }
    void read_ready(uint64_t id) override { ready.push_back(id); }
    uint32_t vote_promise_ms(int32_t, uint32_t l, uint64_t t) override
    {
        return l == leader && t == term && !halted ? promise_ms : 0;
    }
    bool lease_allowed(int32_t, uint64_t t) override { return leases_on && t != transfer_term; }
    int64_t lease_clock_us(int32_t) override { return now + lease_clock_skew; }

    Net &net_;
    uint32_t id_;
    uint32_t leader = 1;
    uint64_t term = 5;
    uint64_t commit = 10;
    bool term_entry_committed = true;
    bool halted = false;
    std::vector<uint32_t> cut;
    std::map<uint32_t, uint64_t> links;
    std::vector<uint32_t> voter_ids{1, 2, 3};
    int64_t now = 1000000;
    /* read leases: what this node promises as a follower (0: nothing, as a
     * node of an atomix without leases), whether it may lease as a leader */
    uint32_t promise_ms = 0;
    bool leases_on = true;
    uint64_t transfer_term = 0;
    int64_t lease_clock_skew = 7000; /* the lease clock is another clock */
    std::vector<uint64_t> ready, failed;
    ReadIndex reads;
};

struct Net {
    std::vector<Frame> frames;
    std::vector<std::unique_ptr<FakeNode>> nodes;
    Net(int n = 3)
    {
        for (int i = 1; i <= n; i++)
            nodes.push_back(std::make_unique<FakeNode>(*this, (uint32_t)i));
    }
    FakeNode &operator[](uint32_t id) { return *nodes[id - 1]; }
    /* delivers the frames matching `type` (all kinds when Raft is passed)
     * that are in flight now; returns how many */
    size_t deliver(FrameType type = FrameType::Raft, uint32_t to = 0)
    {
        std::vector<Frame> now, keep;
        for (Frame &f : frames)
            ((type == FrameType::Raft || f.type == type) && (to == 0 || f.to == to) ? now : keep)
                .push_back(std::move(f));
        frames.swap(keep);
        for (Frame &f : now) {
            (*this)[f.to].reads.on_frame(f.from, f.type, f.body.data(), f.body.size());
            (*this)[f.to].reads.flush();
        }
        return now.size();
    }
    size_t count(FrameType type, uint32_t to = 0) const
    {
        return (size_t)std::count_if(frames.begin(), frames.end(),
                                     [&](const Frame &f) { return f.type == type && (to == 0 || f.to == to); });
    }
    void drop() { frames.clear(); }
    void pump_all()
    {
        for (auto &n : nodes)
            n->reads.pump(n->now);
    }
    void tick(int64_t us)
    {
        for (auto &n : nodes)
            n->now += us;
    }
};

bool FakeNode::send(uint32_t peer, FrameType type, const std::string &, const std::string &body)
{
    if (!connected(peer))
        return false;
    net_.frames.push_back(Frame{id_, peer, type, body});
    return true;
}

} // namespace

/* The leader serves a read only after a quorum said it still leads, and
 * only once its own replica applied the read index. */
static void leader_confirms_with_a_quorum(void **)
{
    Net net;
    net[1].reads.submit(0, 101, net[1].now + 3000000);
    net.pump_all();
    assert_int_equal(net.count(FrameType::ReadConfirm), 2); /* to nodes 2 and 3 */
    net[1].reads.applied(0, 10);
    assert_true(net[1].ready.empty()); /* not confirmed yet */
    net.deliver(FrameType::ReadConfirm, 2);
    net.deliver(FrameType::ReadConfirmAck);
    net[1].reads.applied(0, 9);
    assert_true(net[1].ready.empty()); /* confirmed, index 10 not applied */
    net[1].reads.applied(0, 10);
    assert_int_equal(net[1].ready.size(), 1);
    assert_int_equal(net[1].ready[0], 101);
    assert_int_equal(net[1].reads.rounds(0), 1);
    assert_int_equal(net[1].reads.reads_confirmed(0), 1);
    /* node 3's late yes changes nothing */
    net.deliver();
    assert_int_equal(net[1].ready.size(), 1);
}

/* A leader whose voters moved to a newer term (they elected someone else)
 * gets only "no": it never serves the read; the read fails at its deadline
 * with 57P03 ("not applied": nothing was read). */
static void deposed_leader_never_serves(void **)
{
    Net net;
    net[2].term = net[3].term = 6;
    net[2].leader = net[3].leader = 2;
    net[1].reads.submit(0, 7, net[1].now + 3000000);
    for (int i = 0; i < 40; i++) { /* 4 s of resends */
        net.pump_all();
        net.deliver();
        net[1].reads.applied(0, 1000);
        net.tick(100000);
    }
    assert_true(net[1].ready.empty());
    assert_int_equal(net[1].failed.size(), 1);
    assert_int_equal(net[1].failed[0], 7);
    assert_int_equal(net[1].reads.waiting(0), 0);
}

/* Before an entry of its term is committed, a new leader's commit index may
 * miss what older leaders committed: no round starts. */
static void waits_for_an_entry_of_its_term(void **)
{
    Net net;
    net[1].term_entry_committed = false;
    net[1].reads.submit(0, 1, net[1].now + 3000000);
    net.pump_all();
    assert_int_equal(net.count(FrameType::ReadConfirm), 0);
    net[1].term_entry_committed = true;
    net[1].commit = 12;
    net.pump_all();
    net.deliver(FrameType::ReadConfirm);
    net.deliver(FrameType::ReadConfirmAck);
    net[1].reads.applied(0, 11);
    assert_true(net[1].ready.empty());
    net[1].reads.applied(0, 12);
    assert_int_equal(net[1].ready.size(), 1);
}

/* A follower asks the leader; the leader's answer carries the index the
 * follower's replica must reach. */
static void follower_asks_the_leader(void **)
{
    Net net;
    net[2].reads.submit(0, 55, net[2].now + 3000000);
    net.pump_all();
    assert_int_equal(net.count(FrameType::ReadIndexAsk, 1), 1);
    net.deliver(FrameType::ReadIndexAsk);
    net.pump_all(); /* the leader's round */
    net.deliver(FrameType::ReadConfirm);
    net.deliver(FrameType::ReadConfirmAck);
    assert_int_equal(net.count(FrameType::ReadIndexAnswer, 2), 1);
    net.deliver(FrameType::ReadIndexAnswer);
    net[2].reads.applied(0, 9);
    assert_true(net[2].ready.empty());
    net[2].reads.applied(0, 10);
    assert_int_equal(net[2].ready.size(), 1);
    assert_int_equal(net[2].ready[0], 55);
}

/* An ask lost with its connection is sent again on the new link, never on a
 * timer over the same one; a "not leader" answer waits for a new leader or
 * term before asking again. */
static void asks_again_only_when_it_can_help(void **)
{
    Net net;
    net[2].reads.submit(0, 9, net[2].now + 3000000);
    net.pump_all();
    net.drop(); /* lost with the connection */
    for (int i = 0; i < 5; i++) {
        net.tick(200000);
        net.pump_all();
    }
    assert_int_equal(net.count(FrameType::ReadIndexAsk), 0); /* same link: no resend */
    net[2].links[1]++;                                       /* reconnected */
    net.pump_all();
    assert_int_equal(net.count(FrameType::ReadIndexAsk, 1), 1);
    /* node 1 lost the leadership meanwhile: "not leader" */
    net[1].leader = 0;
    net.deliver(FrameType::ReadIndexAsk);
    assert_int_equal(net.count(FrameType::ReadIndexAnswer, 2), 1);
    net.deliver(FrameType::ReadIndexAnswer);
    for (int i = 0; i < 5; i++)
        net.pump_all();
    assert_int_equal(net.count(FrameType::ReadIndexAsk), 0); /* no spinning on node 1 */
    /* node 3 is elected in term 6 */
    for (auto &n : net.nodes) {
        n->leader = 3;
        n->term = 6;
    }
    net[3].commit = 14;
    net.pump_all();
    assert_int_equal(net.count(FrameType::ReadIndexAsk, 3), 1);
    net.deliver(FrameType::ReadIndexAsk);
    net.pump_all();
    net.deliver(FrameType::ReadConfirm);
    net.deliver(FrameType::ReadConfirmAck);
    net.deliver(FrameType::ReadIndexAnswer);
    net[2].reads.applied(0, 14);
    assert_int_equal(net[2].ready.size(), 1);
}

/* Lost confirms are sent again after kReadConfirmResendUs, only to the
 * voters that did not say yes. */
static void lost_confirms_are_sent_again(void **)
{
    Net net;
    net[1].reads.submit(0, 3, net[1].now + 3000000);
    net.pump_all();
    net.drop();
    net.tick(kReadConfirmResendUs - 1);
    net.pump_all();
    assert_int_equal(net.count(FrameType::ReadConfirm), 0);
    net.tick(1);
    net.pump_all();
    assert_int_equal(net.count(FrameType::ReadConfirm), 2);
    net.deliver(FrameType::ReadConfirm, 3);
    net.drop(); /* node 2's confirm lost again; node 3's yes is lost too */
    net.tick(kReadConfirmResendUs);
    net.pump_all();
    assert_int_equal(net.count(FrameType::ReadConfirm), 2);
    net.deliver(FrameType::ReadConfirm, 2);
    net.deliver(FrameType::ReadConfirmAck);
    net[1].reads.applied(0, 10);
    assert_int_equal(net[1].ready.size(), 1);
}

/* Yeses of an older term confirm nothing in a newer one: a leader re-elected
 * in term 7 runs its waiting reads through a new round. */
static void a_new_term_needs_new_yeses(void **)
{
    Net net;
    net[1].reads.submit(0, 1, net[1].now + 3000000);
    net.pump_all();
    for (auto &n : net.nodes)
        n->term = 7;
    net.deliver(FrameType::ReadConfirm); /* "no": their term is 7, the round's 5 */
    net.deliver(FrameType::ReadConfirmAck);
    net[1].reads.applied(0, 10);
    assert_true(net[1].ready.empty());
    net[1].commit = 11;
    net.pump_all(); /* a round in term 7 */
    net.deliver(FrameType::ReadConfirm);
    net.deliver(FrameType::ReadConfirmAck);
    net[1].reads.applied(0, 10);
    assert_true(net[1].ready.empty()); /* the new round's index is 11 */
    net[1].reads.applied(0, 11);
    assert_int_equal(net[1].ready.size(), 1);
}

/* A yes to round n confirms every round before it. */
static void a_later_yes_confirms_earlier_rounds(void **)
{
    Net net;
    net[1].reads.submit(0, 1, net[1].now + 3000000);
    net.pump_all();
    net.drop();
    net[1].reads.submit(0, 2, net[1].now + 3000000);
    net[1].commit = 11;
    net.pump_all(); /* round 2 */
    net.deliver(FrameType::ReadConfirm, 2);
    net.deliver(FrameType::ReadConfirmAck);
    net[1].reads.applied(0, 11);
    std::vector<uint64_t> ready = net[1].ready;
    std::sort(ready.begin(), ready.end());
    assert_int_equal(ready.size(), 2);
    assert_int_equal(ready[0], 1);
    assert_int_equal(ready[1], 2);
}

/* One voter is its own quorum; a halted replica fails its reads at once and
 * says no to every confirm. */
static void single_voter_and_halted(void **)
{
    Net net(1);
    net[1].voter_ids = {1};
    net[1].reads.submit(0, 4, net[1].now + 3000000);
    net.pump_all();
    assert_int_equal(net.frames.size(), 0);
    net[1].reads.applied(0, 10);
    assert_int_equal(net[1].ready.size(), 1);

    Net three;
    three[2].halted = true;
    three[2].reads.submit(0, 8, three[2].now + 3000000);
    three[2].reads.fail_all(0, "halted");
    assert_int_equal(three[2].failed.size(), 1);
    three[1].reads.submit(0, 9, three[1].now + 3000000);
    three.pump_all();
    three.deliver(FrameType::ReadConfirm, 2);
    three.deliver(FrameType::ReadConfirmAck);
    three[1].reads.applied(0, 10);
    assert_true(three[1].ready.empty()); /* node 2 said no */
}

/* A leader that loses the leadership sends its followers' reads to ask
 * again, and puts its own back to be asked of the new leader. */
static void losing_the_leadership_hands_reads_back(void **)
{
    Net net;
    net[2].reads.submit(0, 20, net[2].now + 3000000);
    net[1].reads.submit(0, 21, net[1].now + 3000000);
    net.pump_all();
    net.deliver(FrameType::ReadIndexAsk);
    net.drop(); /* round 1's confirms lost */
    for (auto &n : net.nodes) {
        n->leader = 3;
        n->term = 6;
    }
    net.pump_all();
    /* node 1 told node 2 "not leader", and asked node 3 itself */
    assert_int_equal(net.count(FrameType::ReadIndexAnswer, 2), 1);
    assert_int_equal(net.count(FrameType::ReadIndexAsk, 3), 2); /* 21 from node 1, 20 from node 2 */
    net.deliver(FrameType::ReadIndexAnswer);
    net.deliver(FrameType::ReadIndexAsk);
    net.pump_all();
    net.deliver(FrameType::ReadConfirm);
    net.deliver(FrameType::ReadConfirmAck);
    net.deliver(FrameType::ReadIndexAnswer);
    net[1].reads.applied(0, 10);
    net[2].reads.applied(0, 10);
    assert_int_equal(net[1].ready.size(), 1);
    assert_int_equal(net[2].ready.size(), 1);
}

/* ---- read leases ---- */

/* One confirmed round whose yeses came with promises: node 1 then holds a
 * lease (read 900 is served by the round itself). */
static void take_a_lease(Net &net, uint32_t promise_ms = 1000)
{
    for (auto &n : net.nodes)
        if (n->id_ != 1)
            n->promise_ms = promise_ms;
    net[1].reads.submit(0, 900, net[1].now + 3000000);
    net.pump_all();
    net.deliver(FrameType::ReadConfirm);
    net.deliver(); /* the acks and the promises */
    net[1].reads.applied(0, net[1].commit);
    assert_true(std::find(net[1].ready.begin(), net[1].ready.end(), 900) != net[1].ready.end());
    net[1].ready.clear();
}

/* While the lease holds, the leader's own reads and its followers' asks are
 * answered at its commit index with no round at all. */
static void lease_serves_reads_without_a_round(void **)
{
    Net net;
    take_a_lease(net);
    uint64_t rounds = net[1].reads.rounds(0);
    net[1].commit = 11;
    net[1].reads.submit(0, 101, net[1].now + 3000000);
    net[2].reads.submit(0, 201, net[2].now + 3000000);
    net.pump_all();                              /* node 2 asks */
    assert_int_equal(net.count(FrameType::ReadConfirm), 0);
    net.deliver(FrameType::ReadIndexAsk);
    net.pump_all();                              /* node 1 answers from its lease */
    assert_int_equal(net.count(FrameType::ReadConfirm), 0);
    net[1].reads.applied(0, 10);
    assert_true(net[1].ready.empty());           /* index 11, not yet applied */
    net[1].reads.applied(0, 11);
    assert_int_equal(net[1].ready.size(), 1);
    net.deliver(FrameType::ReadIndexAnswer);
    net[2].reads.applied(0, 11);
    assert_int_equal(net[2].ready.size(), 1);
    assert_int_equal(net[1].reads.rounds(0), rounds);
    assert_int_equal(net[1].reads.reads_leased(0), 2);
}

/* A promise of 1000 ms is worth 898 ms from when the round first went out
 * (90%, less 2 ms) — not from when the yes came, nor from a resend. */
static void lease_counts_from_the_first_send(void **)
{
    Net net;
    net[2].promise_ms = net[3].promise_ms = 1000;
    int64_t start = net[1].lease_clock_us(0);
    net[1].reads.submit(0, 900, net[1].now + 3000000);
    net.pump_all();
    net.drop();                                  /* the first confirms are lost */
    net.tick(300000);
    net.pump_all();                              /* resent */
    net.deliver(FrameType::ReadConfirm);
    net.deliver();
    assert_true(net[1].reads.holds_lease(0, start + 897000));
    assert_false(net[1].reads.holds_lease(0, start + 898000));
    net[1].reads.applied(0, 10);
    net[1].ready.clear();
    /* at start + 897 ms a read is served from the lease... */
    net.tick(597000);
    net[1].reads.submit(0, 1, net[1].now + 3000000);
    net.pump_all();
    net[1].reads.applied(0, 10);
    assert_int_equal(net[1].ready.size(), 1);
    assert_int_equal(net[1].reads.reads_leased(0), 1);
    net.drop();                                  /* (the renewal it started) */
    /* ...at start + 898 ms it needs a round */
    net.tick(1000);
    net[1].reads.submit(0, 2, net[1].now + 3000000);
    net.pump_all();
    net[1].reads.applied(0, 10);
    assert_int_equal(net[1].ready.size(), 1);
    assert_int_equal(net[1].reads.reads_leased(0), 1);
}

/* A voter that promises nothing (an older atomix, or not following us)
 * confirms reads as before and grants no lease. */
static void no_promise_no_lease(void **)
{
    Net net;
    take_a_lease(net, 0);
    assert_false(net[1].reads.holds_lease(0, net[1].lease_clock_us(0)));
    net[1].reads.submit(0, 1, net[1].now + 3000000);
    net.pump_all();
    assert_int_equal(net.count(FrameType::ReadConfirm), 2);
    /* node 2 follows someone else: it says yes (same term) but promises nothing */
    Net other;
    other[2].promise_ms = other[3].promise_ms = 1000;
    other[2].leader = other[3].leader = 3;
    other[1].reads.submit(0, 1, other[1].now + 3000000);
    other.pump_all();
    other.deliver(FrameType::ReadConfirm);
    assert_int_equal(other.count(FrameType::VotePromise), 0);
    other.deliver();
    other[1].reads.applied(0, 10);
    assert_int_equal(other[1].ready.size(), 1);
    assert_false(other[1].reads.holds_lease(0, other[1].lease_clock_us(0)));
}

/* Of five voters, a leader needs two promises: with one, the three others
 * could still elect someone. */
static void five_voters_need_two_promises(void **)
{
    Net net(5);
    for (auto &n : net.nodes)
        n->voter_ids = {1, 2, 3, 4, 5};
    net[2].promise_ms = 1000;
    net[1].reads.submit(0, 1, net[1].now + 3000000);
    net.pump_all();
    net.deliver(FrameType::ReadConfirm);
    net.deliver();
    net[1].reads.applied(0, 10);
    assert_int_equal(net[1].ready.size(), 1); /* a quorum said yes */
    assert_false(net[1].reads.holds_lease(0, net[1].lease_clock_us(0)));
    net[4].promise_ms = 600;
    net[1].reads.submit(0, 2, net[1].now + 3000000);
    net.pump_all();
    net.deliver(FrameType::ReadConfirm);
    net.deliver();
    /* the lease ends with the second-longest promise */
    int64_t sent = net[1].lease_clock_us(0);
    assert_true(net[1].reads.holds_lease(0, sent + 600000 * 9 / 10 - 2001));
    assert_false(net[1].reads.holds_lease(0, sent + 600000 * 9 / 10 - 2000));
}

/* A transfer's TimeoutNow lets its target be elected past every promise: a
 * leader that asked for one holds no lease for the rest of that term; and a
 * new term starts without one. */
static void no_lease_after_a_transfer_or_in_a_new_term(void **)
{
    Net net;
    take_a_lease(net);
    net[1].transfer_term = net[1].term;
    net[1].reads.submit(0, 1, net[1].now + 3000000);
    net.pump_all();
    assert_int_equal(net.count(FrameType::ReadConfirm), 2);
    net.drop();
    net[1].transfer_term = 0;
    /* re-elected in term 6: the promises of term 5 are worth nothing */
    for (auto &n : net.nodes)
        n->term = 6;
    net[1].reads.submit(0, 2, net[1].now + 3000000);
    net.pump_all();
    assert_false(net[1].reads.holds_lease(0, net[1].lease_clock_us(0)));
    assert_int_equal(net.count(FrameType::ReadConfirm), 2);
    /* and leases switched off (atomix.read_lease): rounds only */
    Net off;
    off[1].leases_on = false;
    take_a_lease(off);
    off[1].reads.submit(0, 1, off[1].now + 3000000);
    off.pump_all();
    assert_int_equal(off.count(FrameType::ReadConfirm), 2);
    assert_int_equal(off[1].reads.reads_leased(0), 0);
}

/* A leader that stops leading forgets its lease at once. */
static void losing_the_leadership_ends_the_lease(void **)
{
    Net net;
    take_a_lease(net);
    net[1].leader = 2;
    net.pump_all();
    assert_false(net[1].reads.holds_lease(0, net[1].lease_clock_us(0)));
    net[1].leader = 1;
    net[1].reads.submit(0, 1, net[1].now + 3000000);
    net.pump_all();
    assert_int_equal(net.count(FrameType::ReadConfirm), 2);
}

/* Reads that keep coming keep the lease: once less than 300 ms is left, a
 * leased read also starts a round without readers, whose promises extend it. */
static void leased_reads_renew_the_lease(void **)
{
    Net net;
    take_a_lease(net);
    net.tick(500000); /* 398 ms left */
    net[1].reads.submit(0, 1, net[1].now + 3000000);
    net.pump_all();
    assert_int_equal(net.count(FrameType::ReadConfirm), 0);
    net.tick(100000); /* 298 ms left */
    net[1].reads.submit(0, 2, net[1].now + 3000000);
    net.pump_all();
    assert_int_equal(net.count(FrameType::ReadConfirm), 2); /* the renewal */
    net[1].reads.applied(0, 10);
    assert_int_equal(net[1].ready.size(), 2);  /* both served without waiting */
    int64_t renewed = net[1].lease_clock_us(0);
    net.deliver(FrameType::ReadConfirm);
    net.deliver();
    assert_true(net[1].reads.holds_lease(0, renewed + 897000));
    assert_int_equal(net[1].reads.reads_leased(0), 2);
}

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(leader_confirms_with_a_quorum),
        cmocka_unit_test(deposed_leader_never_serves),
        cmocka_unit_test(waits_for_an_entry_of_its_term),
        cmocka_unit_test(follower_asks_the_leader),
        cmocka_unit_test(asks_again_only_when_it_can_help),
        cmocka_unit_test(lost_confirms_are_sent_again),
        cmocka_unit_test(a_new_term_needs_new_yeses),
        cmocka_unit_test(a_later_yes_confirms_earlier_rounds),
        cmocka_unit_test(single_voter_and_halted),
        cmocka_unit_test(losing_the_leadership_hands_reads_back),
        cmocka_unit_test(lease_serves_reads_without_a_round),
        cmocka_unit_test(lease_counts_from_the_first_send),
        cmocka_unit_test(no_promise_no_lease),
        cmocka_unit_test(five_voters_need_two_promises),
        cmocka_unit_test(no_lease_after_a_transfer_or_in_a_new_term),
        cmocka_unit_test(losing_the_leadership_ends_the_lease),
        cmocka_unit_test(leased_reads_renew_the_lease),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
