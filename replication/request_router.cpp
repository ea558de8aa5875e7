/*
 * request_router.cpp — see request_router.h.
 */
#include "request_router.h"

#include <algorithm>
#include <climits>

#include "le_bytes.h"
#include "planted_bugs.h"
#include "state_machine.h" /* kMaxCommandsPerEntry */

namespace atomix {

RequestRouter::RequestRouter(RouterHost &host, size_t partitions) : host_(host), parts_(partitions) {}

void RequestRouter::submit(int32_t partition, QueuedCommand command)
{
    PartitionQueue &q = parts_[(size_t)partition];
    if (command.origin == host_.self())
        q.held.insert(command.request_id);
    q.queued.push_back(std::move(command));
}

void RequestRouter::applied(uint64_t request_id)
{
    auto it = forwarded_.find(request_id);
    if (it == forwarded_.end())
        return;
    parts_[(size_t)it->second.partition].held.erase(request_id);
    forwarded_.erase(it);
}

void RequestRouter::fail_own(int32_t partition, uint64_t request_id, RouteFailure why, const std::string &message)
{
    parts_[(size_t)partition].held.erase(request_id);
    host_.fail_request(request_id, why, message);
}

/* Our own command goes out: with the lowest id we still hold (never above
 * its own), so the partition can forget what we are done with. */
void RequestRouter::stamp_floor(int32_t partition, QueuedCommand &command)
{
    if (command.origin != host_.self())
        return;
    uint64_t f = floor(partition);
    patch_request_floor(command.encoded, f == 0 ? command.request_id : std::min(f, command.request_id));
}

void RequestRouter::propose_or_forward(int32_t partition, int64_t stamp_us, const ProposeFn &propose)
{
    if (parts_[(size_t)partition].queued.empty())
        return;
    if (host_.leads(partition))
        propose_queued(partition, stamp_us, propose);
    else
        forward_queued(partition);
}

void RequestRouter::propose_queued(int32_t partition, int64_t stamp_us, const ProposeFn &propose)
{
    PartitionQueue &q = parts_[(size_t)partition];
    std::vector<QueuedCommand> queued;
    queued.swap(q.queued);
    size_t i = 0;
    while (i < queued.size()) {
        std::string entry;
        EntryHeader header;
        header.stamp_us = stamp_us;
        encode_entry_header(header, entry);
        std::vector<QueuedCommand> commands;
        while (i < queued.size() && commands.size() < kMaxCommandsPerEntry &&
               (commands.empty() || entry.size() + queued[i].encoded.size() <= kMaxEntryBytes)) {
            stamp_floor(partition, queued[i]);
            entry.append(queued[i].encoded);
            commands.push_back(std::move(queued[i]));
            i++;
        }
        patch_entry_count(entry, (uint32_t)commands.size());
        for (const QueuedCommand &c : commands)
            q.proposing.insert(c.request_id);
        std::string why;
        ProposeResult r = propose(partition, entry, commands, why);
        if (r == ProposeResult::Proposed)
            continue;
        /* never appended: safe to try again as a first attempt */
        for (QueuedCommand &c : commands) {
            auto it = q.proposing.find(c.request_id);
            if (it != q.proposing.end())
                q.proposing.erase(it);
            if (r == ProposeResult::NotLeader)
                q.queued.push_back(std::move(c));
            else if (c.origin == host_.self())
                fail_own(partition, c.request_id, RouteFailure::Refused, why);
            else
                reply_to_origin(c, partition, kForwardNotLeader);
        }
        if (r == ProposeResult::NotLeader) {
            /* the rest waits, in order, for the next leader */
            for (; i < queued.size(); i++)
                q.queued.push_back(std::move(queued[i]));
        }
    }
}

void RequestRouter::proposal_done(int32_t partition, std::vector<QueuedCommand> &commands, bool ok)
{
    PartitionQueue &q = parts_[(size_t)partition];
    for (const QueuedCommand &c : commands) {
        auto it = q.proposing.find(c.request_id);
        if (it != q.proposing.end())
            q.proposing.erase(it);
        if (ok && c.origin == host_.self())
            q.held.erase(c.request_id);
    }
    if (ok)
        return; /* applied: the results went out through the apply */
    for (QueuedCommand &c : commands) {
        if (c.origin == host_.self())
            retry(partition, std::move(c));
        else
            reply_to_origin(c, partition, kForwardRetry);
    }
}

/* Not the leader here: send our own commands to the leader, tell other
 * nodes' commands to look elsewhere (no forwarding chains). */
void RequestRouter::forward_queued(int32_t partition)
{
    PartitionQueue &q = parts_[(size_t)partition];
    uint32_t self = host_.self();
    uint32_t leader = host_.leader_of(partition);
    std::vector<QueuedCommand> keep;
    for (QueuedCommand &c : q.queued) {
        if (c.origin != self) {
            reply_to_origin(c, partition, kForwardNotLeader);
            continue;
        }
        if (leader == 0 || leader == self) {
            keep.push_back(std::move(c));
            continue;
        }
        stamp_floor(partition, c);
        std::string head;
        put_le32(head, (uint32_t)partition);
        if (!host_.send(leader, FrameType::Forward, head, c.encoded)) {
            keep.push_back(std::move(c));
            continue;
        }
        uint64_t id = c.request_id;
        q.forwarded++;
        forwarded_[id] = ForwardedCommand{partition, std::move(c), leader, host_.link_generation(leader),
                                          host_.monotonic_us()};
    }
    q.queued.swap(keep);
}

void RequestRouter::on_forward(uint32_t peer, const char *data, size_t len)
{
    if (len < 4 + kCommandRequestIdOffset + 8)
        return;
    uint32_t partition = get_le32(data);
    if (partition >= parts_.size())
        return;
    QueuedCommand c;
    c.encoded.assign(data + 4, len - 4);
    c.request_id = get_le64(c.encoded.data() + kCommandRequestIdOffset);
    c.origin = peer;
    c.queued_us = host_.monotonic_us();
    c.deadline_us = c.queued_us + host_.unavailable_timeout_us();
    int32_t p = (int32_t)partition;
    if (!host_.leads(p)) {
        reply_to_origin(c, p, kForwardNotLeader);
        return;
    }
    /* a copy of a request we already hold (the origin resent it on a new
     * connection while the first copy was on its way): the first copy's
     * outcome answers both */
    PartitionQueue &q = parts_[partition];
    bool queued = std::any_of(q.queued.begin(), q.queued.end(),
                              [&](const QueuedCommand &x) { return x.request_id == c.request_id; });
    if ((queued || q.proposing.count(c.request_id) > 0) && !kPlantPoisonedEntry) {
        q.duplicates_dropped++;
        return;
    }
    q.forwards_taken++;
    submit(p, std::move(c));
}

void RequestRouter::reply_to_origin(const QueuedCommand &command, int32_t partition, uint8_t outcome)
{
    if (command.origin == host_.self())
        return;
    std::string reply;
    put_le64(reply, command.request_id);
    put_le32(reply, (uint32_t)partition);
    reply.push_back(static_cast<char>(outcome));
    /* if this cannot be sent, the origin resends once its link is renewed */
    (void)host_.send(command.origin, FrameType::ForwardReply, std::string(), reply);
}

void RequestRouter::on_forward_reply(uint32_t, const char *data, size_t len)
{
    if (len != 8 + 4 + 1)
        return;
    uint64_t id = get_le64(data);
    uint8_t outcome = static_cast<uint8_t>(data[12]);
    auto it = forwarded_.find(id);
    if (it == forwarded_.end())
        return;
    ForwardedCommand f = std::move(it->second);
    forwarded_.erase(it);
    if (outcome == kForwardRetry)
        retry(f.partition, std::move(f.command));
    else
        submit(f.partition, std::move(f.command));
}

/* Resends a command that may already be in the log, marked as a retry. */
void RequestRouter::retry(int32_t partition, QueuedCommand command)
{
    command.encoded[kCommandFlagsOffset] =
        static_cast<char>(static_cast<uint8_t>(command.encoded[kCommandFlagsOffset]) | kFlagRetry);
    submit(partition, std::move(command));
}

/* A forward with no outcome is resent (as a retry: the first copy may be
 * in the log) when the connection it went out on is gone, or the partition
 * has a new leader.  It waits in the queue until a leader is reachable. */
void RequestRouter::resend_stalled()
{
    std::vector<uint64_t> stalled;
    int64_t now = host_.monotonic_us();
    for (auto &kv : forwarded_) {
        const ForwardedCommand &f = kv.second;
        uint32_t leader = host_.leader_of(f.partition);
        bool link_gone = !host_.connected(f.leader) || host_.link_generation(f.leader) != f.link;
        bool new_leader = leader != 0 && leader != f.leader;
        bool timer = kPlantPoisonedEntry && now - f.sent_us >= 3 * 1000000;
        if (link_gone || new_leader || timer)
            stalled.push_back(kv.first);
    }
    /* in id order: the same resends in the same order for the same state */
    std::sort(stalled.begin(), stalled.end());
    for (uint64_t id : stalled) {
        ForwardedCommand f = std::move(forwarded_[id]);
        forwarded_.erase(id);
        parts_[(size_t)f.partition].resends++;
        retry(f.partition, std::move(f.command));
    }
}

void RequestRouter::restored(int32_t partition, const std::function<bool(uint64_t)> &answered)
{
    std::vector<uint64_t> ids;
    for (auto &kv : forwarded_)
        if (kv.second.partition == partition)
            ids.push_back(kv.first);
    std::sort(ids.begin(), ids.end());
    for (uint64_t id : ids) {
        auto it = forwarded_.find(id);
        if (it == forwarded_.end())
            continue;
        const std::string &encoded = it->second.command.encoded;
        if (!encoded.empty() && static_cast<Op>(static_cast<uint8_t>(encoded[0])) == Op::Barrier) {
            ForwardedCommand f = std::move(it->second);
            forwarded_.erase(it);
            parts_[(size_t)partition].resends++;
            retry(partition, std::move(f.command));
        } else if (answered(id)) {
            forwarded_.erase(id);
            parts_[(size_t)partition].held.erase(id);
        }
    }
}

/* Requests for a partition that has no leader fail after
 * atomix.unavailable_timeout instead of hanging. */
void RequestRouter::expire(int64_t now_us)
{
    uint32_t self = host_.self();
    for (size_t i = 0; i < parts_.size(); i++) {
        std::vector<QueuedCommand> &queued = parts_[i].queued;
        auto expired = [&](const QueuedCommand &qc) { return qc.deadline_us <= now_us; };
        /* a resent command may be in some leader's log already: in doubt */
        for (const QueuedCommand &qc : queued)
            if (expired(qc) && qc.origin == self)
                fail_own((int32_t)i, qc.request_id,
                     qc.maybe_applied() ? RouteFailure::InDoubt : RouteFailure::NotApplied,
                     "atomix: partition " + std::to_string(i) + " has no reachable leader");
        queued.erase(std::remove_if(queued.begin(), queued.end(), expired), queued.end());
    }
    std::vector<std::pair<uint64_t, int32_t>> late;
    for (auto &kv : forwarded_)
        if (kv.second.command.deadline_us <= now_us)
            late.emplace_back(kv.first, kv.second.partition);
    std::sort(late.begin(), late.end());
    for (auto &l : late) {
        forwarded_.erase(l.first);
        fail_own(l.second, l.first, RouteFailure::InDoubt,
                           "atomix: no answer from partition " + std::to_string(l.second) +
                               "'s leader within atomix.unavailable_timeout");
    }
}

void RequestRouter::fail_all(int32_t partition, const std::string &why)
{
    std::vector<uint64_t> sent;
    for (auto &kv : forwarded_)
        if (kv.second.partition == partition)
            sent.push_back(kv.first);
    std::sort(sent.begin(), sent.end());
    for (uint64_t id : sent) {
        forwarded_.erase(id);
        fail_own(partition, id, RouteFailure::InDoubt, why + "; the request may have been applied by its leader");
    }
    std::vector<QueuedCommand> queued;
    queued.swap(parts_[(size_t)partition].queued);
    for (const QueuedCommand &c : queued) {
        if (c.origin != host_.self()) {
            reply_to_origin(c, partition, kForwardNotLeader);
            continue;
        }
        fail_own(partition, c.request_id, c.maybe_applied() ? RouteFailure::InDoubt : RouteFailure::NotApplied,
             why + "; it restarts by itself");
    }
}

void RequestRouter::fail_waiting_since(int32_t partition, int64_t since_us, const std::string &why,
                                       const std::function<bool(uint64_t)> &awaited)
{
    PartitionQueue &q = parts_[(size_t)partition];
    std::vector<QueuedCommand> keep;
    std::vector<QueuedCommand> queued;
    queued.swap(q.queued);
    for (QueuedCommand &c : queued) {
        if (c.origin != host_.self() || !awaited(c.request_id) || c.queued_us > since_us) {
            keep.push_back(std::move(c));
            continue;
        }
        fail_own(partition, c.request_id, c.maybe_applied() ? RouteFailure::InDoubt : RouteFailure::NotApplied, why);
    }
    for (QueuedCommand &c : keep)
        q.queued.push_back(std::move(c)); /* fail_request may have queued more */
    std::vector<uint64_t> sent;
    for (auto &kv : forwarded_)
        if (kv.second.partition == partition && kv.second.command.queued_us <= since_us)
            sent.push_back(kv.first);
    std::sort(sent.begin(), sent.end());
    /* proposals in flight here are answered by the leader stepping down
     * (their callbacks retry or fail them) */
    for (uint64_t id : sent) {
        forwarded_.erase(id);
        fail_own(partition, id, RouteFailure::InDoubt, why);
    }
}

size_t RequestRouter::waiting(int32_t partition) const
{
    const PartitionQueue &q = parts_[(size_t)partition];
    size_t n = q.queued.size() + q.proposing.size();
    for (auto &kv : forwarded_)
        if (kv.second.partition == partition)
            n++;
    return n;
}

bool RequestRouter::idle() const
{
    if (!forwarded_.empty())
        return false;
    for (const PartitionQueue &q : parts_)
        if (!q.queued.empty() || !q.proposing.empty())
            return false;
    return true;
}

int64_t RequestRouter::next_deadline_us() const
{
    int64_t at = INT64_MAX;
    for (const PartitionQueue &q : parts_)
        for (const QueuedCommand &c : q.queued)
            at = std::min(at, c.deadline_us);
    for (auto &kv : forwarded_)
        at = std::min(at, kv.second.command.deadline_us);
    return at;
}

} // namespace atomix
