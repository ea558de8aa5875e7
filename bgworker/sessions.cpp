/*
 * sessions.cpp — the worker's part in sessions (docs/coordination.md):
 * renewing this node's sessions in batches, closing the sessions of exited
 * backends, flagging sessions it can no longer vouch for, and taking the
 * waiter of a backend that stopped waiting out of its queue.
 */
extern "C" {
#include "postgres.h"
}

#include <algorithm>

#include "clock.h"
#include "guc.h"
#include "le_bytes.h"
#include "planted_bugs.h"
#include "shmem.h"
#include "worker.h"

namespace atomix {

static int64_t session_timeout_us() { return (int64_t)atomix_session_timeout_ms * 1000; }

/* The node vouches for its sessions in a partition until a little before
 * the lease deadline its last keep-alive reported, so a backend learns its
 * session is gone no later than the cluster decides it (the margin absorbs
 * clock skew between nodes). */
static int64_t vouch_margin_us() { return session_timeout_us() / 8; }

uint64_t Worker::propose_internal(int32_t partition, Command cmd)
{
    cmd.request_id = new_request_id();
    QueuedCommand qc;
    qc.request_id = cmd.request_id;
    encode_command(cmd, qc.encoded);
    qc.origin = cluster_->self().id;
    qc.queued_us = mono_now_us();
    qc.deadline_us = qc.queued_us + (int64_t)atomix_unavailable_timeout_ms * 1000;
    unsettle();
    router_->submit(partition, std::move(qc));
    return cmd.request_id;
}

void Worker::send_keep_alives(const SessionSnapshot &live, int64_t now_us, bool all)
{
    for (size_t p = 0; p < partitions_.size(); p++) {
        bool has = !live.by_partition[p].empty();
        bool had = had_sessions_[p] != 0;
        /* `all`: the round is due, or this is the worker's first (it
         * announces the node's incarnation everywhere, closing sessions of
         * a previous life at once).  Otherwise only partitions that just got
         * their first session. */
        if (!(all ? (has || had || !epoch_announced_) : (has && !had)))
            continue;
        Command ka;
        ka.op = Op::SessionKeepAlive;
        ka.arg1 = (int64_t)cluster_->self().id;
        ka.epoch = node_epoch_us();
        ka.ttl_us = session_timeout_us();
        ka.arg2 = (int64_t)(live.max_seq & 0xffffffffffffULL);
        for (uint64_t id : live.by_partition[p])
            put_le64(ka.value, id);
        uint64_t id = propose_internal((int32_t)p, std::move(ka));
        keep_alives_[id] = KeepAliveSent{(int32_t)p, now_us};
        had_sessions_[p] = has ? 1 : 0;
    }
}

void Worker::maintain_sessions(int64_t now_us)
{
    if (had_sessions_.size() != partitions_.size())
        had_sessions_.assign(partitions_.size(), 0);

    Command close;
    close.op = Op::SessionClose;
    close.epoch = node_epoch_us();
    for (const ClosedSessionInfo &c : take_closed_sessions()) {
        close.session = c.id;
        for (int32_t p : c.partitions)
            if (p < (int32_t)partitions_.size())
                propose_internal(p, close);
    }

    bool due = now_us >= next_keep_alive_us_ || !epoch_announced_;
    if (sessions_changed() || due) {
        SessionSnapshot live;
        scan_sessions((int32_t)partitions_.size(), live);
        send_keep_alives(live, now_us, due);
        vouching_ = std::find(had_sessions_.begin(), had_sessions_.end(), 1) != had_sessions_.end();
        if (due) {
            next_keep_alive_us_ = now_us + session_timeout_us() / 5;
            epoch_announced_ = true;
            for (auto it = keep_alives_.begin(); it != keep_alives_.end();)
                it = it->second.sent_us < now_us - 60 * 1000000LL ? keep_alives_.erase(it) : std::next(it);
        }
    }

    /* A partition whose keep-alives stopped being acknowledged: the cluster
     * may expire our sessions there any moment, so stop vouching for them
     * and release what they hold everywhere else too. */
    for (size_t p = 0; p < partitions_.size(); p++)
        if (had_sessions_[p] && lease_valid_until((int32_t)p) < now_us)
            close_unvouched((int32_t)p);
}

/* This node cannot vouch for its sessions in `partition` any more: flag them
 * expired (their backends get 55000 next) and close them everywhere, which
 * releases what they hold. */
void Worker::close_unvouched(int32_t partition)
{
    Command close;
    close.op = Op::SessionClose;
    close.epoch = node_epoch_us();
    for (const ClosedSessionInfo &c : expire_sessions_in(partition)) {
        ereport(LOG, (errmsg("atomix: session %llu expired: partition %d did not renew it "
                             "within atomix.session_timeout",
                             (unsigned long long)c.id, (int)partition)));
        close.session = c.id;
        for (int32_t q : c.partitions)
            if (q < (int32_t)partitions_.size())
                propose_internal(q, close);
    }
}

/* Just before answers go out: a grant to a session the log closed in this
 * turn, that this node flagged expired, or that it cannot vouch for any
 * more (grant_gate.h), is answered "session expired" instead, and the
 * session closed everywhere. */
void Worker::vet_grants()
{
    if (grants_.empty() || kPlantStaleGrant)
        return;
    int64_t now = unix_now_us();
    for (const PendingGrant &g : grants_) {
        bool flagged = session_flagged_expired(g.session);
        if (grant_gate_.may_deliver(g.session, lease_valid_until(g.partition), now, flagged))
            continue;
        SlotReply &r = ready_[g.reply];
        r.code = REPLY_SESSION_EXPIRED;
        r.value = 0;
        r.message = "atomix: the grant arrived after this node stopped vouching for the session";
        stale_grants_refused_++;
        ereport(LOG, (errmsg("atomix: a grant to session %llu in partition %d was not delivered: "
                             "the session may have expired meanwhile",
                             (unsigned long long)g.session, (int)g.partition)));
        /* closed by the log: released already, flagged when applied.
         * Flagged here before: its close is proposed already.  Otherwise
         * this node cannot vouch for the partition: none of its sessions
         * there may keep anything */
        if (!grant_gate_.closed_in_log(g.session) && !flagged)
            close_unvouched(g.partition);
    }
}

void Worker::on_internal_result(uint64_t request_id, int code, int64_t value)
{
    auto it = keep_alives_.find(request_id);
    if (it == keep_alives_.end())
        return;
    /* value: the lease's new deadline in log time (0 from a stale epoch) */
    if (code == REPLY_OK && value > 0)
        extend_lease(it->second.partition, value - vouch_margin_us());
    keep_alives_.erase(it);
}

void Worker::track_wait(const TakenRequest &t, uint64_t request_id, int32_t partition)
{
    if (t.payload.empty())
        return;
    Op op = static_cast<Op>(static_cast<uint8_t>(t.payload[0]));
    if (op != Op::LockAcquire && op != Op::SemaphoreAcquire)
        return;
    Command cmd = decode_command(t.payload.data(), t.payload.size());
    bool waits = op == Op::LockAcquire ? cmd.arg1 != 0 : cmd.arg2 != 0;
    if (!waits)
        return;
    PendingWait w;
    w.slot = t.slot;
    w.ticket = t.ticket;
    w.partition = partition;
    w.cancel.op = Op::WaitCancel;
    w.cancel.session = cmd.session;
    w.cancel.epoch = cmd.epoch;
    w.cancel.name = cmd.name;
    w.cancel.key = std::string(1, op == Op::LockAcquire ? kKindLock : kKindSemaphore);
    w.cancel.arg1 = (int64_t)request_id;
    waits_[request_id] = std::move(w);
}

/* A backend gave up waiting: take its waiter out (or give back what was
 * granted to it meanwhile) before its slot is reused, so no ghost waiter
 * is ever served. */
void Worker::cancel_abandoned_waits()
{
    for (auto it = waits_.begin(); it != waits_.end();) {
        const PendingWait &w = it->second;
        if (!slot_abandoned(w.slot, w.ticket)) {
            ++it;
            continue;
        }
        propose_internal(w.partition, w.cancel);
        in_flight_.erase(it->first);
        ready_.push_back(SlotReply{w.slot, w.ticket, REPLY_INTERNAL, 0, std::string()});
        it = waits_.erase(it);
    }
}

} // namespace atomix
