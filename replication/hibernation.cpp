/*
 * hibernation.cpp — idle partitions stop their Raft heartbeats (see
 * hibernation.h for the rules and why they are safe).
 */
#include "hibernation.h"

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

void Hibernation::on_digest(uint32_t peer, const char *data, size_t len, uint64_t now_ms)
{
    std::vector<GroupDigest> records;
    if (!decode_digests(data, len, &records))
        return; /* a malformed digest counts as none: its sender's partitions wake */
    std::vector<PeerReport> &reports = reports_[peer];
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
        if (send_(peer, encode_digests(records)))
            digests_sent_++;
    }
}

} // namespace atomix
