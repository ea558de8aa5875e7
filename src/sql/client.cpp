/*
 * client.cpp — submitting a command from a backend and waiting for it
 * (protocol in shmem.h).  No polling: the backend sleeps on its latch and is
 * woken by the worker's reply, by the worker's exit, or by an interrupt.
 */
extern "C" {
#include "postgres.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "storage/dsm.h"
#include "storage/latch.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"
}

#include <cstring>

#include "client.h"
#include "clock.h"
#include "guc.h"
#include "pg_bridge.h"
#include "planted_bugs.h"
#include "shmem.h"

namespace atomix {

static Oid usable_database = InvalidOid;

void check_session_usable()
{
    if (!atomix_loaded_at_startup() || atomix_shared == NULL)
        throw AtomixError(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                          "atomix must be loaded via shared_preload_libraries",
                          "Add 'atomix' to shared_preload_libraries in postgresql.conf and "
                          "restart the server.");
    if (usable_database == MyDatabaseId)
        return;

    char *dbname = NULL;
    pg_guard([&] { dbname = get_database_name(MyDatabaseId); });
    if (dbname == NULL || strcmp(dbname, atomix_database) != 0)
        throw AtomixError(ERRCODE_FEATURE_NOT_SUPPORTED,
                          std::string("atomix is served from database \"") + atomix_database +
                              "\", not \"" + (dbname ? dbname : "?") + "\"",
                          std::string("Connect to database \"") + atomix_database +
                              "\", or set atomix.database and restart the server.");
    usable_database = MyDatabaseId;
}

static AtomixRequestSlot *my_slot()
{
    int index = MyBackendId - 1;
    if (index < 0 || (uint32)index >= atomix_shared->nslots)
        throw AtomixError(ERRCODE_INTERNAL_ERROR, "atomix: this process has no request slot");
    return &atomix_shared->slots[index];
}

/* Sleeps until our latch is set (or timeout_ms passes, unless -1); an
 * interrupt (cancel, statement_timeout, terminate) comes out of here as a
 * PgError. */
static void wait_for_latch(long timeout_ms = -1)
{
    pg_guard([&] {
        int events = WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | (timeout_ms >= 0 ? WL_TIMEOUT : 0);
        (void)WaitLatch(MyLatch, events, timeout_ms, PG_WAIT_EXTENSION);
        ResetLatch(MyLatch);
        CHECK_FOR_INTERRUPTS();
    });
}

/* A previous request of ours that was cancelled may still be in the worker's
 * hands; its slot is ours again once the worker lets go. */
static void wait_until_slot_free(AtomixRequestSlot *slot)
{
    for (;;) {
        LWLockAcquire(atomix_shared->lock, LW_EXCLUSIVE);
        if (slot->state == SLOT_DONE)
            slot->state = SLOT_FREE;
        bool free_now = slot->state == SLOT_FREE;
        if (!free_now)
            slot->latch = MyLatch;
        LWLockRelease(atomix_shared->lock);
        if (free_now)
            return;
        wait_for_latch();
    }
}

/* Called when we stop waiting without a reply: the worker must not write
 * into a slot we no longer watch, nor read a payload we are about to free. */
static void abandon(AtomixRequestSlot *slot)
{
    bool tell_worker = false;
    LWLockAcquire(atomix_shared->lock, LW_EXCLUSIVE);
    if (slot->state == SLOT_QUEUED || slot->state == SLOT_DONE)
        slot->state = SLOT_FREE;
    else if (slot->state == SLOT_TAKEN) {
        slot->state = SLOT_ABANDONED;
        tell_worker = true; /* a waiting acquire must leave its queue now */
    }
    LWLockRelease(atomix_shared->lock);
    if (tell_worker)
        atomix_wake_worker();
}

static void raise_reply_error(int code, const char *message)
{
    switch (code) {
    case REPLY_OUT_OF_RANGE:
        throw AtomixError(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE, "bigint out of range",
                          "The counter was left unchanged.");
    case REPLY_SESSION_EXPIRED:
        throw AtomixError(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, "atomix session expired",
                          std::string(),
                          "The cluster closed this backend's session (its node did not renew it "
                          "within atomix.session_timeout, or it was closed).");
    case REPLY_REFUSED:
        throw AtomixError(ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                          "atomix refused the command: a name, key or value is over its limit",
                          "Names are at most 255 bytes, keys 1024, values 64MB, with no NUL bytes.");
    case REPLY_NOT_SUBMITTED:
        throw AtomixError(ERRCODE_CANNOT_CONNECT_NOW, message,
                          "The request was not applied; retry once the atomix worker is back.");
    case REPLY_IN_DOUBT:
        throw AtomixError(ERRCODE_T_R_STATEMENT_COMPLETION_UNKNOWN, message,
                          "The request may or may not have been applied; read before retrying.");
    case REPLY_UNAVAILABLE:
        throw AtomixError(ERRCODE_CANNOT_CONNECT_NOW, message,
                          "The partition has no leader; check the cluster with "
                          "atomix.partitions and the server log.");
    default:
        throw AtomixError(ERRCODE_INTERNAL_ERROR, message);
    }
}

Reply submit(int32_t partition, const Command &cmd)
{
    check_session_usable();
    std::string payload;
    encode_command(cmd, payload);

    AtomixRequestSlot *slot = my_slot();
    wait_until_slot_free(slot);

    /* Large payloads travel in a DSM segment we own until the slot leaves
     * QUEUED (the worker copies it while holding the lock). */
    dsm_segment *seg = NULL;
    if (payload.size() > ATOMIX_INLINE_PAYLOAD) {
        Size len = payload.size();
        pg_guard([&] { seg = dsm_create(len, 0); });
        memcpy(dsm_segment_address(seg), payload.data(), payload.size());
    }

    /* Queue even while no worker is attached (the server just started, or
     * the worker is restarting): it takes queued slots once it serves.  Only
     * a request nobody takes within atomix.unavailable_timeout fails. */
    Latch *worker_latch = NULL;
    LWLockAcquire(atomix_shared->lock, LW_EXCLUSIVE);
    {
        slot->ticket++;
        slot->latch = MyLatch;
        slot->partition = partition;
        slot->payload_len = (uint32)payload.size();
        slot->payload_dsm = seg ? dsm_segment_handle(seg) : DSM_HANDLE_INVALID;
        if (!seg)
            memcpy(slot->inline_payload, payload.data(), payload.size());
        slot->reply_code = REPLY_OK;
        slot->reply_value = 0;
        slot->reply_message[0] = '\0';
        slot->state = SLOT_QUEUED;
        atomix_mark_queued((uint32)(slot - atomix_shared->slots));
        worker_latch = atomix_shared->worker_latch;
    }
    LWLockRelease(atomix_shared->lock);
    if (worker_latch)
        SetLatch(worker_latch);

    Reply reply;
    int code = REPLY_OK;
    char message[ATOMIX_REPLY_MESSAGE];
    TimestampTz deadline = 0;
    pg_guard([&] {
        deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), atomix_unavailable_timeout_ms);
    });
    try {
        for (;;) {
            LWLockAcquire(atomix_shared->lock, LW_EXCLUSIVE);
            bool queued = slot->state == SLOT_QUEUED;
            bool done = slot->state == SLOT_DONE;
            if (done) {
                code = slot->reply_code;
                reply.value = slot->reply_value;
                memcpy(message, slot->reply_message, sizeof(message));
                message[sizeof(message) - 1] = '\0';
                slot->state = SLOT_FREE;
            }
            LWLockRelease(atomix_shared->lock);
            if (done)
                break;
            if (!queued) {
                wait_for_latch(); /* the worker has it; it answers or its exit does */
                continue;
            }
            long remaining = 0;
            pg_guard([&] {
                remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
            });
            if (remaining <= 0)
                throw AtomixError(ERRCODE_CANNOT_CONNECT_NOW,
                                  "the atomix raft worker did not take the request within "
                                  "atomix.unavailable_timeout",
                                  "The worker is not running or still starting; it restarts "
                                  "automatically, check the server log if it does not.");
            wait_for_latch(remaining);
        }
    } catch (...) {
        abandon(slot);
        if (seg)
            pg_guard([&] { dsm_detach(seg); });
        throw;
    }
    if (seg)
        pg_guard([&] { dsm_detach(seg); });

    reply.code = code;
    if (code == REPLY_NULL)
        reply.is_null = true;
    else if (code != REPLY_OK && code != REPLY_NOT_FOUND && code != REPLY_INVALID &&
             code != REPLY_CONFLICT && code != REPLY_NOT_OWNER)
        raise_reply_error(code, message);
    return reply;
}

/* This node leads `partition` under a read lease, and its tables hold
 * everything the leader had committed when anything last left this node:
 * the read may go ahead without waking the worker (shmem.h, AtomixReadLease). */
static bool read_under_lease(int32_t partition)
{
    if (!atomix_read_lease || partition < 0 || partition >= ATOMIX_MAX_PARTITIONS)
        return false;
    AtomixReadLease *lease = &atomix_shared->read_leases[partition];
    AtomixReadLeaseView v;
    if (!read_lease_snapshot(lease, &v) || v.until_boot_us == 0 || v.applied_index < v.commit_index)
        return false;
    if (!kPlantEndlessLease && boot_now_us() >= v.until_boot_us) /* planted: never expires */
        return false;
    pg_atomic_fetch_add_u64(&lease->reads, 1);
    return true;
}

void read_barrier(int32_t partition)
{
    check_session_usable();
    if (atomix_read_consistency == ATOMIX_READ_SEQUENTIAL || read_under_lease(partition))
        return;
    Command barrier;
    barrier.op = Op::Barrier;
    (void)submit(partition, barrier);
}

} // namespace atomix
