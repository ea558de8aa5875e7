/*
 * request_queue.cpp — taking requests from and replying to backend slots.
 */
extern "C" {
#include "postgres.h"
#include "miscadmin.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"
}

#include <algorithm>
#include <cstring>

#include "clock.h"
#include "pg_bridge.h"
#include "request_queue.h"
#include "shmem.h"

namespace atomix {

static void write_reply(AtomixRequestSlot *slot, int code, int64 value, const char *message)
{
    slot->reply_code = code;
    slot->reply_value = value;
    strlcpy(slot->reply_message, message, sizeof(slot->reply_message));
    slot->state = SLOT_DONE;
}

/* on_shmem_exit: nobody will answer the slots any more — say so. */
static void worker_detach(int, Datum)
{
    if (!atomix_shared)
        return;
    LWLockAcquire(atomix_shared->lock, LW_EXCLUSIVE);
    for (uint32 i = 0; i < atomix_shared->nslots; i++) {
        AtomixRequestSlot *slot = &atomix_shared->slots[i];
        switch (slot->state) {
        case SLOT_QUEUED:
            write_reply(slot, REPLY_NOT_SUBMITTED, 0,
                        "the atomix raft worker stopped before the request was proposed");
            break;
        case SLOT_TAKEN:
            write_reply(slot, REPLY_IN_DOUBT, 0,
                        "the atomix raft worker stopped while the request was in flight");
            break;
        case SLOT_ABANDONED:
            slot->state = SLOT_FREE;
            break;
        default:
            continue;
        }
        if (slot->latch)
            SetLatch(slot->latch);
    }
    atomix_shared->worker_pid = 0;
    atomix_shared->worker_latch = NULL;
    memset(atomix_shared->replicas, 0, sizeof(atomix_shared->replicas));
    atomix_shared->worker_phase = WORKER_STOPPED;
    LWLockRelease(atomix_shared->lock);
}

void worker_attach()
{
    pg_guard([] { on_shmem_exit(worker_detach, (Datum)0); });
    LWLockAcquire(atomix_shared->lock, LW_EXCLUSIVE);
    atomix_shared->worker_pid = MyProcPid;
    atomix_shared->worker_latch = MyLatch;
    atomix_shared->worker_phase = WORKER_STARTING;
    LWLockRelease(atomix_shared->lock);
}

void worker_set_phase(int phase)
{
    TimestampTz now = GetCurrentTimestamp();
    LWLockAcquire(atomix_shared->lock, LW_EXCLUSIVE);
    atomix_shared->worker_phase = (uint32)phase;
    if (phase == WORKER_RUNNING)
        atomix_shared->worker_started_at = now;
    LWLockRelease(atomix_shared->lock);
}

uint64_t replica_status_wanted()
{
    LWLockAcquire(atomix_shared->lock, LW_SHARED);
    uint64_t wanted = atomix_shared->status_wanted;
    LWLockRelease(atomix_shared->lock);
    return wanted;
}

void publish_replica_status(const std::vector<ReplicaStatus> &replicas,
                            const std::vector<NodeStatus> &nodes, uint64_t generation)
{
    TimestampTz now = GetCurrentTimestamp();
    LWLockAcquire(atomix_shared->lock, LW_EXCLUSIVE);
    atomix_shared->status_published = Max(atomix_shared->status_published, generation);
    atomix_shared->nnodes = (int32)std::min<size_t>(nodes.size(), ATOMIX_MAX_NODES);
    for (int i = 0; i < atomix_shared->nnodes; i++) {
        AtomixNodeStatus *n = &atomix_shared->nodes[i];
        n->id = nodes[i].id;
        n->connected = nodes[i].connected;
        n->last_contact = nodes[i].last_contact_us ? nodes[i].last_contact_us - kUnixToPgEpochUs : 0;
    }
    for (size_t i = 0; i < replicas.size() && i < ATOMIX_MAX_PARTITIONS; i++) {
        AtomixReplicaStatus *s = &atomix_shared->replicas[i];
        s->role = replicas[i].role;
        s->leader_node = replicas[i].leader_node;
        s->term = replicas[i].term;
        s->commit_index = replicas[i].commit_index;
        s->applied_index = replicas[i].applied_index;
        s->last_index = replicas[i].last_index;
        for (size_t k = 0; k < ATOMIX_MAX_NODES; k++)
            s->match_index[k] = k < replicas[i].match_index.size() ? replicas[i].match_index[k] : 0;
        s->halted = replicas[i].halted;
        s->restart_at = replicas[i].restart_at_us ? replicas[i].restart_at_us - kUnixToPgEpochUs : 0;
        strlcpy(s->last_error, replicas[i].last_error.c_str(), sizeof(s->last_error));
        s->apply_failures = replicas[i].apply_failures;
        s->resends = replicas[i].resends;
        s->duplicates_dropped = replicas[i].duplicates_dropped;
        s->stalled = replicas[i].stalled;
        s->commits_unstuck = replicas[i].commits_unstuck;
        s->stats = replicas[i].stats;
    }
    atomix_shared->status_updated_at = now;
    LWLockRelease(atomix_shared->lock);
}

/* Copies a DSM payload; the backend keeps the segment alive while the slot
 * is QUEUED and we hold the lock.  NULL-safe: a vanished segment is skipped. */
static bool copy_dsm_payload(dsm_handle handle, uint32 len, std::string &out)
{
    dsm_segment *seg = NULL;
    const char *addr = NULL;
    pg_guard([&] {
        seg = dsm_attach(handle);
        if (seg)
            addr = (const char *)dsm_segment_address(seg);
    });
    if (!seg)
        return false;
    out.assign(addr, len);
    pg_guard([&] { dsm_detach(seg); });
    return true;
}

void take_requests(std::vector<TakenRequest> &out)
{
    LWLockAcquire(atomix_shared->lock, LW_EXCLUSIVE);
    try {
        uint64 *queued = atomix_queued_bits();
        for (uint32 w = 0; w < (atomix_shared->nslots + 63) / 64; w++) {
            while (queued[w] != 0) {
                int bit = __builtin_ctzll(queued[w]);
                uint32 i = w * 64 + (uint32)bit;
                AtomixRequestSlot *slot = &atomix_shared->slots[i];
                if (slot->state == SLOT_QUEUED) {
                    TakenRequest req;
                    req.slot = i;
                    req.ticket = slot->ticket;
                    req.partition = slot->partition;
                    bool have = true;
                    if (slot->payload_dsm == DSM_HANDLE_INVALID)
                        req.payload.assign(slot->inline_payload, slot->payload_len);
                    else
                        have = copy_dsm_payload(slot->payload_dsm, slot->payload_len, req.payload);
                    slot->state = have ? SLOT_TAKEN : SLOT_FREE;
                    if (have)
                        out.push_back(std::move(req));
                }
                /* cleared once handled: a throw above leaves it for the next turn */
                queued[w] &= ~(UINT64CONST(1) << bit);
            }
        }
    } catch (...) {
        LWLockRelease(atomix_shared->lock);
        throw;
    }
    LWLockRelease(atomix_shared->lock);
}

bool slot_abandoned(uint32_t index, uint64_t ticket)
{
    LWLockAcquire(atomix_shared->lock, LW_SHARED);
    const AtomixRequestSlot *slot = &atomix_shared->slots[index];
    bool abandoned = slot->ticket == ticket && slot->state == SLOT_ABANDONED;
    LWLockRelease(atomix_shared->lock);
    return abandoned;
}

void deliver_replies(const std::vector<SlotReply> &replies)
{
    if (replies.empty())
        return;
    std::vector<Latch *> wake;
    wake.reserve(replies.size());
    LWLockAcquire(atomix_shared->lock, LW_EXCLUSIVE);
    for (const SlotReply &r : replies) {
        AtomixRequestSlot *slot = &atomix_shared->slots[r.slot];
        if (slot->ticket != r.ticket)
            continue;
        if (slot->state == SLOT_TAKEN)
            write_reply(slot, r.code, r.value, r.message.c_str());
        else if (slot->state == SLOT_ABANDONED)
            slot->state = SLOT_FREE;
        else
            continue;
        if (slot->latch)
            wake.push_back(slot->latch);
    }
    LWLockRelease(atomix_shared->lock);
    for (Latch *latch : wake)
        SetLatch(latch);
}

} // namespace atomix
