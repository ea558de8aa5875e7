/*
 * read_index.cpp — see read_index.h.
 */
#include "read_index.h"

#include <algorithm>
#include <climits>
#include <functional>

#include "le_bytes.h"
#include "planted_bugs.h"

namespace atomix {

/* Record sizes of the four frames: each frame is a run of such records. */
constexpr size_t kConfirmRecord = 4 + 8 + 8;         /* partition, term, seq */
constexpr size_t kConfirmAckRecord = 4 + 8 + 8 + 1;  /* partition, term, seq, yes */
constexpr size_t kAskRecord = 4 + 8;                 /* partition, request id */
constexpr size_t kAnswerRecord = 4 + 8 + 1 + 8;      /* partition, request id, outcome, index */
constexpr size_t kPromiseRecord = 4 + 8 + 8 + 4;     /* partition, term, seq, ms */

/* Rounds whose first send time a leader keeps for promises still to come. */
constexpr size_t kSentKept = 64;

ReadIndex::ReadIndex(ReadIndexHost &host, size_t partitions) : host_(host), parts_(partitions) {}

void ReadIndex::submit(int32_t partition, uint64_t request_id, int64_t deadline_us)
{
    Read r;
    r.deadline_us = deadline_us;
    uint64_t term = 0, commit = 0;
    if (kPlantUnconfirmedRead && host_.leader_read_state(partition, &term, &commit))
        r.index = commit; /* planted: a leader trusts itself, no round */
    parts_[(size_t)partition].reads[request_id] = r;
}

void ReadIndex::pump(int64_t now_us)
{
    for (int32_t p = 0; p < (int32_t)parts_.size(); p++) {
        const Part &q = parts_[(size_t)p];
        /* nothing to expire, give up, ask or lead: skipped without asking
         * the host who leads (at 256 partitions that was most of pump) */
        if (q.reads.empty() && q.next.empty() && q.rounds.empty() && q.term == 0)
            continue;
        expire(p, now_us);
        if (!host_.leads(p))
            give_up_leading(p);
        ask_for_indexes(p, now_us);
        lead_rounds(p, now_us);
    }
    flush();
}

/* This node's reads that have no index yet: into our own next round when
 * we lead, else asked of the leader.  A read already asked elsewhere is
 * asked again only when that can help — the partition has another leader or
 * a new term, or the connection it went out on broke — never on a timer:
 * the leader answers every ask it gets, and a ReadIndexAsk is idempotent. */
void ReadIndex::ask_for_indexes(int32_t partition, int64_t)
{
    Part &q = parts_[(size_t)partition];
    if (q.reads.empty())
        return;
    uint32_t self = host_.self();
    uint32_t leader = host_.leader_of(partition);
    bool leads = host_.leads(partition);
    uint64_t term = host_.current_term(partition);
    for (auto &kv : q.reads) {
        Read &r = kv.second;
        if (r.index != 0 || r.asked == self)
            continue;
        if (r.asked != 0) {
            if (leader == r.asked && term == r.term && host_.link_generation(r.asked) == r.link)
                continue;
            r.asked = 0;
        }
        if (leads) {
            q.next.push_back(Waiter{self, kv.first});
            r.asked = self;
            r.term = term;
        } else if (leader != 0 && leader != self && host_.connected(leader)) {
            std::string &o = out(leader, FrameType::ReadIndexAsk);
            put_le32(o, (uint32_t)partition);
            put_le64(o, kv.first);
            r.asked = leader;
            r.link = host_.link_generation(leader);
            r.term = term;
        }
    }
}

/* Leading with an entry of our term committed: one new round for what
 * waits, and the newest round sent again to the voters that did not answer
 * it for a while. */
void ReadIndex::lead_rounds(int32_t partition, int64_t now_us)
{
    Part &q = parts_[(size_t)partition];
    if (q.next.empty() && q.rounds.empty())
        return;
    uint64_t term = 0, commit = 0;
    if (!host_.leader_read_state(partition, &term, &commit))
        return; /* not ready yet: what waits keeps waiting */
    if (q.term != term) {
        /* re-elected in a newer term: acks of the old term confirm nothing
         * now, so its rounds' readers join the next round */
        for (Round &r : q.rounds)
            q.next.insert(q.next.begin(), r.waiters.begin(), r.waiters.end());
        q.rounds.clear();
        q.acked.clear();
        forget_lease(q);
        q.term = term;
    }
    /* A lone voter needs no promise: nobody else can ever be elected (the
     * voters are fixed for the worker's life), so its lease never ends. */
    if (q.lease_until_us == 0 && sole_voter(partition)) {
        q.lease_until_us = INT64_MAX;
        new_leases_.push_back(partition);
    }
    /* a round nobody confirmed for this long only holds memory: its readers
     * have given up (each read has its own deadline) */
    while (!q.rounds.empty() && now_us - q.rounds.front().started_us > host_.unavailable_timeout_us())
        q.rounds.pop_front();
    if (serve_from_lease(partition, term, commit, now_us)) {
        /* served; a renewal round may have started */
    } else if (!q.next.empty()) {
        start_round(partition, commit, now_us);
    } else if (!q.rounds.empty() && now_us - q.rounds.back().probed_us >= kReadConfirmResendUs) {
        probe(partition, q.rounds.back(), now_us);
    }
    confirm_rounds(partition);
}

bool ReadIndex::sole_voter(int32_t partition)
{
    std::vector<uint32_t> voters = host_.voters(partition);
    return voters.size() == 1 && voters[0] == host_.self();
}

/* The waiting readers (none for a lease renewal) go into a new round. */
void ReadIndex::start_round(int32_t partition, uint64_t commit, int64_t now_us)
{
    Part &q = parts_[(size_t)partition];
    Round r;
    r.seq = ++q.seq;
    r.index = commit; /* taken before the confirm goes out */
    r.started_us = now_us;
    r.waiters.swap(q.next);
    q.rounds_started++;
    /* before any confirm of this round can leave: promises count from here */
    q.sent.emplace_back(r.seq, host_.lease_clock_us(partition));
    while (q.sent.size() > kSentKept)
        q.sent.pop_front();
    q.rounds.push_back(std::move(r));
    probe(partition, q.rounds.back(), now_us);
}

/* While the lease holds no other leader can be elected, so nothing can be
 * committed that our commit index misses: the waiting reads are answered
 * with it now.  Why: docs/architecture.md, "Read leases". */
bool ReadIndex::serve_from_lease(int32_t partition, uint64_t term, uint64_t commit, int64_t now_us)
{
    Part &q = parts_[(size_t)partition];
    if (q.next.empty() || q.lease_until_us == 0)
        return false;
    int64_t lease_now = host_.lease_clock_us(partition);
    bool holds = kPlantEndlessLease || lease_now < q.lease_until_us; /* planted: never expires */
    if (!holds || !host_.lease_allowed(partition, term))
        return false;
    std::vector<Waiter> waiters;
    waiters.swap(q.next);
    for (const Waiter &w : waiters)
        answer(w, partition, kReadIndexOk, commit);
    q.reads_confirmed += waiters.size();
    q.reads_leased += waiters.size();
    if (q.rounds.empty() && q.lease_until_us - lease_now < kLeaseRenewBeforeUs)
        start_round(partition, commit, now_us); /* no readers: it renews the lease */
    return true;
}

/* VotePromise records: a voter's yes came with how long it will elect
 * nobody, counted from its answer.  We count it from when the round first
 * went out (earlier), at 90% minus 2 ms (its clock may run fast). */
void ReadIndex::on_promises(uint32_t peer, const char *data, size_t len)
{
    std::vector<int32_t> touched;
    for (size_t at = 0; at + kPromiseRecord <= len; at += kPromiseRecord) {
        uint32_t p = get_le32(data + at);
        uint64_t term = get_le64(data + at + 4);
        uint64_t seq = get_le64(data + at + 12);
        uint32_t ms = get_le32(data + at + 20);
        if (p >= parts_.size())
            continue;
        Part &q = parts_[p];
        if (term == 0 || q.term != term || ms == 0)
            continue;
        auto sent = std::find_if(q.sent.rbegin(), q.sent.rend(),
                                 [seq](const std::pair<uint64_t, int64_t> &s) { return s.first == seq; });
        if (sent == q.sent.rend())
            continue;
        int64_t worth = (int64_t)ms * 1000 * 9 / 10 - 2000;
        if (worth <= 0)
            continue;
        std::vector<uint32_t> voters = host_.voters((int32_t)p);
        if (std::find(voters.begin(), voters.end(), peer) == voters.end())
            continue;
        int64_t &until = q.promised[peer];
        until = std::max(until, sent->second + worth);
        if (touched.empty() || touched.back() != (int32_t)p)
            touched.push_back((int32_t)p);
    }
    for (int32_t p : touched)
        update_lease(p);
}

/* The lease lasts while the voters left without a promise (we withhold our
 * own vote while we lead) are short of a quorum: until the need-th longest
 * promise ends. */
void ReadIndex::update_lease(int32_t partition)
{
    Part &q = parts_[(size_t)partition];
    uint32_t self = host_.self();
    std::vector<uint32_t> voters = host_.voters(partition);
    size_t quorum = voters.size() / 2 + 1;
    bool self_votes = std::find(voters.begin(), voters.end(), self) != voters.end();
    size_t others = voters.size() - (self_votes ? 1 : 0);
    size_t need = others + 1 > quorum ? others + 1 - quorum : 0;
    if (need == 0)
        return; /* a lone voter: lead_rounds gave it a lease that never ends */
    std::vector<int64_t> held;
    for (uint32_t v : voters) {
        auto it = q.promised.find(v);
        if (v != self && it != q.promised.end())
            held.push_back(it->second);
    }
    if (held.size() < need)
        return;
    std::nth_element(held.begin(), held.begin() + (long)(need - 1), held.end(), std::greater<int64_t>());
    if (q.lease_until_us == 0)
        new_leases_.push_back(partition);
    q.lease_until_us = held[need - 1];
}

void ReadIndex::forget_lease(Part &q)
{
    q.sent.clear();
    q.promised.clear();
    q.lease_until_us = 0;
}

void ReadIndex::probe(int32_t partition, Round &round, int64_t now_us)
{
    Part &q = parts_[(size_t)partition];
    round.probed_us = now_us;
    uint32_t self = host_.self();
    for (uint32_t v : host_.voters(partition)) {
        auto it = q.acked.find(v);
        if (v == self || (it != q.acked.end() && it->second >= round.seq))
            continue;
        std::string &o = out(v, FrameType::ReadConfirm);
        put_le32(o, (uint32_t)partition);
        put_le64(o, q.term);
        put_le64(o, round.seq);
    }
}

/* A yes to round n from a voter was sent after round n's confirm went out,
 * so it confirms every round up to n: find the newest round a quorum
 * confirmed and serve it and all before it. */
void ReadIndex::confirm_rounds(int32_t partition)
{
    Part &q = parts_[(size_t)partition];
    if (q.rounds.empty())
        return;
    uint32_t self = host_.self();
    std::vector<uint32_t> voters = host_.voters(partition);
    size_t quorum = voters.size() / 2 + 1;
    bool self_votes = std::find(voters.begin(), voters.end(), self) != voters.end();
    size_t confirmed = 0;
    for (size_t i = q.rounds.size(); i-- > 0;) {
        size_t yes = self_votes ? 1 : 0;
        for (uint32_t v : voters) {
            auto it = q.acked.find(v);
            if (v != self && it != q.acked.end() && it->second >= q.rounds[i].seq)
                yes++;
        }
        if (yes >= quorum) {
            confirmed = i + 1;
            break;
        }
    }
    for (size_t i = 0; i < confirmed; i++) {
        Round round = std::move(q.rounds.front());
        q.rounds.pop_front();
        for (const Waiter &w : round.waiters)
            answer(w, partition, kReadIndexOk, round.index);
        q.reads_confirmed += round.waiters.size();
    }
}

/* Lost the leadership: every reader waiting on us is sent to ask again. */
void ReadIndex::give_up_leading(int32_t partition)
{
    Part &q = parts_[(size_t)partition];
    if (q.term == 0 && q.next.empty() && q.rounds.empty())
        return;
    std::vector<Waiter> waiters;
    waiters.swap(q.next);
    for (Round &r : q.rounds)
        waiters.insert(waiters.end(), r.waiters.begin(), r.waiters.end());
    q.rounds.clear();
    q.acked.clear();
    forget_lease(q);
    q.term = 0;
    for (const Waiter &w : waiters)
        answer(w, partition, kReadIndexNotLeader, 0);
}

void ReadIndex::answer(const Waiter &w, int32_t partition, uint8_t outcome, uint64_t index)
{
    if (w.origin != host_.self()) {
        std::string &o = out(w.origin, FrameType::ReadIndexAnswer);
        put_le32(o, (uint32_t)partition);
        put_le64(o, w.id);
        o.push_back(static_cast<char>(outcome));
        put_le64(o, index);
        return;
    }
    auto it = parts_[(size_t)partition].reads.find(w.id);
    if (it == parts_[(size_t)partition].reads.end() || it->second.index != 0)
        return;
    if (outcome == kReadIndexOk)
        it->second.index = std::max<uint64_t>(index, 1);
    else
        it->second.asked = 0;
}

void ReadIndex::on_frame(uint32_t peer, FrameType type, const char *data, size_t len)
{
    switch (type) {
    case FrameType::ReadConfirm:
        /* yes only while our term is the leader's: a voter that moved to a
         * newer term may have elected someone else */
        for (size_t at = 0; at + kConfirmRecord <= len; at += kConfirmRecord) {
            uint32_t p = get_le32(data + at);
            uint64_t term = get_le64(data + at + 4);
            uint64_t seq = get_le64(data + at + 12);
            if (p >= parts_.size())
                continue;
            bool yes = term != 0 && host_.current_term((int32_t)p) == term;
            std::string &o = out(peer, FrameType::ReadConfirmAck);
            put_le32(o, p);
            put_le64(o, term);
            put_le64(o, seq);
            o.push_back(static_cast<char>(yes ? 1 : 0));
            /* a separate frame: a leader that knows no leases skips it */
            uint32_t ms = yes ? host_.vote_promise_ms((int32_t)p, peer, term) : 0;
            if (ms > 0) {
                std::string &pr = out(peer, FrameType::VotePromise);
                put_le32(pr, p);
                put_le64(pr, term);
                put_le64(pr, seq);
                put_le32(pr, ms);
            }
        }
        break;
    case FrameType::VotePromise:
        on_promises(peer, data, len);
        break;
    case FrameType::ReadConfirmAck: {
        std::vector<int32_t> touched;
        for (size_t at = 0; at + kConfirmAckRecord <= len; at += kConfirmAckRecord) {
            uint32_t p = get_le32(data + at);
            uint64_t term = get_le64(data + at + 4);
            uint64_t seq = get_le64(data + at + 12);
            bool yes = data[at + 20] != 0;
            if (p >= parts_.size())
                continue;
            Part &q = parts_[p];
            if (!yes || term == 0 || q.term != term)
                continue;
            std::vector<uint32_t> voters = host_.voters((int32_t)p);
            if (std::find(voters.begin(), voters.end(), peer) == voters.end())
                continue;
            uint64_t &acked = q.acked[peer];
            acked = std::max(acked, seq);
            touched.push_back((int32_t)p);
        }
        /* a yes in the round's term proves we led when the confirm went out,
         * even if we have been deposed since: the rounds may be served */
        for (int32_t p : touched)
            confirm_rounds(p);
        break;
    }
    case FrameType::ReadIndexAsk:
        for (size_t at = 0; at + kAskRecord <= len; at += kAskRecord) {
            uint32_t p = get_le32(data + at);
            uint64_t id = get_le64(data + at + 4);
            if (p >= parts_.size())
                continue;
            Waiter w{peer, id};
            if (host_.leads((int32_t)p))
                parts_[p].next.push_back(w);
            else
                answer(w, (int32_t)p, kReadIndexNotLeader, 0);
        }
        break;
    case FrameType::ReadIndexAnswer:
        for (size_t at = 0; at + kAnswerRecord <= len; at += kAnswerRecord) {
            uint32_t p = get_le32(data + at);
            uint64_t id = get_le64(data + at + 4);
            uint8_t outcome = static_cast<uint8_t>(data[at + 12]);
            uint64_t index = get_le64(data + at + 13);
            if (p >= parts_.size())
                continue;
            auto it = parts_[p].reads.find(id);
            /* only the answer of the node we asked last counts */
            if (it == parts_[p].reads.end() || it->second.asked != peer || it->second.index != 0)
                continue;
            if (outcome == kReadIndexOk)
                it->second.index = std::max<uint64_t>(index, 1);
            /* not leader: asked again once the leader or term changes */
        }
        break;
    default:
        break;
    }
}

void ReadIndex::applied(int32_t partition, uint64_t applied_index)
{
    Part &q = parts_[(size_t)partition];
    std::vector<uint64_t> ready;
    for (auto &kv : q.reads)
        if (kv.second.index != 0 && kv.second.index <= applied_index)
            ready.push_back(kv.first);
    for (uint64_t id : ready) {
        q.reads.erase(id);
        q.reads_served++;
        host_.read_ready(id);
    }
}

void ReadIndex::expire(int32_t partition, int64_t now_us)
{
    Part &q = parts_[(size_t)partition];
    std::vector<std::pair<uint64_t, uint64_t>> due; /* id, index */
    for (auto &kv : q.reads)
        if (kv.second.deadline_us <= now_us)
            due.emplace_back(kv.first, kv.second.index);
    for (auto &d : due) {
        q.reads.erase(d.first);
        std::string p = std::to_string(partition);
        host_.fail_request(
            d.first, RouteFailure::NotApplied,
            d.second == 0 ? "atomix: no leader of partition " + p +
                                " confirmed a linearizable read within atomix.unavailable_timeout"
                          : "atomix: this node's replica of partition " + p + " did not apply index " +
                                std::to_string(d.second) +
                                " within atomix.unavailable_timeout (a linearizable read waits for it)");
    }
}

void ReadIndex::fail_all(int32_t partition, const std::string &why)
{
    Part &q = parts_[(size_t)partition];
    std::vector<uint64_t> ids;
    for (auto &kv : q.reads)
        ids.push_back(kv.first);
    q.reads.clear();
    for (uint64_t id : ids)
        host_.fail_request(id, RouteFailure::NotApplied, why);
}

void ReadIndex::flush()
{
    for (auto &kv : out_)
        if (!kv.second.empty())
            (void)host_.send(kv.first.first, static_cast<FrameType>(kv.first.second), std::string(), kv.second);
    out_.clear();
}

bool ReadIndex::idle() const
{
    for (const auto &kv : out_)
        if (!kv.second.empty())
            return false;
    for (const Part &q : parts_)
        if (!q.reads.empty() || !q.next.empty() || !q.rounds.empty())
            return false;
    return true;
}

int64_t ReadIndex::next_deadline_us() const
{
    int64_t next = INT64_MAX;
    for (const Part &q : parts_) {
        for (const auto &kv : q.reads)
            next = std::min(next, kv.second.deadline_us);
        if (!q.rounds.empty())
            next = std::min(next, q.rounds.back().probed_us + kReadConfirmResendUs);
    }
    return next;
}

} // namespace atomix
