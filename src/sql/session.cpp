/*
 * session.cpp — opening, checking and dropping the backend's session (see
 * session.h).  All session fields live in the backend's request slot and
 * change under atomix_shared->lock.
 */
extern "C" {
#include "postgres.h"
#include "miscadmin.h"
#include "storage/backendid.h"
#include "storage/ipc.h"
#include "utils/timestamp.h"
}

#include <algorithm>
#include <cstring>

#include "clock.h"
#include "grant_gate.h"
#include "guc.h"
#include "pg_bridge.h"
#include "planted_bugs.h"
#include "session.h"
#include "shmem.h"

namespace atomix {

static bool exit_callback_registered = false;

static AtomixRequestSlot *own_slot()
{
    int index = MyBackendId - 1;
    if (index < 0 || (uint32)index >= atomix_shared->nslots)
        throw AtomixError(ERRCODE_INTERNAL_ERROR, "atomix: this process has no request slot");
    return &atomix_shared->slots[index];
}

/* With the lock held: ask the worker to close the session everywhere it
 * went. */
static void queue_close_locked(AtomixRequestSlot *slot)
{
    if (atomix_shared->closed_count < ATOMIX_CLOSED_RING) {
        uint32 at = (atomix_shared->closed_head + atomix_shared->closed_count) % ATOMIX_CLOSED_RING;
        atomix_shared->closed[at].id = slot->session.id;
        memcpy(atomix_shared->closed[at].partitions, slot->session.partitions,
               sizeof(slot->session.partitions));
        atomix_shared->closed_count++;
    }
    /* a full ring is caught up by the next keep-alives, which list the
     * node's live sessions: this one will not be among them */
}

/* With the lock held: queue the session for closing and forget it. */
static void drop_locked(AtomixRequestSlot *slot)
{
    if (slot->session.id == 0)
        return;
    queue_close_locked(slot);
    memset(&slot->session, 0, sizeof(slot->session));
}

/* Closes the session but keeps it flagged, so the backend's next call is
 * told it expired (rather than quietly starting a new session). */
static void expire_session()
{
    AtomixRequestSlot *slot = own_slot();
    LWLockAcquire(atomix_shared->lock, LW_EXCLUSIVE);
    if (slot->session.id != 0 && !slot->session.expired) {
        queue_close_locked(slot);
        slot->session.expired = true;
    }
    LWLockRelease(atomix_shared->lock);
    atomix_wake_worker();
}

static void drop_session()
{
    AtomixRequestSlot *slot = own_slot();
    LWLockAcquire(atomix_shared->lock, LW_EXCLUSIVE);
    drop_locked(slot);
    LWLockRelease(atomix_shared->lock);
    atomix_wake_worker();
}

/* before_shmem_exit: the backend is leaving; its session closes now. */
static void session_exit(int, Datum)
{
    if (!atomix_shared)
        return;
    int index = MyBackendId - 1;
    if (index < 0 || (uint32)index >= atomix_shared->nslots)
        return;
    AtomixRequestSlot *slot = &atomix_shared->slots[index];
    LWLockAcquire(atomix_shared->lock, LW_EXCLUSIVE);
    bool had = slot->session.id != 0;
    drop_locked(slot);
    LWLockRelease(atomix_shared->lock);
    if (had)
        atomix_wake_worker();
}

void raise_session_expired(const char *why)
{
    drop_session();
    throw AtomixError(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, "atomix session expired",
                      "Its locks, candidacies and permits were released; the next call starts a "
                      "new session.  Acquire them again.",
                      why);
}

static bool has_partition(const AtomixSessionInfo &s, int32_t p)
{
    return s.partitions[p / 32] & (1u << (p % 32));
}

void attach_session(Command &cmd, int32_t partition, bool open)
{
    check_session_usable();
    if (!exit_callback_registered) {
        pg_guard([] { before_shmem_exit(session_exit, (Datum)0); });
        exit_callback_registered = true;
    }
    AtomixRequestSlot *slot = own_slot();
    int64_t now = unix_now_us();
    int64_t grace = (int64_t)atomix_session_timeout_ms * 1000 * 7 / 8;
    const char *expired_why = NULL;

    LWLockAcquire(atomix_shared->lock, LW_EXCLUSIVE);
    AtomixSessionInfo &s = slot->session;
    if (s.id != 0 && s.expired)
        expired_why = "This node could not renew the session within atomix.session_timeout, or "
                      "the raft worker restarted while this backend waited.";
    /* only the partitions it touched: skip empty words of the bitmap */
    for (int w = 0; s.id != 0 && !expired_why && w < ATOMIX_PART_WORDS; w++)
        for (uint32 bits = s.partitions[w]; bits != 0 && !expired_why; bits &= bits - 1) {
            int32_t p = w * 32 + __builtin_ctz(bits);
            if (atomix_shared->lease_valid_until_us[p] < now)
                expired_why = "This node could not renew the session within atomix.session_timeout.";
        }
    if (!expired_why && s.id == 0 && open) {
        s.id = ((uint64)atomix_node_id << 48) | (++atomix_shared->session_seq & 0xffffffffffffULL);
        atomix_shared->sessions_changed = true;
    }
    if (!expired_why && s.id != 0 && partition >= 0 && !has_partition(s, partition)) {
        s.partitions[partition / 32] |= 1u << (partition % 32);
        atomix_shared->sessions_changed = true;
        /* the command itself renews the lease; the worker takes over from here */
        if (atomix_shared->lease_valid_until_us[partition] < now + grace)
            atomix_shared->lease_valid_until_us[partition] = now + grace;
    }
    cmd.session = s.id;
    cmd.epoch = atomix_shared->epoch_us;
    LWLockRelease(atomix_shared->lock);

    if (expired_why)
        raise_session_expired(expired_why);
}

uint64_t current_session_id()
{
    if (!atomix_shared)
        return 0;
    AtomixRequestSlot *slot = own_slot();
    LWLockAcquire(atomix_shared->lock, LW_SHARED);
    uint64_t id = slot->session.id;
    LWLockRelease(atomix_shared->lock);
    return id;
}

static bool is_wait(const Command &cmd)
{
    return (cmd.op == Op::LockAcquire && cmd.arg1 != 0) ||
           (cmd.op == Op::SemaphoreAcquire && cmd.arg2 != 0);
}

static bool is_release(const Command &cmd)
{
    return cmd.op == Op::LockRelease || cmd.op == Op::SemaphoreRelease;
}

/* The raft worker marked this backend's session expired: the log closed it,
 * this node stopped vouching for a partition the session touched (and
 * proposed its close everywhere), or the worker restarted while the
 * backend waited. */
static bool session_flagged_expired()
{
    AtomixRequestSlot *slot = own_slot();
    LWLockAcquire(atomix_shared->lock, LW_SHARED);
    bool expired = slot->session.id != 0 && slot->session.expired;
    LWLockRelease(atomix_shared->lock);
    return expired;
}

/* Until when this node vouches for its sessions in `partition` (wall
 * clock, µs since the Unix epoch). */
int64_t session_vouched_until(int32_t partition)
{
    if (partition < 0 || partition >= ATOMIX_MAX_PARTITIONS)
        return 0;
    LWLockAcquire(atomix_shared->lock, LW_SHARED);
    int64_t v = atomix_shared->lease_valid_until_us[partition];
    LWLockRelease(atomix_shared->lock);
    return v;
}

int64_t session_valid_until_all()
{
    AtomixRequestSlot *slot = own_slot();
    int64_t until = 0;
    LWLockAcquire(atomix_shared->lock, LW_SHARED);
    const AtomixSessionInfo &s = slot->session;
    bool any = false;
    for (int w = 0; s.id != 0 && !s.expired && w < ATOMIX_PART_WORDS; w++)
        for (uint32 bits = s.partitions[w]; bits != 0; bits &= bits - 1) {
            int64_t v = atomix_shared->lease_valid_until_us[w * 32 + __builtin_ctz(bits)];
            until = any ? std::min(until, v) : v;
            any = true;
        }
    LWLockRelease(atomix_shared->lock);
    return until;
}

Reply submit_in_session(int32_t partition, const Command &cmd)
{
    try {
        Reply r = submit(partition, cmd);
        /* The worker vetted the grant before answering (grant_gate.h); the
         * backend checks once more as it returns: it may have been
         * descheduled since, and the flag may have been set meanwhile (a
         * grant already on its way when this node expired the session —
         * test/chaos: the close released the lock on the leader, which gave
         * it to the next waiter, before this grant was answered). */
        if (!kPlantStaleGrant && !r.is_null && grants_to_session(cmd.op, r.value) &&
            (session_flagged_expired() || session_vouched_until(partition) < unix_now_us())) {
            expire_session();
            raise_session_expired("The grant arrived after this node stopped vouching for the "
                                  "session; it was released.");
        }
        /* A release that found nothing held because the session was closed
         * while the call was on its way (its node paused with the call in
         * flight, then applied the session's close before it) must say so:
         * the holder would otherwise never learn it lost what it held. */
        if (is_release(cmd) && !r.is_null && r.value == 0 && session_flagged_expired())
            raise_session_expired("The session expired before this release was applied; what it "
                                  "held had been released already.");
        return r;
    } catch (const AtomixError &e) {
        if (e.sqlstate() == ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE &&
            strcmp(e.what(), "atomix session expired") == 0)
            raise_session_expired(e.detail().empty() ? NULL : e.detail().c_str());
        /* A wait whose fate is unknown might be granted later to a session
         * nobody watches: close the session so that nothing stays held. */
        if (is_wait(cmd) && (e.sqlstate() == ERRCODE_T_R_STATEMENT_COMPLETION_UNKNOWN))
            expire_session();
        throw;
    }
}

} // namespace atomix
