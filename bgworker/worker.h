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
#include "pg_storage.h"
#include "raft_group.h"
#include "request_queue.h"
#include "state_machine.h"

namespace atomix {

class Worker;

/* One backend request, possibly fanned out to every partition. */
struct InFlight {
    uint32_t slot = 0;
    uint64_t ticket = 0;
    int parts_pending = 0;
    int code = 0; /* AtomixReplyCode; the first non-OK part wins */
    int64_t sum = 0;
    std::string message;
};

struct QueuedCommand {
    uint64_t request_id;
    std::string encoded;
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
    std::vector<QueuedCommand> queued; /* waiting to be proposed */
    int64_t oldest_queued_us = 0;
    bool tick_in_flight = false;
    bool touched = false; /* applied something in this turn */
};

/* One proposed entry and the requests riding in it. */
struct Proposal {
    Partition *partition;
    std::vector<uint64_t> request_ids;
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

  private:
    bool wait_for_extension();
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
    uint64_t new_request_id() { return (incarnation_ << 32) | (++request_counter_ & 0xffffffffULL); }

    uv_loop_t loop_;
    struct WaitEventSet *wait_set_ = nullptr;
    std::vector<std::unique_ptr<Partition>> partitions_;
    std::unordered_map<uint64_t, std::shared_ptr<InFlight>> in_flight_;
    std::vector<SlotReply> ready_;
    std::vector<CommandResult> results_;
    ApplyTxn txn_;
    uint64_t incarnation_ = 0;
    uint64_t request_counter_ = 0;
    std::string fatal_;
};

} // namespace atomix

#endif
