/*
 * forwarding.cpp — the worker's side of a multi-node cluster: the node
 * transport, what the request router (replication/request_router.h) needs
 * of this node, and spreading leadership over the nodes.
 *
 * The rules of forwarding (who answers a caller, when a forward is resent,
 * which copies a leader drops) live with the code in request_router.h, so
 * the deterministic simulation runs exactly them.
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
#include "shmem.h"
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
    /* read_leases.cpp: a commit index is published before a peer can learn it */
    hooks.before_write = [this]() { publish_read_leases(); };
    hooks.log = [](int level, const std::string &message) {
        ereport(level > 0 ? WARNING : LOG, (errmsg_internal("%s", message.c_str())));
    };
    transport_ = std::make_unique<NodeTransport>(&loop_, *cluster_, atomix_cluster_secret, hooks);
    transport_->set_liveness(!kPlantPoisonedEntry);
    /* frames wait for the flushes in Worker::turn: one write per peer per
     * flush instead of one per Raft message */
    transport_->set_batching(true);
    /* pings and dead links are checked on the Raft tick (ticks.cpp) */
    transport_->set_external_liveness(true);
    /* digests come on links of their own, read at the tick (ticks.cpp):
     * an idle node wakes for its ticks only, not for each peer's digest */
    transport_->set_digest_links(true);
    transport_->start();
}

void Worker::on_frame(uint32_t peer, FrameType type, const char *data, size_t len)
{
    if (type != FrameType::Digest)
        unsettle();
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
            router_->on_forward(peer, data, len);
            return;
        case FrameType::ForwardReply:
            router_->on_forward_reply(peer, data, len);
            return;
        case FrameType::ReadConfirm:
        case FrameType::ReadConfirmAck:
        case FrameType::ReadIndexAsk:
        case FrameType::ReadIndexAnswer:
        case FrameType::VotePromise:
            reads_->on_frame(peer, type, data, len);
            return;
        case FrameType::Digest:
            on_digest(peer, data, len);
            return;
        default:
            return;
        }
    } catch (const std::exception &e) {
        fail(std::string("handling a frame from node ") + std::to_string(peer) + ": " + e.what());
    }
}

/* ---- RouterHost: the request router's view of this node ---- */

uint32_t Worker::self() const { return cluster_->self().id; }

uint32_t Worker::leader_of(int32_t partition)
{
    return (uint32_t)partitions_[(size_t)partition]->group->leader_id();
}

bool Worker::leads(int32_t partition)
{
    Partition &p = *partitions_[(size_t)partition];
    return !p.halted && p.group->is_leader();
}

bool Worker::send(uint32_t peer, FrameType type, const std::string &head, const std::string &body)
{
    return transport_ && transport_->send(peer, type, head.data(), head.size(), body.data(), body.size());
}

bool Worker::connected(uint32_t peer) { return transport_ && transport_->connected(peer); }

uint64_t Worker::link_generation(uint32_t peer) { return transport_ ? transport_->link_generation(peer) : 0; }

int64_t Worker::monotonic_us() { return mono_now_us(); }

int64_t Worker::unavailable_timeout_us() { return (int64_t)atomix_unavailable_timeout_ms * 1000; }

void Worker::fail_request(uint64_t request_id, RouteFailure why, const std::string &message)
{
    int code = why == RouteFailure::InDoubt ? REPLY_IN_DOUBT
               : why == RouteFailure::Refused ? REPLY_NOT_SUBMITTED
                                              : REPLY_UNAVAILABLE;
    resolve(request_id, code, 0, message);
}

/* Partition p's preferred leader is the first of its voters: hand
 * leadership back to it once it is connected and has been led elsewhere for
 * a while, so leaders stay spread evenly. */
void Worker::balance_leaders(int64_t now_us)
{
    if (!transport_)
        return;
    uint32_t self = cluster_->self().id;
    /* Leadership changes only in a group that was stirred, and this turn
     * polled those (group_polls.cpp); a transfer that waits only for time to
     * pass waits for the next tick turn, which polls every group. */
    bool pending = false;
    for (uint32_t i : polled_) {
        Partition *p = partitions_[i].get();
        bool leader = p->group->is_leader();
        if (leader && !p->was_leader) {
            p->leader_since_us = now_us;
            p->stats.elections_won++;
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
        pending = pending || preferred != self;
        if (preferred == self || !transport_->connected(preferred) ||
            now_us - p->leader_since_us < 3 * 1000000 || now_us - p->last_transfer_us < 5 * 1000000)
            continue;
        if (p->group->transfer_leadership(preferred))
            p->last_transfer_us = now_us;
    }
    /* a walk of every partition says whether any is left; a partial one can
     * only add one (ticks.cpp) */
    balance_pending_ = polled_.size() == partitions_.size() ? pending : balance_pending_ || pending;
}

} // namespace atomix
