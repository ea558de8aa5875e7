/*
 * raft_log_io.cpp — what RaftGroup puts between c-raft and raft_uv's log:
 * every write (append, truncate, snapshot put) goes to raft_uv one at a
 * time, in c-raft's order, and the first failure halts the group with
 * nothing more reaching the disk.
 *
 * Why one at a time.  raft_uv 0.15 keeps going after a failed write
 * (uv_append.c, uvAliveSegmentWriteCb): it fails the requests of that
 * write, rolls its next append index back by their count, and then writes
 * the requests that were queued behind them — under indexes that no longer
 * match what it wrote.  A 21-minute test/chaos run left a follower's log
 * with entries 20627..21315 missing and a closed segment 21316-21320 after
 * the gap ("persisted data is corrupted: closed segment ... is past last
 * snapshot"): a big append after a pause hit a full disk, and the small one
 * queued behind it was written anyway.  With a single write in flight
 * there is never anything queued inside raft_uv when a write fails; the
 * requests c-raft issues meanwhile wait here and go out together, as one
 * request, when the write before them is done (raft_uv would have batched
 * them the same way).  A truncate or a snapshot put waits its turn too: run
 * early, it would renumber the appends queued before it.
 *
 * After a failure nothing more is written and nothing more is reported to
 * c-raft, successes included: c-raft 0.15 counts stored entries
 * (updateLastStored: last_stored += n), so a later success would make this
 * follower acknowledge entries it does not have.  The group is closed and
 * restarted by the worker (bgworker/apply_guard.cpp), reloading a log that
 * ends at the failed write, which raft_uv's loader handles like a torn
 * write after a crash.
 */
#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "raft_group.h"
#include "thread_pool_work.h"

namespace atomix {

/* One request handed to raft_uv: the appends c-raft issued since the last
 * one, written together.  Owned here until raft_uv calls back. */
struct RaftGroup::AppendBatch {
    RaftGroup *group = nullptr;
    struct raft_io_append req {};
    std::vector<struct raft_entry> entries;
    std::vector<LogOp> parts;
    uint64_t started_ms = 0; /* uv_now */
};

static std::unordered_map<struct raft_io_append *, RaftGroup::AppendBatch *> pending_appends;

struct PendingSnapshotPut {
    RaftGroup *group;
    raft_io_snapshot_put_cb cb;
    bool install;
};
static std::unordered_map<struct raft_io_snapshot_put *, PendingSnapshotPut> pending_snapshot_puts;

int RaftGroup::io_append(struct raft_io *io, struct raft_io_append *req, const struct raft_entry entries[],
                         unsigned n, raft_io_append_cb cb)
{
    RaftGroup *self = of(io);
    /* Once a write failed, every later one is refused (the group is about
     * to be closed). */
    if (self->io_failed_)
        return RAFT_IOERR;
    LogOp op;
    op.kind = LogOp::Append;
    op.req = req;
    op.entries = entries;
    op.n = n;
    op.cb = cb;
    op.queued_ms = uv_now(self->loop_);
    self->log_ops_.push_back(op);
    self->stir(); /* an injected fault is flushed by poll() */
    self->pump_log_ops();
    return 0;
}

int RaftGroup::io_truncate(struct raft_io *io, raft_index index)
{
    RaftGroup *self = of(io);
    if (self->io_failed_)
        return RAFT_IOERR;
    LogOp op;
    op.kind = LogOp::Truncate;
    op.index = index;
    op.queued_ms = uv_now(self->loop_);
    self->log_ops_.push_back(op);
    self->stir(); /* an injected fault is flushed by poll() */
    self->pump_log_ops();
    return 0;
}

/* Storing a snapshot received from the leader (trailing 0) starts with a
 * raft_uv barrier that moves raft_uv's next append index past the snapshot.
 * If the store then fails (a full disk), c-raft 0.15 discards the snapshot
 * and goes on from its old log — while raft_uv writes every later entry
 * under the moved index: entries 34005.. landed in a segment named
 * 34302-34306, and the log no longer loaded (test/chaos, 21-min run).  A
 * failed install therefore halts the group like a failed log write. */
int RaftGroup::io_snapshot_put(struct raft_io *io, unsigned trailing, struct raft_io_snapshot_put *req,
                               const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb)
{
    RaftGroup *self = of(io);
    if (self->io_failed_)
        return RAFT_IOERR;
    LogOp op;
    op.kind = LogOp::SnapshotPut;
    op.trailing = trailing;
    op.put = req;
    op.snapshot = snapshot;
    op.put_cb = cb;
    op.queued_ms = uv_now(self->loop_);
    self->log_ops_.push_back(op);
    self->stir(); /* an injected fault is flushed by poll() */
    self->pump_log_ops();
    return 0;
}

/* Hands raft_uv the next write once the one before it is done. */
void RaftGroup::pump_log_ops()
{
    while (!log_op_in_flight_ && !log_ops_.empty() && !io_failed_ && !closing_ && !closed_) {
        LogOp op = log_ops_.front();
        if (op.kind == LogOp::Truncate) {
            log_ops_.pop_front();
            int rv = uv_truncate_(&io_, op.index);
            if (rv != 0)
                fail_io(rv, std::string("truncating the log: ") + io_.errmsg);
            else
                truncate_unsettled_ = true;
            continue;
        }
        if (op.kind == LogOp::SnapshotPut) {
            log_ops_.pop_front();
            start_snapshot_put(op);
            continue;
        }
        auto *batch = new AppendBatch;
        batch->group = this;
        batch->started_ms = op.queued_ms;
        while (!log_ops_.empty() && log_ops_.front().kind == LogOp::Append) {
            const LogOp &a = log_ops_.front();
            batch->entries.insert(batch->entries.end(), a.entries, a.entries + a.n);
            batch->parts.push_back(a);
            log_ops_.pop_front();
        }
        start_append(batch);
    }
}

void RaftGroup::start_append(AppendBatch *batch)
{
    pending_appends[&batch->req] = batch;
    log_op_in_flight_ = true;
    int fault = config_.log_write_fault ? config_.log_write_fault() : 0;
    if (fault != 0) {
        injected_write_faults_.push_back(InjectedWriteFault{&batch->req, fault});
        return;
    }
    log_writes_++;
    int rv = uv_append_(&io_, &batch->req, batch->entries.data(), (unsigned)batch->entries.size(),
                        io_append_done);
    if (rv != 0) {
        /* raft_uv 0.15 (UvAppend) can return an error *after* queueing the
         * request, and call it back later: keep the batch until then (a
         * request raft_uv never queued is leaked with the halted group). */
        fail_io(rv, io_.errmsg);
    }
}

/* A failed write is never handed to c-raft.  0.15 handles one badly in
 * three ways: a leader's callback fails only the first request of the batch
 * (the rest wait forever), and truncates its in-memory log at the batch's
 * first index — once per failed batch, so the second failed batch truncates
 * past the end of a log the first one already cut (removeSuffix underflows:
 * the worker's SIGSEGV under full disks) — and a leader whose log was cut
 * behind its followers' next index asks raft_uv for a snapshot that does
 * not exist (see io_snapshot_get).  The group is halted on the first
 * failure and closed (never freed) once nothing is in flight: c-raft
 * believes the write is still under way until then, and raft_close fails
 * the proposals waiting on it.  The requests and their entries are leaked
 * with the group. */
void RaftGroup::io_append_done(struct raft_io_append *req, int status)
{
    auto it = pending_appends.find(req);
    if (it == pending_appends.end())
        return; /* cannot happen: every append went through start_append */
    AppendBatch *batch = it->second;
    pending_appends.erase(it);
    RaftGroup *group = batch->group;
    group->log_op_in_flight_ = false;
    group->stir(); /* the commit index may move */
    /* raft_uv started this write only once the truncates before it were
     * done (their barrier holds every append back) */
    if (status == 0)
        group->truncate_unsettled_ = false;
    bool canceled = status == RAFT_CANCELED; /* closing: nothing failed */
    if (status != 0 && !canceled) {
        group->appends_withheld_ += batch->parts.size();
        group->fail_io(status, group->io_.errmsg);
    } else if (group->io_failed_ && !canceled) {
        /* written after the group failed: c-raft must not count it */
        group->appends_withheld_ += batch->parts.size();
    } else {
        for (const LogOp &part : batch->parts)
            part.cb(part.req, status);
    }
    delete batch;
    group->pump_log_ops();
}

void RaftGroup::start_snapshot_put(const LogOp &op)
{
    bool install = op.trailing == 0;
    pending_snapshot_puts[op.put] = PendingSnapshotPut{this, op.put_cb, install};
    log_op_in_flight_ = true;
    int fault = install && config_.snapshot_install_fault ? config_.snapshot_install_fault() : 0;
    if (fault != 0) {
        injected_install_faults_.push_back(InjectedInstallFault{op.put, fault});
        return;
    }
    int rv = uv_snapshot_put_(&io_, op.trailing, op.put, op.snapshot, io_snapshot_put_done);
    if (rv != 0) {
        /* never queued by raft_uv: tell c-raft, as raft_uv would have */
        pending_snapshot_puts.erase(op.put);
        log_op_in_flight_ = false;
        fail_io(rv, std::string("storing a snapshot: ") + io_.errmsg);
        op.put_cb(op.put, rv);
    }
}

void RaftGroup::io_snapshot_put_done(struct raft_io_snapshot_put *req, int status)
{
    auto it = pending_snapshot_puts.find(req);
    if (it == pending_snapshot_puts.end())
        return; /* cannot happen: every put went through start_snapshot_put */
    PendingSnapshotPut p = it->second;
    pending_snapshot_puts.erase(it);
    RaftGroup *group = p.group;
    group->log_op_in_flight_ = false;
    group->stir();
    if (p.install && status != 0 && status != RAFT_CANCELED && !group->io_failed_) {
        group->installs_failed_++;
        group->fail_io(status, std::string("storing a snapshot from the leader: ") + group->io_.errmsg);
    }
    p.cb(req, status);
    group->pump_log_ops();
}

/* The group's first I/O failure halts it: every later write is refused
 * (io_append, io_truncate, io_snapshot_put) and the worker hears of it
 * once. */
void RaftGroup::fail_io(int status, const std::string &message)
{
    if (io_failed_)
        return;
    io_failed_ = true;
    if (!closing_ && !closed_ && config_.on_io_error)
        config_.on_io_error(status, message);
}

/* Whether raft_uv still has a write of ours to finish (or, while the group
 * is healthy, one waits for its turn).  After a failure the waiting ones
 * never go out, so they do not count. */
bool RaftGroup::io_busy() const
{
    if (log_op_in_flight_)
        return true;
    if (io_failed_)
        return false;
    return !log_ops_.empty() || (started_ && raft_.snapshot.put.data != nullptr);
}

bool RaftGroup::truncate_in_doubt() const
{
    return truncate_unsettled_ && thread_pool_work_in_flight(loop_) > 0;
}

uint64_t RaftGroup::oldest_append_ms() const
{
    if (!log_op_in_flight_ && log_ops_.empty())
        return 0; /* the watchdog asks every group, 20 times a second */
    uint64_t now = uv_now(loop_), oldest = 0;
    for (const auto &kv : pending_appends)
        if (kv.second->group == this && now - kv.second->started_ms > oldest)
            oldest = now - kv.second->started_ms;
    for (const LogOp &op : log_ops_)
        if (now - op.queued_ms > oldest)
            oldest = now - op.queued_ms;
    return oldest;
}

void RaftGroup::flush_injected_write_faults()
{
    std::vector<InjectedWriteFault> faults;
    faults.swap(injected_write_faults_);
    for (const InjectedWriteFault &f : faults)
        io_append_done(f.req, f.status);
    std::vector<InjectedInstallFault> installs;
    installs.swap(injected_install_faults_);
    for (const InjectedInstallFault &f : installs)
        io_snapshot_put_done(f.req, f.status);
}

/* c-raft 0.15 asks for the snapshot to send a follower whenever the entry
 * before the follower's next index is not in its log.  After a failed log
 * write a leader truncates its log (appendLeaderCb), while its followers
 * may already have stored those entries: their next index then points past
 * the leader's log, and c-raft asks for a snapshot it never took.  raft_uv
 * finds none on disk and calls back with status 0 and an uninitialised
 * snapshot, which c-raft then frees (`free(): invalid pointer`, the worker
 * SIGSEGV under full disks) or sends.  io_append_done no longer lets that
 * truncation happen; this is the second line.  Without a snapshot in the
 * log there is nothing to send: refuse, which c-raft treats like a failed
 * send. */
int RaftGroup::io_snapshot_get(struct raft_io *io, struct raft_io_snapshot_get *req,
                               raft_io_snapshot_get_cb cb)
{
    RaftGroup *self = of(io);
    if (self->io_failed_ || self->raft_.log.snapshot.last_index == 0) {
        self->snapshot_gets_refused_++;
        return RAFT_NOTFOUND;
    }
    return self->uv_snapshot_get_(io, req, cb);
}

} // namespace atomix
