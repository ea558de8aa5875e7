/*
 * request_router.h — where a node's commands wait and how they reach their
 * partition's leader: the queue per partition, packing queued commands into
 * entries on partitions this node leads, forwarding them to the leader
 * elsewhere, answers from leaders, resends after a leader change or a lost
 * connection, and the deadlines of all of it.
 *
 * Postgres-free, so the same code runs in the raft worker (bgworker/) and in
 * the deterministic simulation (test/unit/test_simulation.cpp), where a
 * seeded scheduler delays, duplicates, reorders and cuts the frames it sends.
 * Everything it needs from the node it runs on — leadership, the transport,
 * the clock, answering this node's callers — comes through RouterHost.
 *
 * The rules (why each is safe is in docs/architecture.md, "Forwarding"):
 *   - The node a request came in on applies the entry itself and answers its
 *     caller from that apply; a leader reports back only what went wrong:
 *     "not leader" (never appended: resend as is) and "leadership lost"
 *     (maybe appended: resend as a retry, answered from its recorded outcome if
 *     the first attempt committed).
 *   - A forward is resent only when that can help: its connection is gone
 *     (a new link generation) or the partition has a new leader.  Never on a
 *     timer over the connection it still waits on: a stuck link delivers the
 *     first copy late, and a copy would only add a duplicate.
 *   - A leader drops a forwarded id it already holds queued or in a proposal
 *     (two copies in one entry would record one request id twice).
 */
#ifndef ATOMIX_REQUEST_ROUTER_H
#define ATOMIX_REQUEST_ROUTER_H

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "codec.h"
#include "node_transport.h"

namespace atomix {

/* ForwardReply outcomes (leader → origin). */
constexpr uint8_t kForwardNotLeader = 1; /* never appended: resend as is */
constexpr uint8_t kForwardRetry = 2;     /* appended, leadership lost: resend as a retry */

/* Largest entry the router packs (one command may exceed it alone). */
constexpr size_t kMaxEntryBytes = 4 * 1024 * 1024;

/* A command waiting to be proposed by this node or forwarded to the
 * partition's leader.  origin is the node whose caller waits for it (this
 * node, or the node that forwarded it here). */
struct QueuedCommand {
    uint64_t request_id = 0;
    std::string encoded;
    uint32_t origin = 0;
    int64_t queued_us = 0;   /* monotonic: when this node took it */
    int64_t deadline_us = 0; /* monotonic: fail with "unavailable" after this */

    /* Resent with the retry flag: an earlier copy may be in the log, so a
     * failure now is "in doubt" (40003), not "not applied" (57P03). */
    bool maybe_applied() const
    {
        return encoded.size() > kCommandFlagsOffset &&
               (static_cast<uint8_t>(encoded[kCommandFlagsOffset]) & kFlagRetry);
    }
};

/* A command this node forwarded to another node's leader and still waits
 * for (it resolves when this node applies the entry itself). */
struct ForwardedCommand {
    int32_t partition = 0;
    QueuedCommand command;
    uint32_t leader = 0; /* the node it was sent to */
    uint64_t link = 0;   /* the transport's link generation to it then */
    int64_t sent_us = 0; /* monotonic */
};

/* How a command of this node's own caller ended without being applied here. */
enum class RouteFailure {
    NotApplied, /* never appended anywhere: 57P03 */
    InDoubt,    /* may have been appended: 40003 */
    Refused,    /* Raft refused to take it (not a leadership change) */
};

class RouterHost {
  public:
    virtual ~RouterHost() = default;
    virtual uint32_t self() const = 0;
    /* 0 when no leader is known */
    virtual uint32_t leader_of(int32_t partition) = 0;
    /* leads the partition and is not halted */
    virtual bool leads(int32_t partition) = 0;
    virtual bool send(uint32_t peer, FrameType type, const std::string &head, const std::string &body) = 0;
    virtual bool connected(uint32_t peer) = 0;
    virtual uint64_t link_generation(uint32_t peer) = 0;
    virtual int64_t monotonic_us() = 0;
    virtual int64_t unavailable_timeout_us() = 0;
    /* answers this node's caller of `request_id` (never another node's) */
    virtual void fail_request(uint64_t request_id, RouteFailure why, const std::string &message) = 0;
};

/* Appends an entry to the partition's log (leader only).  On success the
 * function takes the commands (they ride in its proposal and come back
 * through proposal_done); otherwise it leaves them and says why. */
enum class ProposeResult { Proposed, NotLeader, Refused };
using ProposeFn = std::function<ProposeResult(int32_t partition, const std::string &entry,
                                              std::vector<QueuedCommand> &commands, std::string &why)>;

class RequestRouter {
  public:
    RequestRouter(RouterHost &host, size_t partitions);

    /* A command for `partition`: from this node's caller, from a peer, or a
     * resend. */
    void submit(int32_t partition, QueuedCommand command);

    /* Leader here: pack what is queued into entries (stamped stamp_us) and
     * propose them.  Not leader: forward this node's commands to the leader
     * and tell other nodes' commands to look elsewhere. */
    void propose_or_forward(int32_t partition, int64_t stamp_us, const ProposeFn &propose);

    /* A proposal ended.  Not ok: leadership was lost (or the log write
     * failed) after the entry was appended, so a later leader may still
     * commit it — this node's commands are resent as retries, other nodes'
     * are told to do so. */
    void proposal_done(int32_t partition, std::vector<QueuedCommand> &commands, bool ok);

    /* Frames from peers. */
    void on_forward(uint32_t peer, const char *data, size_t len);
    void on_forward_reply(uint32_t peer, const char *data, size_t len);

    /* Every turn: resends forwards whose connection is gone or whose
     * partition has a new leader, and fails what waited past its deadline. */
    void resend_stalled();
    void expire(int64_t mono_now_us);

    /* This node applied the request (it is answered, or now waits inside the
     * partition): no forward of it is pending any more. */
    void applied(uint64_t request_id);

    /* The lowest id of this node's commands for `partition` the router still
     * holds (queued, in a proposal or forwarded), or 0: below it this node
     * sends nothing again.  Stamped into every command this node proposes
     * or forwards (src/core/request_origins.h). */
    uint64_t floor(int32_t partition) const
    {
        const std::set<uint64_t> &held = parts_[(size_t)partition].held;
        return held.empty() ? 0 : *held.begin();
    }

    /* This node's replica of `partition` was replaced by a snapshot: the
     * entries it covers were never applied here, so the callers of forwards
     * they carried would wait in vain.  answered(id) looks the id up in the
     * restored outcomes and, if it is there, answers the caller (true).
     * Barriers (reads) are resent: one more changes nothing. */
    void restored(int32_t partition, const std::function<bool(uint64_t)> &answered);

    /* The partition is halted here: answer everything waiting for it. */
    void fail_all(int32_t partition, const std::string &why);
    /* This node's callers that have waited since `since_us` or earlier on a
     * partition that makes no progress (awaited: the id has a caller). */
    void fail_waiting_since(int32_t partition, int64_t since_us, const std::string &why,
                            const std::function<bool(uint64_t)> &awaited);

    /* commands queued, in proposals, or forwarded from here */
    size_t waiting(int32_t partition) const;
    bool has_queued(int32_t partition) const { return !parts_[(size_t)partition].queued.empty(); }
    /* nothing queued, in a proposal or forwarded from here, anywhere */
    bool idle() const;
    /* earliest deadline of anything waiting (monotonic), or INT64_MAX */
    int64_t next_deadline_us() const;
    uint64_t resends(int32_t partition) const { return parts_[(size_t)partition].resends; }
    uint64_t duplicates_dropped(int32_t partition) const
    {
        return parts_[(size_t)partition].duplicates_dropped;
    }
    /* commands this node forwarded to a leader elsewhere (resends included),
     * and commands of other nodes it took as the leader */
    uint64_t forwarded(int32_t partition) const { return parts_[(size_t)partition].forwarded; }
    uint64_t forwards_taken(int32_t partition) const { return parts_[(size_t)partition].forwards_taken; }

  private:
    struct PartitionQueue {
        std::vector<QueuedCommand> queued;
        std::unordered_multiset<uint64_t> proposing; /* ids in proposals not yet done */
        /* this node's own ids, from submit until applied here or failed */
        std::set<uint64_t> held;
        uint64_t resends = 0;            /* forwards this node resent */
        uint64_t duplicates_dropped = 0; /* copies dropped here while leading */
        uint64_t forwarded = 0;
        uint64_t forwards_taken = 0;
    };

    void forward_queued(int32_t partition);
    void propose_queued(int32_t partition, int64_t stamp_us, const ProposeFn &propose);
    void reply_to_origin(const QueuedCommand &command, int32_t partition, uint8_t outcome);
    void retry(int32_t partition, QueuedCommand command);
    /* this node's command leaves for good: answered as failed */
    void fail_own(int32_t partition, uint64_t request_id, RouteFailure why, const std::string &message);
    void stamp_floor(int32_t partition, QueuedCommand &command);

    RouterHost &host_;
    std::vector<PartitionQueue> parts_;
    std::unordered_map<uint64_t, ForwardedCommand> forwarded_;
};

} // namespace atomix

#endif
