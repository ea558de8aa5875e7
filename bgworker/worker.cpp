/*
 * worker.cpp — the raft worker's life: startup, the loop turn, shutdown
 * (overview in worker.h).
 */
extern "C" {
#include "postgres.h"
#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/wait_event.h"
}

#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "clock.h"
#include "codec.h"
#include "guc.h"
#include "le_bytes.h"
#include "pg_bridge.h"
#include "shmem.h"
#include "thread_pool_work.h"
#include "worker.h"

namespace atomix {

static volatile sig_atomic_t got_sigterm = false;

static void handle_sigterm(SIGNAL_ARGS)
{
    int save_errno = errno;
    got_sigterm = true;
    SetLatch(MyLatch);
    errno = save_errno;
}

/* Soft cap on one packed entry; a single larger command still goes alone. */
/* Raft segment preallocation per partition (c-raft's default is 8 MiB). */
static constexpr size_t kSegmentSize = 1024 * 1024;

/* ---- c-raft FSM adapters: the callback boundary. Nothing may escape. ---- */

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    Partition *p = static_cast<Partition *>(fsm->data);
    *result = nullptr;
    try {
        p->worker->apply_entry(*p, buf->base, buf->len);
    } catch (const std::exception &e) {
        p->worker->fail(std::string("applying an entry of partition ") + std::to_string(p->id) +
                        " failed: " + e.what());
    }
    return 0; /* non-zero would stall the group for good */
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    Partition *p = static_cast<Partition *>(fsm->data);
    /* c-raft snapshots at its last_applied, which has moved past entries a
     * halted partition did not apply: no snapshot may cover them.
     * RAFT_BUSY makes c-raft skip this one and try again later. */
    if (p->worker->halted(*p))
        return RAFT_BUSY;
    try {
        std::string snap = p->worker->snapshot(*p);
        struct raft_buffer *out = static_cast<struct raft_buffer *>(raft_malloc(sizeof(*out)));
        if (!out)
            return RAFT_NOMEM;
        out->len = padded_size(snap.size());
        out->base = raft_malloc(out->len);
        if (!out->base) {
            raft_free(out);
            return RAFT_NOMEM;
        }
        memcpy(out->base, snap.data(), snap.size());
        memset(static_cast<char *>(out->base) + snap.size(), 0, out->len - snap.size());
        *bufs = out;
        *n_bufs = 1;
        return 0;
    } catch (const std::exception &e) {
        /* c-raft skips this snapshot and tries again later */
        ereport(WARNING, (errmsg("atomix: snapshot of partition %d failed: %s (retried later)",
                                 p->id, e.what())));
        return RAFT_BUSY;
    }
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    Partition *p = static_cast<Partition *>(fsm->data);
    try {
        p->worker->restore(*p, buf->base, buf->len);
    } catch (const std::exception &e) {
        p->worker->fail(std::string("restoring partition ") + std::to_string(p->id) +
                        " from a snapshot failed: " + e.what());
    }
    raft_free(buf->base);
    return 0;
}

/* "entry 812 (3 commands: 1, 6, 6)" — which command kinds an entry held,
 * for the log line of a failed apply. */
static std::string describe_entry(uint64_t index, const void *data, size_t len)
{
    std::string out = "entry " + std::to_string(index);
    try {
        EntryReader reader(data, len);
        Command cmd;
        std::string ops;
        uint32_t n = 0;
        while (reader.next(cmd) && n < 16) {
            ops += (n ? ", " : "") + std::string(op_name(cmd.op));
            n++;
        }
        out += " (" + std::to_string(reader.header().count) + " commands: " + ops +
               (reader.header().count > n ? ", ..." : "") + ")";
    } catch (const std::exception &) {
        out += " (undecodable)";
    }
    return out;
}

void proposal_cb(void *arg, int status, const char *errmsg)
{
    Proposal *proposal = static_cast<Proposal *>(arg);
    try {
        proposal->partition->worker->proposal_done(proposal, status, errmsg);
    } catch (const std::exception &e) {
        proposal->partition->worker->fail(e.what());
    }
    delete proposal;
}

/* Commands packed in an entry (0 for one that does not decode). */
static uint64_t entry_command_count(const void *data, size_t len)
{
    try {
        return EntryReader(data, len).header().count;
    } catch (const std::exception &) {
        return 0;
    }
}

/* ---- state machine callbacks ---- */

/* Applies one committed entry in a subtransaction of its own.  If anything
 * raises (storage, an injected fault), the subtransaction rolls back, the
 * partition's cached state is put back, and the partition halts: c-raft
 * counts the entry as applied once we return, so nothing more may be
 * applied until its group is restarted and replays from this entry. */
void Worker::apply_entry(Partition &p, const void *data, size_t len)
{
    if (!fatal_.empty() || p.halted)
        return; /* a halted partition re-applies after its restart */
    txn_.ensure();
    uint64_t index = p.group->applying_index();
    results_.clear();
    bool malformed = false;
    PartitionMeta before = p.storage.load_meta();
    if (index <= before.applied_index)
        return; /* a replay after a restart: the tables already hold it */
    /* what this loop turn has sent so far must not wait for the apply */
    flush_transport();
    size_t events_before = events_.size();
    int64_t apply_started_us = mono_now_us();
    txn_.begin_entry();
    try {
        p.sm.set_event_sink(&events_);
        p.sm.set_closed_sink(&closed_sessions_);
        p.sm.apply(index, data, len, results_, &malformed);
        p.sm.set_event_sink(nullptr);
        p.sm.set_closed_sink(nullptr);
        if (test_fail_apply_all_ ||
            std::find(test_fail_apply_.begin(), test_fail_apply_.end(), p.id) != test_fail_apply_.end())
            pg_guard([] {
                ereport(ERROR, (errcode(ERRCODE_IO_ERROR),
                                errmsg("injected apply failure (atomix.test_fail_apply)")));
            });
        txn_.commit_entry();
    } catch (const std::exception &e) {
        p.sm.set_event_sink(nullptr);
        p.sm.set_closed_sink(nullptr);
        closed_sessions_.clear();
        txn_.rollback_entry();
        p.storage.restore_cached_meta(before);
        p.sm.forget_caches();
        events_.resize(events_before);
        p.touched = true;
        halt_partition(p, index, describe_entry(index, data, len), e.what());
        return;
    }
    p.touched = true;
    p.stats.entries_applied++;
    p.stats.bytes_applied += len;
    p.stats.commands_applied += entry_command_count(data, len);
    p.stats.apply_us += (uint64_t)(mono_now_us() - apply_started_us);
    /* sessions the log closed: no grant to them may go out in this turn,
     * and this node's backends learn it on their next call */
    for (uint64_t session : closed_sessions_) {
        grant_gate_.session_closed(session);
        if ((uint32_t)(session >> 48) == cluster_->self().id)
            expire_session_id(session);
    }
    closed_sessions_.clear();
    if (p.failed_index != 0 && index >= p.failed_index) {
        ereport(LOG, (errmsg("atomix: partition %d resumed: applied entry %llu, which had failed",
                             p.id, (unsigned long long)index)));
        p.failed_index = 0;
        p.backoff_us = 0;
        p.io_failure = false;
    }
    if (malformed)
        ereport(WARNING, (errmsg("atomix: skipped malformed entry %llu of partition %d",
                                 (unsigned long long)index, p.id)));
    notify_watchers();
    for (const CommandResult &r : results_) {
        /* reply codes 0-9 are the result codes */
        int code = static_cast<int>(r.code);
        if (r.code == ResultCode::Pending || r.code == ResultCode::Finished) {
            /* Pending: applied, it now waits in the partition; a later entry
             * answers.  Finished: a late copy of a request this node is done
             * with — answered, or still waiting in the partition (a lock
             * acquire's copy must not end its wait) */
            router_->applied(r.request_id);
            continue;
        }
        on_internal_result(r.request_id, code, r.value);
        resolve(r.request_id, code, r.value, std::string());
    }
    /* Too many subtransactions in one transaction slow every reader down
     * (their snapshots overflow): commit what this turn applied so far.
     * Replies still go out only after the turn's last commit. */
    if (txn_.committed_entries() >= kMaxEntriesPerTransaction) {
        for (auto &q : partitions_)
            if (q->touched)
                q->storage.flush_meta();
        txn_.commit();
    }
}

std::string Worker::snapshot(Partition &p)
{
    txn_.begin_entry();
    try {
        std::string snap = p.sm.snapshot();
        txn_.commit_entry();
        return snap;
    } catch (...) {
        txn_.rollback_entry();
        throw;
    }
}

void Worker::restore(Partition &p, const void *data, size_t len)
{
    if (!fatal_.empty() || p.halted)
        return;
    txn_.ensure(); /* raft_start restores before the first loop turn */
    PartitionMeta before = p.storage.load_meta();
    txn_.begin_entry();
    try {
        bool restored = p.sm.restore(data, len);
        txn_.commit_entry();
        if (restored) {
            ereport(LOG, (errmsg("atomix: partition %d restored from a snapshot", p.id)));
            /* the snapshot may hold entries that carried this node's
             * forwards: their callers are answered from the outcomes it
             * recorded (found by test_simulation: they waited for
             * atomix.unavailable_timeout and got "in doubt") */
            router_->restored(p.id, [&](uint64_t id) {
                std::optional<RecordedOutcome> out = p.sm.recorded_outcome(id);
                if (!out || out->code == static_cast<uint8_t>(ResultCode::Pending))
                    return false;
                resolve(id, out->code, out->value, std::string());
                return true;
            });
        }
    } catch (const std::exception &e) {
        txn_.rollback_entry();
        p.storage.restore_cached_meta(before);
        p.sm.forget_caches();
        halt_partition(p, p.group->last_applied() + 1, "a snapshot", e.what());
    }
    p.touched = true;
}

void Worker::proposal_done(Proposal *proposal, int status, const char *errmsg)
{
    Partition *p = proposal->partition;
    if (proposal->is_tick) {
        p->tick_in_flight = false;
        lower_tick_due(*p); /* it may propose again (due_ticks.cpp) */
    }
    if (status != 0 && (status == RAFT_IOERR || status == RAFT_NOSPACE) && !p->halted) {
        /* c-raft 0.15 keeps a leader whose disk write failed in office: halt
         * this partition (its group is closed, so the others elect a leader
         * among themselves) and restart it after a back-off, reloading its
         * log from disk. */
        p->io_failure = true;
        halt_partition(*p, p->group->last_index(), "a Raft log write",
                       std::string(errmsg) + " (" + p->group->errmsg() + ")");
    }
    /* ok: the results went out through apply_entry.  Otherwise leadership
     * was lost after the entry was appended: a later leader may still
     * commit it, so the router resends it as a retry, which the state
     * machine answers from its recorded outcome if the first attempt made it. */
    router_->proposal_done(p->id, proposal->commands, status == 0);
}

/* Records one part's outcome; a request is ready once all its parts are. */
void Worker::resolve(uint64_t request_id, int code, int64_t value, const std::string &message)
{
    router_->applied(request_id);
    waits_.erase(request_id);
    auto it = in_flight_.find(request_id);
    if (it == in_flight_.end())
        return; /* replayed entry, another node's request, or already answered */
    std::shared_ptr<InFlight> req = it->second;
    in_flight_.erase(it);
    if (code == REPLY_OK)
        req->sum += value;
    else if (req->code == REPLY_OK) {
        req->code = code;
        req->message = message;
        req->sum = value; /* some refusals carry a detail (a semaphore's size) */
    }
    if (--req->parts_pending > 0)
        return;
    SlotReply reply;
    reply.slot = req->slot;
    reply.ticket = req->ticket;
    reply.code = req->code;
    reply.value = req->sum;
    reply.message = req->message;
    if (req->session != 0 && req->code == REPLY_OK && grants_to_session(req->op, req->sum))
        grants_.push_back(PendingGrant{ready_.size(), req->session, req->partition});
    ready_.push_back(std::move(reply));
}

/* ---- startup ---- */

/* Waits (on the latch: CREATE EXTENSION wakes us at commit) until the
 * extension exists with as many partitions as atomix.partitions says.
 * Returns false on SIGTERM. */
bool Worker::wait_for_extension()
{
    bool told_old_schema = false;
    for (;;) {
        int64 found = -1;
        bool has_origins = false;
        pg_guard([&] {
            SetCurrentStatementStartTimestamp();
            StartTransactionCommand();
            PushActiveSnapshot(GetTransactionSnapshot());
            SPI_connect();
            /* two statements: the second does not parse before CREATE EXTENSION */
            SPI_execute("SELECT 1 FROM pg_extension WHERE extname = 'atomix'", true, 1);
            if (SPI_processed == 1) {
                bool isnull;
                SPI_execute("SELECT count(*) FROM atomix.partition_state", true, 1);
                found = DatumGetInt64(
                    SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
                SPI_execute("SELECT 1 FROM pg_attribute WHERE attrelid = 'atomix.partition_state'::regclass "
                            "AND attname = 'origins' AND NOT attisdropped",
                            true, 1);
                has_origins = SPI_processed == 1;
            }
            SPI_finish();
            PopActiveSnapshot();
            CommitTransactionCommand();
        });
        /* A cluster's partitions must keep what they remember of request
         * origins (at most once across restarts): a schema from before
         * atomix 0.5 has nowhere to keep it.  One node needs none. */
        bool old_schema = found == atomix_partitions && !has_origins && cluster_->nodes().size() > 1;
        if (found == atomix_partitions && !old_schema)
            return true;
        if (old_schema && !told_old_schema) {
            ereport(LOG, (errmsg("atomix: the extension's tables predate this build of atomix; not serving"),
                          errhint("Run ALTER EXTENSION atomix UPDATE in database \"%s\".",
                                  atomix_database)));
            told_old_schema = true;
        }
        if (found >= 0 && (found != atomix_partitions || old_schema)) {
            if (found != atomix_partitions)
                ereport(LOG, (errmsg("atomix: the extension was created with %lld partitions but "
                                     "atomix.partitions is %d; not serving",
                                     (long long)found, atomix_partitions),
                              errhint("Set atomix.partitions back to %lld and restart.",
                                      (long long)found)));
            std::vector<TakenRequest> taken;
            take_requests(taken);
            std::vector<SlotReply> replies;
            for (const TakenRequest &t : taken)
                replies.push_back(SlotReply{t.slot, t.ticket, REPLY_INTERNAL, 0,
                                            old_schema ? "the atomix extension needs ALTER EXTENSION atomix UPDATE"
                                                       : "atomix.partitions does not match the extension"});
            deliver_replies(replies);
        }
        pgstat_report_activity(STATE_IDLE, "waiting for CREATE EXTENSION atomix");
        pg_guard([] {
            (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10000L,
                            PG_WAIT_EXTENSION);
            ResetLatch(MyLatch);
            CHECK_FOR_INTERRUPTS();
        });
        if (got_sigterm)
            return false;
    }
}

void Worker::start_loop()
{
    /* libuv's thread pool threads must never run Postgres signal handlers:
     * start the pool with every signal blocked, then restore the mask. */
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &saved);
    int rv = uv_loop_init(&loop_);
    if (rv == 0) {
        uv_work_t work;
        rv = uv_queue_work(&loop_, &work, [](uv_work_t *) {}, [](uv_work_t *, int) {});
        if (rv == 0)
            uv_run(&loop_, UV_RUN_DEFAULT);
    }
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    if (rv != 0)
        throw std::runtime_error(std::string("libuv: ") + uv_strerror(rv));

    pg_guard([&] {
        wait_set_ = CreateWaitEventSet(TopMemoryContext, 3);
        AddWaitEventToSet(wait_set_, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
        AddWaitEventToSet(wait_set_, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
        AddWaitEventToSet(wait_set_, WL_SOCKET_READABLE, uv_backend_fd(&loop_), NULL, NULL);
    });
}

void make_partition_dir(const std::string &path)
{
    if (mkdir(path.c_str(), S_IRWXU) != 0 && errno != EEXIST)
        throw std::runtime_error("could not create directory \"" + path + "\": " +
                                 strerror(errno));
}

void Worker::start_partitions()
{
    std::string base = std::string(DataDir) + "/atomix";
    make_partition_dir(base);
    /* before any group starts: raft_start may already apply entries */
    router_ = std::make_unique<RequestRouter>(static_cast<RouterHost &>(*this), (size_t)atomix_partitions);
    reads_ = std::make_unique<ReadIndex>(static_cast<ReadIndexHost &>(*this), (size_t)atomix_partitions);
    clear_read_leases();
    for (int32_t i = 0; i < atomix_partitions; i++) {
        auto p = std::make_unique<Partition>(this, i);
        p->sm.set_track_origins(cluster_->nodes().size() > 1);
        p->fsm.version = 1;
        p->fsm.data = p.get();
        p->fsm.apply = fsm_apply;
        p->fsm.snapshot = fsm_snapshot;
        p->fsm.restore = fsm_restore;

        RaftGroupConfig config;
        config.partition = (uint32_t)i;
        config.node_id = (raft_id)atomix_node_id;
        config.address = atomix_listen_address;
        config.dir = base + "/p" + std::to_string(i);
        config.snapshot_threshold = (unsigned)atomix_snapshot_threshold;
        config.snapshot_trailing = (unsigned)atomix_snapshot_trailing;
        config.segment_size = atomix_test_segment_size > 0 ? (size_t)atomix_test_segment_size : kSegmentSize;
        config.heartbeat_timeout_ms = kHeartbeatMs;
        config.election_timeout_ms = kElectionTimeoutMs;
        config.tick_externally = true; /* ticks.cpp */
        config.on_wake = [this] { group_woke(); };
        config.on_stir = [this, i] { group_stirred((uint32_t)i); };
        Partition *part = p.get();
        config.on_io_error = [this, part](int status, const std::string &message) {
            on_io_error(*part, status, message);
        };
        if (cluster_->nodes().size() > 1) {
            for (const NodeAddress &n : cluster_->nodes())
                config.members.push_back(RaftMember{
                    n.id, n.address(), cluster_->is_voter((uint32_t)i, n.id) ? RAFT_VOTER : RAFT_STANDBY});
            config.send = [this](uint32_t peer, uint32_t group, const std::string &encoded) {
                std::string head;
                put_le32(head, group);
                return transport_->send(peer, FrameType::Raft, head.data(), head.size(),
                                        encoded.data(), encoded.size());
            };
        }
        p->raft_config = config;
        p->group = std::make_unique<RaftGroup>(&loop_, config, &p->fsm);
        partitions_.push_back(std::move(p));
        /* raft_start may restore a snapshot, inside the apply transaction */
        start_first_group(*partitions_.back());
    }
    /* learn each partition's applied index and next expiry (TTL ticks must
     * fire after a restart even if nothing else touches the partition) */
    txn_.ensure();
    for (auto &p : partitions_) {
        (void)p->storage.load_meta();
        p->touched = true;
    }
    finish_turn();
}

/* ---- the loop ---- */

void Worker::queue_requests()
{
    std::vector<TakenRequest> taken;
    take_requests(taken);
    if (taken.empty())
        return;
    unsettle();
    int64_t now = mono_now_us();
    for (TakenRequest &t : taken) {
        auto req = std::make_shared<InFlight>();
        req->slot = t.slot;
        req->ticket = t.ticket;
        std::vector<Partition *> targets;
        if (t.partition == ATOMIX_ALL_PARTITIONS) {
            for (auto &p : partitions_)
                targets.push_back(p.get());
        } else if (t.partition >= 0 && t.partition < (int32_t)partitions_.size()) {
            targets.push_back(partitions_[t.partition].get());
        } else {
            ready_.push_back(SlotReply{t.slot, t.ticket, REPLY_INTERNAL, 0,
                                       "atomix: request for an unknown partition"});
            continue;
        }
        req->parts_pending = (int)targets.size();
        bool has_op = !t.payload.empty();
        Op op = has_op ? static_cast<Op>(static_cast<uint8_t>(t.payload[0])) : Op::Barrier;
        /* a linearizable read's barrier: a read index, no log entry */
        bool is_read = has_op && op == Op::Barrier;
        int64_t deadline_us = now + (int64_t)atomix_unavailable_timeout_ms * 1000;
        if (targets.size() == 1 && has_op && grants_to_session(op, 1)) {
            Command cmd = decode_command(t.payload.data(), t.payload.size());
            req->op = op;
            req->session = cmd.session;
            req->partition = targets[0]->id;
        }
        for (Partition *p : targets) {
            if (is_read) {
                uint64_t id = new_request_id();
                in_flight_[id] = req;
                reads_->submit(p->id, id, deadline_us);
                continue;
            }
            QueuedCommand qc;
            qc.request_id = new_request_id();
            qc.encoded = t.payload;
            qc.origin = cluster_->self().id;
            qc.queued_us = now;
            qc.deadline_us = deadline_us;
            patch_request_id(qc.encoded, qc.request_id);
            in_flight_[qc.request_id] = req;
            if (targets.size() == 1)
                track_wait(t, qc.request_id, p->id);
            router_->submit(p->id, std::move(qc));
        }
    }
}

void Worker::propose_queued(int64_t now_us)
{
    ProposeFn propose = [this](int32_t partition, const std::string &entry, std::vector<QueuedCommand> &commands,
                               std::string &why) {
        Partition *p = partitions_[(size_t)partition].get();
        auto *proposal = new Proposal{p, {}, false};
        proposal->commands.swap(commands);
        int rv = p->group->propose(entry, proposal_cb, proposal);
        if (rv == 0)
            return ProposeResult::Proposed;
        commands.swap(proposal->commands);
        delete proposal;
        why = std::string("atomix: raft refused the request: ") + raft_strerror(rv);
        return rv == RAFT_NOTLEADER ? ProposeResult::NotLeader : ProposeResult::Refused;
    };
    for (size_t i = 0; i < partitions_.size(); i++) {
        if (!router_->has_queued((int32_t)i))
            continue; /* asked first: the router's queues lie side by side */
        Partition *p = partitions_[i].get();
        if (p->halted)
            answer_queued_of_halted(*p);
        else
            router_->propose_or_forward(p->id, now_us, propose);
    }
}

/* Requests for a partition that has no leader fail after
 * atomix.unavailable_timeout instead of hanging. */
void Worker::expire_unavailable(int64_t now_us)
{
    router_->expire(now_us); /* monotonic, like every request deadline */
}

long Worker::next_timeout_ms(int64_t now_us)
{
    uv_update_time(&loop_);
    long timeout = uv_backend_timeout(&loop_); /* -1: nothing scheduled */
    int64_t mono_us = mono_now_us();
    auto consider_at = [&](int64_t at_us, int64_t now) {
        long ms = at_us <= now ? 0 : (long)std::min<int64_t>((at_us - now + 999) / 1000, 60000);
        if (timeout < 0 || ms < timeout)
            timeout = ms;
    };
    if (quiet_) {
        if (quiet_deadline_us_ != INT64_MAX)
            consider_at(quiet_deadline_us_, now_us); /* settled: none halted, none ticking */
    } else {
        if (next_tick_due_us_ != INT64_MAX)
            consider_at(next_tick_due_us_, now_us); /* log time: wall clock (due_ticks.cpp) */
        if (halts_pending_)
            for (auto &p : partitions_)
                if (p->halted)
                    consider_at(p->phase == GroupPhase::Stopped ? p->restart_at_us : mono_us + 50000, mono_us);
    }
    /* settled: nothing queued, forwarded or read (quiet_turns.cpp) */
    int64_t deadline = router_ && !quiet_ ? router_->next_deadline_us() : INT64_MAX;
    if (reads_ && !quiet_)
        deadline = std::min(deadline, reads_->next_deadline_us());
    if (deadline != INT64_MAX)
        consider_at(deadline, mono_us);
    /* A node with no session anywhere has nothing to renew: its next
     * round runs in whatever turn comes after it is due (a tick comes
     * every kDigestEveryMs at the latest), instead of a wake-up of its
     * own.  A backend opening a session submits a command, which wakes the
     * worker, and the keep-alive for it goes out in that turn. */
    if (vouching_ || !epoch_announced_)
        consider_at(next_keep_alive_us_, now_us);
    return timeout;
}

/* Commits what this turn applied, then answers the callers. */
void Worker::finish_turn()
{
    if (!fatal_.empty()) {
        txn_.abort();
        throw std::runtime_error(fatal_);
    }
    if (txn_.active()) {
        for (auto &p : partitions_) {
            if (!p->touched)
                continue;
            std::optional<int64_t> ignored;
            if (!p->sm.cached_next_deadline(&ignored))
                (void)p->sm.next_deadline(); /* learn it while SPI is at hand */
            lower_tick_due(*p);                  /* due_ticks.cpp */
            p->storage.flush_meta();
            p->touched = false;
        }
        txn_.commit();
    }
    if (!quiet_)
        reads_applied();
    vet_grants();
    deliver_replies(ready_);
    ready_.clear();
    grants_.clear();
    grant_gate_.turn_done();
    /* The status is for the topology views only, and they ask for it
     * (atomix_request_status): published when a scan wants it, and
     * otherwise every kPublishIdleUs (kPublishQuietUs while every partition
     * sleeps).  Building it walks every partition:
     * at 256 partitions, publishing after every turn was a fifth of the
     * worker under linearizable reads. */
    int64_t mono = mono_now_us();
    uint64_t wanted = replica_status_wanted();
    bool asleep = hibernation_ && hibernation_->all_asleep() && !woke_since_tick_;
    if (wanted > status_generation_ || mono - last_publish_us_ >= (asleep ? kPublishQuietUs : kPublishIdleUs)) {
        publish_status(wanted);
        status_generation_ = wanted;
        last_publish_us_ = mono;
    }
}

void Worker::publish_status(uint64_t generation)
{
    std::vector<ReplicaStatus> status(partitions_.size());
    for (size_t i = 0; i < partitions_.size(); i++) {
        Partition &p = *partitions_[i];
        status[i].halted = p.halted;
        status[i].last_error = p.last_error;
        status[i].restart_at_us = p.halted ? unix_now_us() + (p.restart_at_us - mono_now_us()) : 0;
        status[i].apply_failures = p.apply_failures;
        status[i].resends = router_->resends(p.id);
        status[i].duplicates_dropped = router_->duplicates_dropped(p.id) + p.sm.duplicates_answered();
        status[i].stalled = p.stalled;
        status[i].commits_unstuck = p.group->commits_unstuck();
        status[i].stats = p.stats;
        status[i].stats.proposals = p.retired_proposals + p.group->proposals();
        status[i].stats.raft_messages = p.retired_raft_messages + p.group->messages_sent();
        status[i].stats.hibernations = p.retired_hibernations + p.group->hibernations();
        status[i].stats.hibernating = !p.halted && p.group->hibernating();
        status[i].stats.log_writes = p.retired_log_writes + p.group->log_writes();
        status[i].stats.forwarded = router_->forwarded(p.id);
        status[i].stats.forwards_taken = router_->forwards_taken(p.id);
        status[i].stats.read_rounds = reads_->rounds(p.id);
        status[i].stats.reads_confirmed = reads_->reads_confirmed(p.id);
        status[i].stats.reads_served = reads_->reads_served(p.id) + reads_leased_locally(p.id);
        RaftGroup &g = *partitions_[i]->group;
        status[i].role = g.state();
        status[i].leader_node = (int)g.leader_id();
        status[i].term = g.term();
        status[i].commit_index = g.commit_index();
        status[i].last_index = g.last_index();
        /* published after the turn's commit: every entry c-raft applied is in
         * the tables (barrier and configuration entries change nothing) */
        status[i].applied_index =
            std::max<uint64_t>(g.last_applied(), partitions_[i]->storage.cached_applied_index());
        if (g.state() == RAFT_LEADER)
            for (const NodeAddress &n : cluster_->nodes())
                status[i].match_index.push_back(n.id == cluster_->self().id ? g.last_index()
                                                                           : g.match_index(n.id));
    }
    std::vector<NodeStatus> nodes;
    for (const NodeAddress &n : cluster_->nodes()) {
        NodeStatus s;
        s.id = n.id;
        bool self = n.id == cluster_->self().id;
        s.connected = self || (transport_ && transport_->connected(n.id));
        s.last_contact_us = self ? unix_now_us() : (transport_ ? transport_->last_contact_us(n.id) : 0);
        nodes.push_back(s);
    }
    publish_replica_status(status, nodes, generation);
}

void Worker::turn(long timeout_ms)
{
    WaitEvent event;
    pg_guard([&] {
        (void)WaitEventSetWait(wait_set_, timeout_ms, &event, 1, PG_WAIT_EXTENSION);
        ResetLatch(MyLatch);
        /* absorbs proc signal barriers (DROP DATABASE waits for them) */
        CHECK_FOR_INTERRUPTS();
        if (ConfigReloadPending) {
            ConfigReloadPending = false;
            ProcessConfigFile(PGC_SIGHUP);
        }
    });
    apply_test_settings();

    /* once asked to stop, leave new requests queued: our exit answers them
     * "not proposed" rather than proposing what raft_close would cancel */
    if (!got_sigterm)
        queue_requests();
    int64_t now = unix_now_us();
    int64_t mono = mono_now_us();
    if (!got_sigterm) {
        cancel_abandoned_waits();
        maintain_sessions(now);
    }
    if (!quiet_)
        propose_queued(now);
    if (!quiet_ || now >= quiet_deadline_us_)
        propose_ticks(now);
    flush_transport(); /* the proposals' AppendEntries and forwards */
    uv_run(&loop_, UV_RUN_NOWAIT);
    if (!quiet_) { /* else every partition sleeps and nothing waits: see quiet_turns.cpp */
        poll_groups(); /* the groups something stirred; tick turns: all */
        /* a partition that just became leader can take what waited for it */
        propose_queued(now);
        reads_->pump(mono);
        router_->resend_stalled();
        balance_leaders(mono);
        expire_unavailable(mono);
        maintain_halted(mono);
        watch_progress(mono);
    }
    flush_transport(); /* before the turn's commit, which may take a while */
    finish_turn();
    flush_transport();
    quiet_ = quiet_ || settled(); /* the next turn's, until something unsettles it */
    ticked_ = false;
}

void Worker::flush_transport()
{
    publish_read_leases(); /* before any frame can carry a newer commit index */
    if (reads_)
        reads_->flush();
    if (transport_)
        transport_->flush();
}

void Worker::shutdown()
{
    stop_ticks();
    /* a group whose truncate may be running closes once it has ended
     * (RaftGroup::truncate_in_doubt) */
    auto close_groups = [this] {
        for (auto &p : partitions_)
            if (!p->group->truncate_in_doubt())
                p->group->close();
    };
    close_groups();
    if (transport_)
        transport_->close();
    /* closing is asynchronous; the loop ends once every handle is closed */
    for (int i = 0; i < 1000; i++) {
        close_groups();
        bool all_closed = std::all_of(partitions_.begin(), partitions_.end(),
                                      [](const std::unique_ptr<Partition> &p) { return p->group->closed(); }) &&
                          (!transport_ || transport_->closed());
        if (all_closed)
            break;
        uv_run(&loop_, UV_RUN_ONCE);
    }
    finish_turn();
    /* let pending close callbacks finish before freeing anything */
    for (int i = 0; i < 100 && uv_run(&loop_, UV_RUN_NOWAIT) != 0; i++)
        ;
    for (auto &p : partitions_)
        p->group->release();
    uv_run(&loop_, UV_RUN_NOWAIT);
    thread_pool_work_forget(&loop_);
    uv_loop_close(&loop_);
}

void Worker::run()
{
    worker_attach();
    cluster_ = std::make_unique<ClusterConfig>(ClusterConfig::parse(
        atomix_initial_cluster, (uint32_t)atomix_node_id, atomix_listen_address,
        (uint32_t)atomix_replication_factor));
    if (!wait_for_extension())
        return;
    choose_incarnation(); /* request_ids.cpp */
    raise_open_files_limit(atomix_partitions);
    start_loop();
    start_transport();
    start_partitions();
    start_ticks();
    worker_set_phase(WORKER_RUNNING);
    ereport(LOG, (errmsg("atomix raft worker serving %d partitions as node %d of %d",
                         atomix_partitions, atomix_node_id, (int)cluster_->nodes().size())));
    pgstat_report_activity(STATE_IDLE, NULL);

    SetLatch(MyLatch); /* take what was queued while we were starting */
    while (!got_sigterm)
        turn(next_timeout_ms(unix_now_us()));
    shutdown();
}

} // namespace atomix

/* The entry point the postmaster starts (bgw_function_name). */
extern "C" PGDLLEXPORT void atomix_worker_main(Datum arg);

static void worker_body(void *)
{
    /* Lives until the process exits: never destroyed across a longjmp. */
    atomix::Worker *worker = new atomix::Worker();
    worker->run();
}

void atomix_worker_main(Datum)
{
    pqsignal(SIGTERM, atomix::handle_sigterm);
    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    BackgroundWorkerUnblockSignals();
    BackgroundWorkerInitializeConnection(atomix_database, NULL, 0);
    /* The Raft log, fsynced before an entry commits, is the durable record;
     * the apply transaction only materializes it and is replayed from the
     * log after a crash (its applied index lives in the same transaction).
     * So it need not wait for its own WAL flush: one fsync per turn, not two. */
    SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);

    /* ERROR in a background worker exits the process with code 1, and the
     * postmaster restarts it: recovery is replaying the Raft log. */
    atomix::run_guarded(worker_body, NULL, ERROR, "atomix raft worker");
    proc_exit(1);
}
