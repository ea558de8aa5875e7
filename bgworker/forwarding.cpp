/*
 * forwarding.cpp — the worker's side of a multi-node cluster: the node
 * transport, forwarding requests to partition leaders, retries after a
 * leader change, and spreading leadership over the nodes.
 *
 * Every node keeps a replica of every partition, so the node a request came
 * in on applies the entry itself and answers its backend from its own apply
 * — once the call returns, that node's tables show the write.  Leaders
 * report back only what went wrong: "not leader" (never appended: resend)
 * and "leadership lost" (maybe appended: resend as a retry, which the state
 * machine answers from its request log if the first attempt committed).
 *
 * A forward is resent only when that can help: when the connection it went
 * out on is gone (a new link generation) or the partition has a new leader.
 * Never on a timer over the connection it is still waiting on — a stuck
 * link delivers the first copy late, and the copy would only add a
 * duplicate (the transport's liveness checks turn a silent link into a new
 * connection within seconds).  Duplicates that still happen are harmless:
 * the leader drops a forwarded id it already has queued or in a proposal,
 * and the state machine answers any later copy from its request log.
 */
extern "C" {
#include "postgres.h"
#include "common/cryptohash.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "port.h"
#include "utils/resowner.h"
}

#include <algorithm>
#include <stdexcept>

#include "clock.h"
#include "guc.h"
#include "le_bytes.h"
#include "planted_bugs.h"
#include "worker.h"

namespace atomix {

static std::string hmac_sha256(const std::string &key, const std::string &message)
{
    /* Postgres tracks HMAC contexts in the current resource owner; the loop
     * runs outside any transaction, so it gets one of its own. */
    static ResourceOwner owner = NULL;
    if (owner == NULL)
        owner = ResourceOwnerCreate(NULL, "atomix transport");
    ResourceOwner saved = CurrentResourceOwner;
    CurrentResourceOwner = owner;
    unsigned char out[PG_SHA256_DIGEST_LENGTH];
    pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);
    bool ok = ctx && pg_hmac_init(ctx, (const uint8 *)key.data(), key.size()) == 0 &&
              pg_hmac_update(ctx, (const uint8 *)message.data(), message.size()) == 0 &&
              pg_hmac_final(ctx, out, sizeof(out)) == 0;
    if (ctx)
        pg_hmac_free(ctx);
    CurrentResourceOwner = saved;
    if (!ok)
        throw std::runtime_error("HMAC-SHA256 failed");
    return std::string(reinterpret_cast<char *>(out), sizeof(out));
}

static std::string strong_random(size_t n)
{
    std::string s(n, '\0');
    if (!pg_strong_random(&s[0], n))
        throw std::runtime_error("no strong random bytes");
    return s;
}

void Worker::start_transport()
{
    if (cluster_->nodes().size() < 2)
        return;
    TransportHooks hooks;
    hooks.hmac = hmac_sha256;
    hooks.random_bytes = strong_random;
    hooks.on_frame = [this](uint32_t peer, FrameType type, const char *p, size_t n) {
        on_frame(peer, type, p, n);
    };
    hooks.log = [](int level, const std::string &message) {
        ereport(level > 0 ? WARNING : LOG, (errmsg_internal("%s", message.c_str())));
    };
    transport_ = std::make_unique<NodeTransport>(&loop_, *cluster_, atomix_cluster_secret, hooks);
    transport_->set_liveness(!kPlantPoisonedEntry);
    /* frames wait for the flushes in Worker::turn: one write per peer per
     * flush instead of one per Raft message */
    transport_->set_batching(true);
    transport_->start();
}

void Worker::on_frame(uint32_t peer, FrameType type, const char *data, size_t len)
{
    try {
        switch (type) {
        case FrameType::Raft: {
            if (len < 4)
                return;
            uint32_t group = get_le32(data);
            const NodeAddress *from = cluster_->node(peer);
            if (group < partitions_.size() && from)
                partitions_[group]->group->deliver(peer, from->address(), data + 4, len - 4);
            return;
        }
        case FrameType::Forward:
            handle_forward(peer, data, len);
            return;
        case FrameType::ForwardReply:
            handle_forward_reply(peer, data, len);
            return;
        default:
            return;
        }
    } catch (const std::exception &e) {
        fail(std::string("handling a frame from node ") + std::to_string(peer) + ": " + e.what());
    }
}

/* Not the leader here: send our own commands to the leader, tell other
 * nodes' commands to look elsewhere (no forwarding chains). */
void Worker::forward_queued(Partition &p)
{
    uint32_t self = cluster_->self().id;
    uint32_t leader = (uint32_t)p.group->leader_id();
    std::vector<QueuedCommand> keep;
    for (QueuedCommand &c : p.queued) {
        if (c.origin != self) {
            reply_to_origin(c, p.id, kForwardNotLeader);
            continue;
        }
        if (leader == 0 || leader == self || !transport_) {
            keep.push_back(std::move(c));
            continue;
        }
        std::string head;
        put_le32(head, (uint32_t)p.id);
        if (!transport_->send(leader, FrameType::Forward, head.data(), head.size(),
                              c.encoded.data(), c.encoded.size())) {
            keep.push_back(std::move(c));
            continue;
        }
        uint64_t id = c.request_id;
        forwarded_[id] = ForwardedCommand{p.id, std::move(c), leader, transport_->link_generation(leader),
                                          mono_now_us()};
    }
    p.queued.swap(keep);
}

void Worker::handle_forward(uint32_t peer, const char *data, size_t len)
{
    if (len < 4 + kCommandRequestIdOffset + 8)
        return;
    uint32_t partition = get_le32(data);
    if (partition >= partitions_.size())
        return;
    QueuedCommand c;
    c.encoded.assign(data + 4, len - 4);
    c.request_id = get_le64(c.encoded.data() + kCommandRequestIdOffset);
    c.origin = peer;
    c.queued_us = mono_now_us();
    c.deadline_us = c.queued_us + (int64_t)atomix_unavailable_timeout_ms * 1000;
    Partition &p = *partitions_[partition];
    if (p.halted || !p.group->is_leader()) {
        reply_to_origin(c, p.id, kForwardNotLeader);
        return;
    }
    /* a copy of a request we already hold (the origin resent it on a new
     * connection while the first copy was on its way): the first copy's
     * outcome answers both */
    bool queued = std::any_of(p.queued.begin(), p.queued.end(),
                              [&](const QueuedCommand &q) { return q.request_id == c.request_id; });
    if ((queued || p.proposing.count(c.request_id) > 0) && !kPlantPoisonedEntry) {
        p.duplicates_dropped++;
        return;
    }
    enqueue(p, std::move(c));
}

void Worker::reply_to_origin(const QueuedCommand &command, int partition, uint8_t outcome)
{
    if (!transport_ || command.origin == cluster_->self().id)
        return;
    std::string reply;
    put_le64(reply, command.request_id);
    put_le32(reply, (uint32_t)partition);
    reply.push_back(static_cast<char>(outcome));
    /* if this cannot be sent, the origin resends after kForwardRetryAfterUs */
    (void)transport_->send(command.origin, FrameType::ForwardReply, reply);
}

void Worker::handle_forward_reply(uint32_t, const char *data, size_t len)
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
        enqueue(*partitions_[f.partition], std::move(f.command));
}

/* Resends a command that may already be in the log, marked as a retry. */
void Worker::retry(int32_t partition, QueuedCommand command)
{
    command.encoded[kCommandFlagsOffset] =
        static_cast<char>(static_cast<uint8_t>(command.encoded[kCommandFlagsOffset]) | kFlagRetry);
    enqueue(*partitions_[partition], std::move(command));
}

/* A forward with no outcome is resent (as a retry: the first copy may be
 * in the log) when the connection it went out on is gone, or the partition
 * has a new leader.  It waits in the queue until a leader is reachable. */
void Worker::resend_stalled_forwards()
{
    if (!transport_)
        return;
    std::vector<uint64_t> stalled;
    for (auto &kv : forwarded_) {
        const ForwardedCommand &f = kv.second;
        uint32_t leader = (uint32_t)partitions_[f.partition]->group->leader_id();
        bool link_gone = !transport_->connected(f.leader) ||
                         transport_->link_generation(f.leader) != f.link;
        bool new_leader = leader != 0 && leader != f.leader;
        bool timer = kPlantPoisonedEntry && mono_now_us() - f.sent_us >= 3 * 1000000;
        if (link_gone || new_leader || timer)
            stalled.push_back(kv.first);
    }
    for (uint64_t id : stalled) {
        ForwardedCommand f = std::move(forwarded_[id]);
        forwarded_.erase(id);
        partitions_[f.partition]->resends++;
        retry(f.partition, std::move(f.command));
    }
}

/* Partition p's preferred leader is the first of its voters: hand
 * leadership back to it once it is connected and has been led elsewhere for
 * a while, so leaders stay spread evenly. */
void Worker::balance_leaders(int64_t now_us)
{
    if (!transport_)
        return;
    uint32_t self = cluster_->self().id;
    for (auto &p : partitions_) {
        bool leader = p->group->is_leader();
        if (leader && !p->was_leader) {
            p->leader_since_us = now_us;
            Command renew;
            renew.op = Op::LeasesRenew;
            for (const NodeAddress &n : cluster_->nodes())
                if (n.id == self || transport_->connected(n.id))
                    put_le64(renew.value, n.id);
            propose_internal(p->id, renew);
        }
        p->was_leader = leader;
        if (!leader)
            continue;
        uint32_t preferred = cluster_->preferred_leader((uint32_t)p->id);
        if (preferred == self || !transport_->connected(preferred) ||
            now_us - p->leader_since_us < 3 * 1000000 || now_us - p->last_transfer_us < 5 * 1000000)
            continue;
        if (p->group->transfer_leadership(preferred))
            p->last_transfer_us = now_us;
    }
}

} // namespace atomix
