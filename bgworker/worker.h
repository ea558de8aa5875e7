/*
 * worker.h — the raft worker: one background worker per server that hosts
 * every local partition replica.
 *
 * Each loop turn: wait on latch + postmaster death + libuv's backend fd;
 * take the requests backends queued; pack them per partition into one Raft
 * entry each and propose them on partitions this node leads; run libuv once
 * (c-raft persists, commits and hands committed entries to the state
 * machines, which write the partition tables inside the turn's transaction);
 * commit that transaction; then wake the callers whose commands were applied.
 */
#ifndef ATOMIX_WORKER_H
#define ATOMIX_WORKER_H

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "apply_txn.h"
#include "cluster_config.h"
#include "node_transport.h"
#include "pg_storage.h"
#include "raft_group.h"
#include "request_queue.h"
#include "session_registry.h"
#include "state_machine.h"

namespace atomix {

class Worker;

/* ForwardReply outcomes (leader → origin). */
constexpr uint8_t kForwardNotLeader = 1; /* never appended: resend as is */
constexpr uint8_t kForwardRetry = 2;     /* appended, leadership lost: resend as a retry */
/* A forwarded command with no outcome after this long is resent as a retry. */
constexpr int64_t kForwardRetryAfterUs = 3 * 1000000;
/* One backend request, possibly fanned out to every partition. */
struct InFlight {
    uint32_t slot = 0;
    uint64_t ticket = 0;
    int parts_pending = 0;
    int code = 0; /* AtomixReplyCode; the first non-OK part wins */
    int64_t sum = 0;
    std::string message;
};

/* A command waiting to be proposed by this node or forwarded to the
 * partition's leader.  origin is the node whose backend waits for it (this
 * node, or the node that forwarded it here). */
struct QueuedCommand {
    uint64_t request_id = 0;
    std::string encoded;
    uint32_t origin = 0;
    int64_t deadline_us = 0; /* fail with "unavailable" after this */
};

/* A command this node forwarded to another node's leader and still waits
 * for (it resolves when this node applies the entry itself). */
struct ForwardedCommand {
    int32_t partition = 0;
    QueuedCommand command;
    int64_t sent_us = 0;
    uint32_t leader = 0; /* the node it was sent to */
};

/* A partition replica hosted by this worker. */
struct Partition {
    Partition(Worker *w, int32_t partition_id) : worker(w), id(partition_id), storage(partition_id), sm(storage) {}

    Worker *worker;
    int32_t id;
    PgStorage storage;
    StateMachine sm;
    struct raft_fsm fsm = {};
    std::unique_ptr<RaftGroup> group;
    std::vector<QueuedCommand> queued; /* waiting to be proposed or forwarded */
    bool tick_in_flight = false;
    bool was_leader = false;
    int64_t leader_since_us = 0;
    int64_t last_transfer_us = 0;
    bool touched = false; /* applied something in this turn */
};

/* A backend waiting for a lock or permits: if it stops waiting (cancel,
 * statement_timeout), `cancel` takes its waiter out of the queue. */
struct PendingWait {
    uint32_t slot = 0;
    uint64_t ticket = 0;
    int32_t partition = 0;
    Command cancel;
};

/* A keep-alive in flight: once applied, the partition renewed this node's
 * lease as of `sent_us` (or later). */
struct KeepAliveSent {
    int32_t partition = 0;
    int64_t sent_us = 0;
};

/* One proposed entry and the requests riding in it. */
struct Proposal {
    Partition *partition;
    std::vector<QueuedCommand> commands;
    bool is_tick = false;
};

class Worker {
  public:
    /* Runs until SIGTERM; throws on unrecoverable errors (the worker then
     * exits and is restarted, replaying the Raft log). */
    void run();

    /* Callbacks from c-raft (through the fsm adapters). */
    void apply_entry(Partition &p, const void *data, size_t len);
    std::string snapshot(Partition &p);
    void restore(Partition &p, const void *data, size_t len);
    void proposal_done(Proposal *proposal, int status, const char *errmsg);
    void fail(const std::string &message) { if (fatal_.empty()) fatal_ = message; }

    /* A frame from a peer (node transport). */
    void on_frame(uint32_t peer, FrameType type, const char *data, size_t len);

  private:
    bool wait_for_extension();
    void start_transport();
    void enqueue(Partition &p, QueuedCommand command);
    void forward_queued(Partition &p, int64_t now_us);
    void handle_forward(uint32_t peer, const char *data, size_t len);
    void handle_forward_reply(uint32_t peer, const char *data, size_t len);
    void reply_to_origin(const QueuedCommand &command, int partition, uint8_t outcome);
    void retry(int32_t partition, QueuedCommand command);
    void retry_stalled_forwards(int64_t now_us);
    void balance_leaders(int64_t now_us);
    void start_loop();
    void start_partitions();
    void turn(long timeout_ms);
    void queue_requests();
    void propose_queued(int64_t now_us);
    void propose_ticks(int64_t now_us);
    void expire_unavailable(int64_t now_us);
    void finish_turn();
    void publish_status();
    void shutdown();
    long next_timeout_ms(int64_t now_us);

    void resolve(uint64_t request_id, int code, int64_t value, const std::string &message);

    /* sessions.cpp */
    uint64_t propose_internal(int32_t partition, Command cmd); /* returns its request id */
    void maintain_sessions(int64_t now_us);
    void send_keep_alives(const SessionSnapshot &live, int64_t now_us, bool all);
    void track_wait(const TakenRequest &t, uint64_t request_id, int32_t partition);
    void cancel_abandoned_waits();
    void on_internal_result(uint64_t request_id, int code, int64_t value);

    /* watch_notify.cpp */
    void notify_watchers();
    /* node id | 16 random bits per worker start | counter: unique across the
     * cluster and across restarts, so a replayed entry never answers a new
     * request */
    uint64_t new_request_id()
    {
        return ((uint64_t)cluster_->self().id << 48) | ((incarnation_ & 0xffff) << 32) |
               (++request_counter_ & 0xffffffffULL);
    }

    uv_loop_t loop_;
    struct WaitEventSet *wait_set_ = nullptr;
    std::vector<std::unique_ptr<Partition>> partitions_;
    std::unordered_map<uint64_t, std::shared_ptr<InFlight>> in_flight_;
    std::vector<SlotReply> ready_;
    std::vector<CommandResult> results_;
    ApplyTxn txn_;
    uint64_t incarnation_ = 0;
    std::unique_ptr<ClusterConfig> cluster_;
    std::unique_ptr<NodeTransport> transport_;
    std::unordered_map<uint64_t, ForwardedCommand> forwarded_;
    std::unordered_map<uint64_t, PendingWait> waits_;
    std::unordered_map<uint64_t, KeepAliveSent> keep_alives_;
    std::vector<char> had_sessions_; /* by partition, at the last keep-alive round */
    int64_t next_keep_alive_us_ = 0;
    bool epoch_announced_ = false;
    std::vector<WatchEvent> events_;
    uint64_t request_counter_ = 0;
    std::string fatal_;
};

} // namespace atomix

#endif
