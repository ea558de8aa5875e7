/*
 * hibernation.cpp — idle partitions stop their Raft heartbeats (see
 * hibernation.h for the rules and why they are safe).
 */
#include "hibernation.h"

#include <algorithm>

#include "le_bytes.h"
#include "raft_group.h"

namespace atomix {

static constexpr size_t kRecordBytes = 4 + 8 + 8 + 8 + 4 + 1;

std::string encode_digests(const std::vector<GroupDigest> &records)
{
    std::string out;
    out.reserve(4 + records.size() * kRecordBytes);
    put_le32(out, (uint32_t)records.size());
    for (const GroupDigest &d : records) {
        put_le32(out, d.partition);
        put_le64(out, d.term);
        put_le64(out, d.commit);
        put_le64(out, d.last);
        put_le32(out, d.leader);
        out.push_back((char)d.flags);
    }
    return out;
}

bool decode_digests(const char *data, size_t len, std::vector<GroupDigest> *records)
{
    if (len < 4)
        return false;
    uint32_t n = get_le32(data);
    if ((len - 4) / kRecordBytes < n || len != 4 + (size_t)n * kRecordBytes)
        return false;
    std::vector<GroupDigest> out(n);
    const char *p = data + 4;
    for (GroupDigest &d : out) {
        d.partition = get_le32(p);
        d.term = get_le64(p + 4);
        d.commit = get_le64(p + 12);
        d.last = get_le64(p + 20);
        d.leader = get_le32(p + 28);
        d.flags = (uint8_t)p[32];
        p += kRecordBytes;
    }
    *records = std::move(out);
    return true;
}

static bool fresh(const PeerReport &r, uint64_t now_ms, uint64_t fresh_ms)
{
    return r.known && now_ms - r.heard_ms < fresh_ms;
}

bool leader_may_hibernate(uint32_t self, const GroupView &me,
                          const std::vector<PeerReport> &member_reports, uint64_t now_ms,
                          uint64_t fresh_ms)
{
    if (!me.running || !me.leading || me.busy || me.commit != me.last || me.applied != me.last)
        return false;
    if (member_reports.size() != me.members.size())
        return false;
    for (size_t i = 0; i < me.members.size(); i++) {
        const PeerReport &r = member_reports[i];
        /* the member has everything, and knows it is committed, in our term */
        if (me.members[i].second != me.last || !fresh(r, now_ms, fresh_ms) ||
            r.digest.term != me.term || r.digest.leader != self || r.digest.commit != me.commit ||
            r.digest.last != me.last)
            return false;
    }
    return true;
}

bool follower_may_hibernate(const GroupView &me, const PeerReport &leader_report, uint64_t now_ms,
                            uint64_t fresh_ms)
{
    if (!me.running || !me.following || me.busy || me.commit != me.last || me.applied != me.last)
        return false;
    const GroupDigest &d = leader_report.digest;
    return fresh(leader_report, now_ms, fresh_ms) && (d.flags & kDigestLeading) &&
           (d.flags & kDigestHibernating) && d.leader == me.leader && d.term == me.term &&
           d.commit == me.commit && d.last == me.last;
}

Hibernation::Hibernation(uint32_t self, unsigned election_timeout_ms,
                         std::function<bool(uint32_t, const std::string &)> send)
    : self_(self), fresh_ms_(election_timeout_ms), send_(std::move(send))
{
}

void Hibernation::on_digest(uint32_t peer, const char *data, size_t len, uint64_t heard_ms)
{
    /* A peer's digests may be read later than they came (digest links are
     * read at ticks, node_transport.h) and, across its two links, not in
     * the order they came.  The time a peer was heard never moves back: a
     * sleeping follower's read-lease promise counts from its leader's
     * vouching (RaftGroup::vote_promise_ms), and a vouch moved back would
     * let it stand for election before the end of a promise it gave. */
    auto before = heard_ms_.find(peer);
    uint64_t now_ms = before == heard_ms_.end() ? heard_ms : std::max(heard_ms, before->second);
    std::vector<PeerReport> &reports = reports_[peer];
    auto last = payloads_.find(peer);
    if (last != payloads_.end() && last->second.size() == len &&
        std::equal(data, data + len, last->second.data())) {
        /* the same records as last time, heard now */
        for (PeerReport &r : reports)
            if (r.known)
                r.heard_ms = now_ms;
        heard_ms_[peer] = now_ms;
        return;
    }
    reports_changed_ = true;
    std::vector<GroupDigest> records;
    if (!decode_digests(data, len, &records)) {
        payloads_.erase(peer);
        return; /* a malformed digest counts as none: its sender's partitions wake */
    }
    payloads_[peer].assign(data, len);
    /* a partition missing from the latest digest is not running there */
    for (PeerReport &r : reports)
        r.known = false;
    for (const GroupDigest &d : records) {
        if (d.partition >= 65536)
            continue;
        if (reports.size() <= d.partition)
            reports.resize(d.partition + 1);
        reports[d.partition] = PeerReport{true, now_ms, d};
    }
    heard_ms_[peer] = now_ms;
}

const PeerReport &Hibernation::report(uint32_t peer, uint32_t partition) const
{
    static const PeerReport unknown;
    auto it = reports_.find(peer);
    if (it == reports_.end() || partition >= it->second.size())
        return unknown;
    return it->second[partition];
}

void Hibernation::decide(RaftGroup &group, Track &track, uint64_t now_ms)
{
    /* A sleeping group cannot have changed: decide on the view it went to
     * sleep with, without asking c-raft (this runs for every group at every
     * tick). */
    bool asleep = group.hibernating() && track.asleep.running;
    GroupView &v = asleep ? track.asleep : view_;
    if (!asleep)
        group.view(&v);
    if (v.running != track.running || v.leading != track.leading || v.term != track.term ||
        v.commit != track.commit || v.last != track.last || v.leader != track.leader)
        track.stable_since = now_ms;
    track.running = v.running;
    track.leading = v.leading;
    track.term = v.term;
    track.commit = v.commit;
    track.last = v.last;
    track.leader = v.leader;

    bool may = false;
    if (v.leading) {
        member_reports_.clear();
        for (const auto &m : v.members)
            member_reports_.push_back(report(m.first, group.partition()));
        may = now_ms - track.stable_since >= kQuietAfterMs &&
              leader_may_hibernate(self_, v, member_reports_, now_ms, fresh_ms_);
    } else if (v.following) {
        const PeerReport &r = report(v.leader, group.partition());
        may = follower_may_hibernate(v, r, now_ms, fresh_ms_);
        if (may)
            track.vouched_ms = r.heard_ms;
    }

    if (group.hibernating()) {
        if (may)
            return;
        /* A follower whose leader's node went silent counts its election
         * timeout from when the leader last vouched for the partition; one
         * woken by a leader that is still talking, from now. */
        uint64_t since = now_ms;
        if (!v.leading && v.following) {
            auto heard = heard_ms_.find(v.leader);
            bool silent = heard == heard_ms_.end() || now_ms - heard->second >= fresh_ms_;
            if (silent && track.vouched_ms != 0)
                since = track.vouched_ms;
        }
        group.wake(since);
    } else if (may) {
        group.hibernate();
        track.asleep = v;
        hibernations_++;
    }
}

void Hibernation::tick_all(const std::vector<RaftGroup *> &groups,
                           const std::vector<uint32_t> &peers, uint64_t now_ms)
{
    if (nothing_to_decide(groups, now_ms)) {
        tick_asleep(groups, peers, now_ms);
        return;
    }
    ticked_asleep_ = false;
    reports_changed_ = false; /* the decisions below read every report */
    sent_valid_ = false;
    if (tracks_.size() < groups.size())
        tracks_.resize(groups.size());
    bool all_asleep = true;
    for (size_t i = 0; i < groups.size(); i++) {
        RaftGroup *g = groups[i];
        if (!g) {
            tracks_[i] = Track();
            continue;
        }
        decide(*g, tracks_[i], now_ms);
        if (!g->hibernating()) {
            tracks_[i].asleep.running = false;
            all_asleep = false;
        }
        g->tick();
    }
    all_asleep_ = all_asleep;
    if (now_ms >= next_digest_ms_) {
        send_digests(groups, peers);
        next_digest_ms_ = now_ms + kDigestEveryMs;
    }
    remember_settled(groups, now_ms);
}

bool Hibernation::fresh_peer(uint32_t peer, uint64_t now_ms) const
{
    auto it = heard_ms_.find(peer);
    return it != heard_ms_.end() && now_ms - it->second < fresh_ms_;
}

/* After a deciding tick: what it read, if every group sleeps after it. */
void Hibernation::remember_settled(const std::vector<RaftGroup *> &groups, uint64_t now_ms)
{
    settled_ = all_asleep_;
    settled_fresh_.clear();
    if (!settled_) {
        settled_groups_.clear();
        return;
    }
    settled_groups_ = groups;
    for (const auto &h : heard_ms_)
        settled_fresh_[h.first] = fresh_peer(h.first, now_ms);
}

/* Would every decision be the one the last deciding tick took?  Yes when
 * every group slept after it and none woke, the same groups run, no digest
 * with other content came, and every peer is as fresh or as silent as then
 * (a peer heard for the first time brought other content). */
bool Hibernation::nothing_to_decide(const std::vector<RaftGroup *> &groups, uint64_t now_ms) const
{
    if (!settled_ || reports_changed_ || groups != settled_groups_)
        return false;
    for (RaftGroup *g : groups)
        if (g && !g->hibernating())
            return false;
    for (const auto &f : settled_fresh_)
        if (fresh_peer(f.first, now_ms) != f.second)
            return false;
    return true;
}

/* A tick with nothing to decide: no decision, no c-raft tick (every group
 * sleeps), the digests last built sent again when due.  What decide() would
 * still have done: a sleeping follower's leader vouched for it again with
 * its latest (identical, fresh) digest. */
void Hibernation::tick_asleep(const std::vector<RaftGroup *> &groups, const std::vector<uint32_t> &peers,
                              uint64_t now_ms)
{
    ticked_asleep_ = true;
    sleeping_ticks_++;
    for (Track &t : tracks_) {
        const GroupView &v = t.asleep;
        if (v.running && !v.leading && v.following && fresh_peer(v.leader, now_ms))
            t.vouched_ms = heard_ms_.at(v.leader);
    }
    if (now_ms < next_digest_ms_)
        return;
    next_digest_ms_ = now_ms + kDigestEveryMs;
    if (!sent_valid_) {
        send_digests(groups, peers);
        return;
    }
    for (uint32_t peer : peers) {
        auto it = sent_.find(peer);
        if (it != sent_.end() && send_(peer, it->second))
            digests_sent_++;
    }
}

void Hibernation::send_digests(const std::vector<RaftGroup *> &groups,
                               const std::vector<uint32_t> &peers)
{
    std::vector<GroupDigest> records;
    for (uint32_t peer : peers) {
        records.clear();
        for (size_t i = 0; i < groups.size(); i++) {
            RaftGroup *g = groups[i];
            /* the state decide() just saw (the same tick_all) */
            const Track &t = tracks_[i];
            if (!g || !t.running || !g->has_member(peer))
                continue;
            GroupDigest d;
            d.partition = g->partition();
            d.term = t.term;
            d.commit = t.commit;
            d.last = t.last;
            d.leader = t.leading ? self_ : t.leader;
            d.flags = (t.leading ? kDigestLeading : 0) | (g->hibernating() ? kDigestHibernating : 0);
            records.push_back(d);
        }
        std::string &payload = sent_[peer];
        payload = encode_digests(records);
        if (send_(peer, payload))
            digests_sent_++;
    }
    sent_valid_ = true;
}

} // namespace atomix
