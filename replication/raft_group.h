/*
 * raft_group.h — one partition's Raft group on this node.
 *
 * Owns the c-raft instance, its raft_uv I/O (the on-disk log under the
 * partition's directory) and its transport, and hides the c-raft 0.15 gaps
 * the rest of the worker must not care about:
 *   - no no-op entry on election: on becoming leader we append a barrier at
 *     once, so entries of older terms get committed and applied;
 *   - no state-change callback: poll() compares raft_state() after each
 *     loop turn;
 *   - raft_apply with several buffers calls back only for the first: we
 *     propose exactly one (packed) buffer per call.
 * Pure C++ over libuv and c-raft; nothing here calls Postgres.
 */
#ifndef ATOMIX_RAFT_GROUP_H
#define ATOMIX_RAFT_GROUP_H

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "append_vouching.h"
#include "raft_include.h"

namespace atomix {

struct GroupView; /* hibernation.h */

struct RaftMember {
    raft_id id;
    std::string address;
    int role; /* RAFT_VOTER or RAFT_STANDBY */
};

/* Ships one encoded raft message to a peer; false when it cannot now. */
typedef std::function<bool(uint32_t peer, uint32_t group, const std::string &encoded)> RaftSendFn;

struct RaftGroupConfig {
    uint32_t partition = 0;
    raft_id node_id = 1;
    std::string address;
    /* every member incl. this node; empty: a one-node group of this node */
    std::vector<RaftMember> members;
    RaftSendFn send; /* unused when there are no other members */
    /* A write of the on-disk log failed (status, raft_uv's message). */
    std::function<void(int status, const std::string &message)> on_io_error;
    unsigned election_timeout_ms = 1000;
    unsigned heartbeat_timeout_ms = 100;
    /* c-raft 0.15 sends a lagging follower one InstallSnapshot and waits
     * this long for its answer before sending it again (default 30 s): a
     * snapshot lost with a connection that broke (the follower restarting)
     * kept that follower from applying anything for 30 s. */
    unsigned install_snapshot_timeout_ms = 5000;
    std::string dir; /* must exist */
    unsigned snapshot_threshold = 4096;
    unsigned snapshot_trailing = 1024;
    size_t segment_size = 1024 * 1024;
    /* Tests only (test/unit/test_raft_group_faults): asked before each log
     * write; a nonzero RAFT_* status fails that write the way raft_uv fails
     * one (the callback, on a later loop turn, with that status). */
    std::function<int()> log_write_fault;
    /* Tests only: the same for storing a snapshot received from the leader
     * (an InstallSnapshot). */
    std::function<int()> snapshot_install_fault;
    /* The owner runs c-raft's timer itself (tick(), hibernation.h: one timer
     * for every group, and idle groups skip it); raft_uv's own per-group
     * timer is then left idle.  Off: raft_uv ticks every heartbeat_timeout. */
    bool tick_externally = false;
    /* Called when the group wakes from hibernation (its owner ticks it
     * every heartbeat again). */
    std::function<void()> on_wake;
    /* Called when something may have moved this group since its last
     * poll() — a peer's message, a send, a log write or snapshot store
     * queued or completing, a tick, a wake, a proposal, a transfer, a start
     * — once until the next poll().  Every change poll() looks for comes
     * through one of these, so an owner may poll only the groups it heard
     * of (and all of them now and then, to be safe). */
    std::function<void()> on_stir;
};

/* raft_uv writes entry batches assuming every buffer length is a multiple
 * of 8 (only an assert, compiled out in Debian's build): an unpadded buffer
 * silently corrupts the segment read back after a restart.  Every buffer we
 * hand to c-raft — entries and snapshots — is zero-padded to this size; the
 * codec ignores the trailing zeros. */
inline size_t padded_size(size_t len) { return (len + 7) & ~static_cast<size_t>(7); }

/* Called once per proposal: status 0 once applied, else a RAFT_* error. */
typedef void (*ProposeDone)(void *arg, int status, const char *errmsg);

class RaftGroup {
  public:
    RaftGroup(uv_loop_t *loop, const RaftGroupConfig &config, struct raft_fsm *fsm);
    RaftGroup(const RaftGroup &) = delete;
    RaftGroup &operator=(const RaftGroup &) = delete;
    struct AppendBatch; /* raft_log_io.cpp */

    /* Bootstraps the group (the same configuration on every member) on first
     * start, then starts it.  Throws std::runtime_error on failure. */
    void start();
    /* Open segments start() trimmed so raft_uv could load them (segment_repair.h). */
    const std::vector<std::string> &trimmed_segments() const { return trimmed_segments_; }

    /* c-raft's periodic tick (heartbeats, election and step-down timers),
     * unless hibernating; only with config.tick_externally. */
    void tick();
    /* Hibernation (hibernation.h): no ticks until woken.  wake() restarts
     * c-raft's election timer (a follower's; a leader's contact-quorum
     * window) at `since_ms` on the loop's clock.  A Raft message from a peer,
     * a proposal or a transfer wakes the group by itself. */
    void hibernate()
    {
        if (!hibernating_)
            hibernations_++;
        hibernating_ = true;
    }
    uint64_t hibernations() const { return hibernations_; }
    void wake(uint64_t since_ms);
    bool hibernating() const { return hibernating_; }
    /* What hibernation decides on (and tells peers of). */
    void view(struct GroupView *out);
    bool has_member(uint32_t node) const;
    /* Raft messages c-raft sent (heartbeats included). */
    uint64_t messages_sent() const { return messages_sent_; }

    /* A raft message for this group arrived from a peer. */
    void deliver(uint32_t from, const std::string &from_address, const char *data, size_t len);

    /* Asks c-raft to hand leadership to `node` (must be a caught-up voter).
     * False if a transfer is already under way or c-raft refused. */
    bool transfer_leadership(uint32_t node);
    /* The last term in which this node asked for a transfer (0: never).  A
     * transfer's TimeoutNow lets its target be elected at once, past every
     * follower's promise, so a leader holds no read lease for the rest of
     * such a term (read_index.h). */
    uint64_t transfer_term() const { return transfer_term_; }

    /* Read leases, follower side (docs/architecture.md, "Read leases").
     * Following `leader` in `term`, this replica grants no vote and stands
     * in no election until its election timer expires: c-raft refuses every
     * vote while it knows a leader (has_leader in recv_request_vote.c,
     * unless a transfer's disrupt_leader) and becomes a candidate only once
     * randomized_election_timeout >= election_timeout has passed since
     * election_timer_start.  Returns how many ms from `now_ms` (CLOCK_MONOTONIC,
     * read fresh by the caller) that is certain, 0 when nothing is.  A
     * sleeping group's timer is frozen and restarts on waking from no
     * earlier than `vouched_ms`, when its leader last vouched for it
     * (hibernation.h), nor than where it stood (wake()). */
    uint64_t vote_promise_ms(uint32_t leader, uint64_t term, uint64_t vouched_ms, uint64_t now_ms);
    /* Votes this group did not let c-raft see: requests without
     * disrupt_leader within an election timeout of start() (see deliver()). */
    uint64_t votes_withheld() const { return votes_withheld_; }
    void transfer_finished(struct raft_transfer *req);

    bool is_leader();
    uint64_t term() { return raft_.current_term; }
    int state() { return started_ && !closing_ && !closed_ ? raft_state(&raft_) : RAFT_UNAVAILABLE; }
    uint64_t leader_id()
    {
        raft_id id = 0;
        const char *address = nullptr;
        if (started_ && !closing_ && !closed_)
            raft_leader(&raft_, &id, &address);
        return id;
    }
    uint64_t last_index() { return started_ && !closing_ && !closed_ ? raft_last_index(&raft_) : 0; }
    /* When leading: the replicated index c-raft tracks for `node`, else 0. */
    uint64_t match_index(uint32_t node)
    {
        if (!is_leader() || !raft_.leader_state.progress)
            return 0;
        for (unsigned i = 0; i < raft_.configuration.n; i++)
            if (raft_.configuration.servers[i].id == node)
                return raft_.leader_state.progress[i].match_index;
        return 0;
    }
    uint64_t commit_index() { return raft_.commit_index; }
    /* Leading, with an entry of the current term committed (the barrier
     * poll() appends on election): only then does the commit index cover
     * everything earlier leaders committed, and may serve as a read index
     * (read_index.h). */
    bool read_index_state(uint64_t *term, uint64_t *commit)
    {
        if (!is_leader() || term_start_index_ == 0 || raft_.current_term != leader_term_ ||
            raft_.commit_index < term_start_index_)
            return false;
        *term = raft_.current_term;
        *commit = raft_.commit_index;
        return true;
    }
    uint64_t last_applied() { return raft_last_applied(&raft_); }
    /* The index of the entry the FSM is being asked to apply right now. */
    uint64_t applying_index() { return raft_last_applied(&raft_) + 1; }

    /* Proposes one packed entry (copied into a raft buffer).  Returns 0, or
     * a RAFT_* code when it failed at once (done is then not called). */
    int propose(const std::string &entry, ProposeDone done, void *arg);

    /* After each loop turn: notices leadership changes, advances and
     * announces the commit index, completes sends.  A group not stirred
     * since its last poll (config.on_stir) has nothing for it to do. */
    void poll();
    bool stirred() const { return stirred_; }
    /* raft_uv still has work of this group in flight (a log write or a
     * snapshot being stored).  raft_uv 0.15 may report itself closed before
     * such work finishes, and its callback then runs on a closed c-raft
     * (double frees): close a group only when this is false. */
    bool io_busy() const;
    /* raft_uv may be running a truncate of this group's log in libuv's
     * thread pool right now.  raft_uv 0.15 frees a truncate request that
     * is still running if it is closed then (thread_pool_work.h), so
     * close a group only when this is false.  A truncate is settled by the
     * next successful append (raft_uv writes nothing until its truncate is
     * done) or, when none comes (the append after it failed), by a moment
     * with no thread-pool work in flight on the loop. */
    bool truncate_in_doubt() const;
    /* A halted group hears no more peers (no more appends to fail) while
     * it waits to be closed. */
    void quiesce() { quiet_ = true; }
    /* Age of the oldest log write still in progress, in ms (0: none). */
    uint64_t oldest_append_ms() const;
    /* Times advance_commit() committed what c-raft's own rule starved. */
    uint64_t commits_unstuck() const { return commits_unstuck_; }
    /* Snapshot loads refused because there is no snapshot to send (see
     * io_snapshot_get). */
    uint64_t snapshot_gets_refused() const { return snapshot_gets_refused_; }
    /* Entries proposed by this node, and log writes (appends, each made
     * durable before it completes) handed to raft_uv. */
    uint64_t proposals() const { return proposals_; }
    uint64_t log_writes() const { return log_writes_; }
    /* Failed log writes kept from c-raft (see io_append_done). */
    uint64_t appends_withheld() const { return appends_withheld_; }
    /* Snapshots from the leader this group failed to store. */
    uint64_t installs_failed() const { return installs_failed_; }
    /* A log write of this group failed: it is waiting to be closed. */
    bool io_failed() const { return io_failed_; }

    /* Starts closing; closed() turns true once c-raft has stopped.  Then,
     * after running the loop until it is idle, release() frees the I/O. */
    void close();
    bool closed() const { return closed_; }
    bool started() const { return started_; }
    void release();

    const char *errmsg() { return raft_errmsg(&raft_); }
    uint32_t partition() const { return config_.partition; }

  private:
    static void on_closed(struct raft *r);
    static void io_close_once(struct raft_io *io, void (*cb)(struct raft_io *));
    static void io_closed(struct raft_io *io);
    static int io_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
                        raft_io_recv_cb recv);
    static void io_uv_tick(struct raft_io *io);
    static int io_send(struct raft_io *io, struct raft_io_send *req,
                       const struct raft_message *message, raft_io_send_cb cb);
    static RaftGroup *of(struct raft_io *io);
    /* see RaftGroupConfig::on_stir */
    void stir()
    {
        if (stirred_)
            return;
        stirred_ = true;
        if (config_.on_stir)
            config_.on_stir();
    }
    void flush_send_completions();
    void announce_commit();
    void advance_commit();
    /* What advance_commit and announce_commit read, while leading: when it
     * has not moved since they last ran, poll() skips them. */
    struct LeaderProgress {
        static constexpr unsigned kMaxMembers = 16;
        bool comparable = false; /* false: not leading, or too many members to keep */
        uint64_t term = 0, term_start = 0, commit = 0, last_stored = 0;
        unsigned members = 0;
        /* only the first `members` are set (no zeroing: every poll builds one) */
        raft_id ids[kMaxMembers];
        int roles[kMaxMembers];
        uint64_t match[kMaxMembers];
        bool operator==(const LeaderProgress &o) const
        {
            if (!comparable || !o.comparable || term != o.term || term_start != o.term_start ||
                commit != o.commit || last_stored != o.last_stored || members != o.members)
                return false;
            for (unsigned i = 0; i < members; i++)
                if (ids[i] != o.ids[i] || roles[i] != o.roles[i] || match[i] != o.match[i])
                    return false;
            return true;
        }
    };
    LeaderProgress leader_progress() const;
    LeaderProgress last_progress_;
    /* raft_log_io.cpp: log writes to raft_uv one at a time */
    struct LogOp {
        enum Kind { Append, Truncate, SnapshotPut } kind = Append;
        struct raft_io_append *req = nullptr;
        const struct raft_entry *entries = nullptr;
        unsigned n = 0;
        raft_io_append_cb cb = nullptr;
        raft_index index = 0; /* truncate */
        unsigned trailing = 0;
        struct raft_io_snapshot_put *put = nullptr;
        const struct raft_snapshot *snapshot = nullptr;
        raft_io_snapshot_put_cb put_cb = nullptr;
        uint64_t queued_ms = 0; /* uv_now */
    };
    void pump_log_ops();
    void start_append(AppendBatch *batch);
    void start_snapshot_put(const LogOp &op);
    static int io_truncate(struct raft_io *io, raft_index index);
    static int io_append(struct raft_io *io, struct raft_io_append *req,
                         const struct raft_entry entries[], unsigned n, raft_io_append_cb cb);
    static void io_append_done(struct raft_io_append *req, int status);
    void flush_injected_write_faults();
    void fail_io(int status, const std::string &message);
    static int io_snapshot_get(struct raft_io *io, struct raft_io_snapshot_get *req,
                               raft_io_snapshot_get_cb cb);
    static int io_snapshot_put(struct raft_io *io, unsigned trailing, struct raft_io_snapshot_put *req,
                               const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb);
    static void io_snapshot_put_done(struct raft_io_snapshot_put *req, int status);
    void skip_compacted_entries(struct raft_append_entries &ae);
    bool withhold_vote_request(const struct raft_request_vote &rv) const;

    RaftGroupConfig config_;
    uv_loop_t *loop_;
    struct raft_fsm *fsm_;
    struct raft raft_;
    struct raft_io io_;
    struct raft_uv_transport transport_;
    bool started_ = false;
    bool was_leader_ = false;
    bool closing_ = false; /* raft_close called */
    bool closed_ = false;
    bool released_ = false;
    /* see io_close_once() */
    void (*uv_close_)(struct raft_io *, void (*)(struct raft_io *)) = nullptr;
    void (*raft_close_cb_)(struct raft_io *) = nullptr;
    bool io_close_fired_ = false;
    /* see io_start() / io_send() */
    int (*uv_start_)(struct raft_io *, unsigned, raft_io_tick_cb, raft_io_recv_cb) = nullptr;
    raft_io_recv_cb recv_cb_ = nullptr;
    int (*uv_append_)(struct raft_io *, struct raft_io_append *, const struct raft_entry[], unsigned,
                      raft_io_append_cb) = nullptr;
    int (*uv_snapshot_get_)(struct raft_io *, struct raft_io_snapshot_get *,
                            raft_io_snapshot_get_cb) = nullptr;
    int (*uv_snapshot_put_)(struct raft_io *, unsigned, struct raft_io_snapshot_put *,
                            const struct raft_snapshot *, raft_io_snapshot_put_cb) = nullptr;
    int (*uv_truncate_)(struct raft_io *, raft_index) = nullptr;
    std::deque<LogOp> log_ops_;      /* waiting for the write before them */
    bool log_op_in_flight_ = false; /* an append or snapshot put is in raft_uv */
    bool io_failed_ = false;        /* raft_uv failed a log write: refuse more */
    bool truncate_unsettled_ = false; /* see truncate_in_doubt() */
    uint64_t snapshot_gets_refused_ = 0;
    uint64_t appends_withheld_ = 0;
    uint64_t proposals_ = 0;
    uint64_t log_writes_ = 0;
    uint64_t installs_failed_ = 0;
    struct InjectedWriteFault {
        struct raft_io_append *req;
        int status;
    };
    std::vector<InjectedWriteFault> injected_write_faults_; /* see log_write_fault */
    struct InjectedInstallFault {
        struct raft_io_snapshot_put *req;
        int status;
    };
    std::vector<InjectedInstallFault> injected_install_faults_; /* see snapshot_install_fault */
    bool quiet_ = false;            /* see quiesce() */
    uint64_t term_start_index_ = 0; /* first entry of our term while leading */
    uint64_t leader_term_ = 0;
    uint64_t commits_unstuck_ = 0;
    raft_io_tick_cb tick_cb_ = nullptr;
    bool hibernating_ = false;
    bool stirred_ = false; /* see stir() */
    uint64_t hibernations_ = 0;
    uint64_t messages_sent_ = 0;
    std::vector<std::string> trimmed_segments_;
    uint64_t announced_commit_ = 0;
    std::map<raft_id, uint64_t> announced_match_;
    struct SendCompletion {
        struct raft_io_send *req;
        raft_io_send_cb cb;
        int status;
    };
    std::vector<SendCompletion> send_completions_;
    AppendVouching vouching_; /* clamps our AppendEntries answers (append_vouching.h) */
    struct raft_transfer *transfer_ = nullptr;
    uint64_t transfer_term_ = 0;  /* see transfer_term() */
    uint64_t started_mono_ms_ = 0; /* CLOCK_MONOTONIC at start(): see deliver() */
    uint64_t votes_withheld_ = 0;
};

} // namespace atomix

#endif
