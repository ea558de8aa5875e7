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
#include <unordered_set>
#include <vector>

#include "apply_txn.h"
#include "clock.h"
#include "cluster_config.h"
#include "node_transport.h"
#include "pg_storage.h"
#include "raft_group.h"
#include "read_index.h"
#include "request_queue.h"
#include "request_router.h"
#include "grant_gate.h"
#include "hibernation.h"
#include "session_registry.h"
#include "shmem.h"
#include "state_machine.h"

namespace atomix {

class Worker;

/* Raises the worker's soft open-files limit for this many partitions' Raft
 * logs, or warns when the hard limit is too low (open_files.cpp). */
void raise_open_files_limit(int partitions);

/* A partition whose apply failed retries after this, doubling up to the max. */
constexpr int64_t kHaltBackoffFirstUs = 1 * 1000000;
constexpr int64_t kHaltBackoffMaxUs = 60 * 1000000;
/* A failed Raft log write (a full disk, EIO) is usually transient: retry
 * sooner than an apply failure. */
constexpr int64_t kIoBackoffMaxUs = 8 * 1000000;
/* Work waiting for a partition with no applied progress for this long
 * (three election timeouts) makes it "stalled": logged, shown, and a leader
 * steps down. */
constexpr int64_t kStallAfterUs = 3 * 1000000;
/* ...checked this often (progress.cpp). */
constexpr int64_t kWatchEveryUs = 50 * 1000;
/* c-raft's timers (RaftGroupConfig's defaults), ticked from one timer
 * (ticks.cpp). */
constexpr unsigned kHeartbeatMs = 100;
constexpr unsigned kElectionTimeoutMs = 1000;
/* How stale the published status may get when no scan asks for it. */
constexpr int64_t kPublishIdleUs = 1000 * 1000;
/* ...and when every partition sleeps (quiet_turns.cpp): nothing in it moves
 * but the peers' last contact, and a scan still gets it fresh on demand */
constexpr int64_t kPublishQuietUs = 10 * 1000 * 1000;
/* One backend request, possibly fanned out to every partition. */
struct InFlight {
    uint32_t slot = 0;
    uint64_t ticket = 0;
    int parts_pending = 0;
    int code = 0; /* AtomixReplyCode; the first non-OK part wins */
    int64_t sum = 0;
    std::string message;
    /* a session-bound acquire (grant_gate.h): its session, partition, op */
    uint64_t session = 0;
    int32_t partition = -1;
    Op op = Op::Barrier;
};

/* An answer that grants something to a session, vetted before delivery. */
struct PendingGrant {
    size_t reply = 0; /* index in ready_ */
    uint64_t session = 0;
    int32_t partition = 0;
};

/* Where a partition's Raft group is in a halt-and-restart cycle. */
enum class GroupPhase {
    Running,
    Closing, /* halted: raft_close called, waiting for its callback */
    Stopped, /* halted: closed and released, restarted at restart_at_us */
};

/* A partition replica hosted by this worker. */
struct Partition {
    Partition(Worker *w, int32_t partition_id) : worker(w), id(partition_id), storage(partition_id), sm(storage) {}

    Worker *worker;
    int32_t id;
    PgStorage storage;
    StateMachine sm;
    struct raft_fsm fsm = {};
    RaftGroupConfig raft_config;
    std::unique_ptr<RaftGroup> group;
    bool tick_in_flight = false;
    bool was_leader = false;
    int64_t leader_since_us = 0;  /* monotonic */
    int64_t last_transfer_us = 0; /* monotonic */
    bool touched = false; /* applied something in this turn */

    /* A machine failure (an apply that raised, a Raft log write that
     * failed) halts this partition alone: its group is closed, and
     * restarted after a back-off, which re-applies from the failed entry. */
    bool halted = false;
    GroupPhase phase = GroupPhase::Running;
    int64_t restart_at_us = 0; /* monotonic */
    int64_t halted_at_us = 0;  /* monotonic */
    int64_t backoff_us = 0;
    uint64_t failed_index = 0; /* 0 once applied past it */
    std::string last_error;
    bool io_failure = false; /* the halt came from a log write: shorter back-off */
    bool waited_for_truncate = false; /* this halt's close waited for one (logged once) */

    /* progress watchdog (progress.cpp) */
    uint64_t progress_index = 0;
    int64_t progress_at_us = 0; /* monotonic */
    bool stalled = false;
    uint64_t stalls = 0;

    /* counters shown in atomix.partitions and atomix.stats */
    uint64_t apply_failures = 0;
    AtomixPartitionStats stats = {};
    /* proposals and log writes of the groups a halt retired */
    uint64_t retired_proposals = 0;
    uint64_t retired_log_writes = 0;
    uint64_t retired_raft_messages = 0;
    uint64_t retired_hibernations = 0;
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
/* RaftGroup's ProposeDone for every Proposal (worker.cpp) */
void proposal_cb(void *arg, int status, const char *errmsg);

class Worker : private ReadIndexHost {
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
    bool halted(const Partition &p) const { return p.halted; }

    /* A frame from a peer (node transport). */
    void on_frame(uint32_t peer, FrameType type, const char *data, size_t len);
    /* The Raft timer fired (ticks.cpp). */
    void tick_groups();

  private:
    bool wait_for_extension();
    void start_transport();
    /* RouterHost (forwarding.cpp): what the request router needs of this node */
    uint32_t self() const override;
    uint32_t leader_of(int32_t partition) override;
    bool leads(int32_t partition) override;
    bool send(uint32_t peer, FrameType type, const std::string &head, const std::string &body) override;
    bool connected(uint32_t peer) override;
    uint64_t link_generation(uint32_t peer) override;
    int64_t monotonic_us() override;
    int64_t unavailable_timeout_us() override;
    void fail_request(uint64_t request_id, RouteFailure why, const std::string &message) override;
    /* ReadIndexHost (reads.cpp): linearizable reads without a log write */
    bool leader_read_state(int32_t partition, uint64_t *term, uint64_t *commit_index) override;
    uint64_t current_term(int32_t partition) override;
    std::vector<uint32_t> voters(int32_t partition) override;
    void read_ready(uint64_t request_id) override;
    uint32_t vote_promise_ms(int32_t partition, uint32_t leader, uint64_t term) override;
    bool lease_allowed(int32_t partition, uint64_t term) override;
    int64_t lease_clock_us(int32_t partition) override;
    void reads_applied();
    /* read_leases.cpp: read leases in shared memory, for this node's backends */
    void clear_read_leases();
    void publish_read_leases();
    void publish_applied_leases();
    uint64_t reads_leased_locally(int32_t partition) const;
    void balance_leaders(int64_t now_us);
    void start_loop();
    void start_partitions();
    void turn(long timeout_ms);
    void queue_requests();
    void propose_queued(int64_t now_us);
    void expire_unavailable(int64_t mono_us);
    /* halted partitions (apply_guard.cpp) */
    void halt_partition(Partition &p, uint64_t index, const std::string &what,
                        const std::string &error);
    void maintain_halted(int64_t mono_us);
    void check_thread_pool_count();
    void answer_queued_of_halted(Partition &p);
    bool start_group(Partition &p);
    void start_first_group(Partition &p);
    void log_trimmed_segments(Partition &p);
    void apply_test_settings();
    void on_io_error(Partition &p, int status, const std::string &message);
    /* progress.cpp */
    void watch_progress(int64_t mono_us);
    void fail_waiting_of_stalled(Partition &p);
    std::string describe_replica(Partition &p);
    void finish_turn();
    /* writes the frames batched in the node transport (one write per peer) */
    void flush_transport();
    void publish_status(uint64_t generation);
    void shutdown();
    long next_timeout_ms(int64_t now_us);

    void resolve(uint64_t request_id, int code, int64_t value, const std::string &message);

    /* sessions.cpp */
    uint64_t propose_internal(int32_t partition, Command cmd); /* returns its request id */
    void maintain_sessions(int64_t now_us);
    void send_keep_alives(const SessionSnapshot &live, int64_t now_us, bool all);
    void track_wait(const TakenRequest &t, uint64_t request_id, int32_t partition);
    void cancel_abandoned_waits();
    void vet_grants();
    void close_unvouched(int32_t partition);
    void on_internal_result(uint64_t request_id, int code, int64_t value);

    /* ticks.cpp: one timer for every group's c-raft tick, and hibernation */
    void start_ticks();
    void set_tick_every(uint64_t ms);
    bool sleeps_through_tick();
    void group_woke();
    /* group_polls.cpp: busy turns poll only the groups something stirred */
    void group_stirred(uint32_t partition);
    void poll_groups();
    /* due_ticks.cpp */
    void propose_ticks(int64_t now_us);
    void lower_tick_due(Partition &p);
    void on_digest(uint32_t peer, const char *data, size_t len);
    void stop_ticks();

    /* quiet_turns.cpp: an idle worker's turns skip their per-partition walks */
    bool settled();
    void unsettle();

    /* request_ids.cpp: the origin bits of this life's request ids */
    void choose_incarnation();

    /* watch_notify.cpp */
    void notify_watchers();
    /* node id | 16 random bits per worker start | counter: unique across the
     * cluster and across restarts, so a replayed entry never answers a new
     * request.  The upper 32 bits are the request's origin, whose ids only
     * grow (src/core/request_origins.h): when the counter runs out, new
     * random bits make a new origin rather than wrapping below its floor. */
    uint64_t new_request_id()
    {
        if (request_counter_ >= 0xffffffffULL) {
            incarnation_ = (incarnation_ + 1 + (uint64_t)(unix_now_us() % 0xfffe)) & 0xffff;
            request_counter_ = 0;
        }
        return ((uint64_t)cluster_->self().id << 48) | ((incarnation_ & 0xffff) << 32) | ++request_counter_;
    }

    uv_loop_t loop_;
    struct WaitEventSet *wait_set_ = nullptr;
    std::vector<std::unique_ptr<Partition>> partitions_;
    std::unordered_map<uint64_t, std::shared_ptr<InFlight>> in_flight_;
    std::vector<SlotReply> ready_;
    std::vector<PendingGrant> grants_; /* among ready_ */
    GrantGate grant_gate_;
    std::vector<uint64_t> closed_sessions_; /* sink of the entry being applied */
    uint64_t stale_grants_refused_ = 0;
    std::vector<CommandResult> results_;
    ApplyTxn txn_;
    uint64_t incarnation_ = 0;
    std::unique_ptr<ClusterConfig> cluster_;
    std::unique_ptr<NodeTransport> transport_;
    /* queues, forwards and resends of every partition's commands */
    std::unique_ptr<RequestRouter> router_;
    /* linearizable reads: read indexes confirmed by a quorum */
    std::unique_ptr<ReadIndex> reads_;
    std::vector<AtomixReadLeaseView> published_leases_; /* per partition: what shared memory says */
    std::vector<int32_t> leased_parts_;                 /* partitions published with a lease */
    std::unique_ptr<Hibernation> hibernation_;
    uv_timer_t tick_timer_;
    bool tick_timer_started_ = false;
    uint64_t tick_every_ms_ = 0;
    std::vector<uint32_t> tick_peers_;
    std::vector<RaftGroup *> tick_groups_; /* scratch */
    bool woke_since_tick_ = false; /* a group woke after the last tick's count of sleepers */
    bool quiet_ = false;           /* this turn may skip the walks (quiet_turns.cpp) */
    /* group_polls.cpp: partitions whose group was stirred since it was
     * last polled; those this turn polled (every one on a tick turn) */
    std::vector<uint32_t> stirred_;
    std::vector<uint32_t> polling_; /* scratch */
    std::vector<uint32_t> polled_;
    /* due_ticks.cpp: no partition that may propose a tick has a deadline
     * before this (log time, µs) */
    int64_t next_tick_due_us_ = 0;
    /* apply_guard.cpp: a partition may be halted (set on every halt,
     * cleared by a walk that finds none) */
    bool halts_pending_ = false;
    bool thread_pool_checked_ = false; /* check_thread_pool_count() has run */
    bool ticked_ = false; /* this turn's tick ran: it walks every group */
    /* balance_leaders' last walk of every partition found one this node
     * leads while its preferred leader is another node (ticks.cpp) */
    bool balance_pending_ = true;
    int64_t quiet_deadline_us_ = INT64_MAX; /* while quiet: the earliest due tick (log time) */
    std::unordered_map<uint64_t, PendingWait> waits_;
    std::unordered_map<uint64_t, KeepAliveSent> keep_alives_;
    std::vector<char> had_sessions_; /* by partition, at the last keep-alive round */
    int64_t next_keep_alive_us_ = 0;
    bool epoch_announced_ = false;
    /* some partition had a session of this node at the last keep-alive
     * round: only then is the round's time worth waking for (sessions.cpp) */
    bool vouching_ = true;
    std::vector<WatchEvent> events_;
    uint64_t request_counter_ = 0;
    std::string fatal_;
    /* atomix.test_fail_apply, parsed at each reload */
    std::vector<std::unique_ptr<RaftGroup>> retired_groups_; /* halted groups: never freed */
    int64_t last_watch_us_ = 0; /* monotonic, the last watch_progress */
    int64_t last_publish_us_ = 0; /* monotonic, the last publish_status */
    uint64_t status_generation_ = 0; /* the last status generation published */
    int64_t resumed_at_us_ = 0; /* monotonic, when this worker last ran on after a pause */
    std::vector<int32_t> test_fail_apply_;
    bool test_fail_apply_all_ = false;
    /* atomix.test_hold_outbound, _inbound, test_fail_apply and
     * test_hold_release as last applied (-1: never) */
    std::string test_settings_last_[3];
    int test_hold_release_seen_ = -1;
};

/* mkdir -p of one level; EEXIST is fine (worker.cpp) */
void make_partition_dir(const std::string &path);

} // namespace atomix

#endif
