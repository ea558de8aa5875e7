/*
 * shmem.cpp — sizing and initialising the shared request slots.
 */
extern "C" {
#include "postgres.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"
}

#include "clock.h"
#include "guc.h"
#include "shmem.h"

AtomixShared *atomix_shared = NULL;

static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool loaded_at_startup = false;

bool atomix_loaded_at_startup(void) { return loaded_at_startup; }
void atomix_set_loaded_at_startup(void) { loaded_at_startup = true; }

static Size slots_end(uint32 nslots)
{
    return MAXALIGN(add_size(offsetof(AtomixShared, slots), mul_size(sizeof(AtomixRequestSlot), (Size)nslots)));
}

static Size shared_size(void)
{
    return add_size(slots_end((uint32)MaxBackends), mul_size(sizeof(uint64), (Size)(MaxBackends + 63) / 64));
}

uint64 *atomix_queued_bits(void) { return (uint64 *)((char *)atomix_shared + slots_end(atomix_shared->nslots)); }

void atomix_shmem_request(void)
{
    RequestAddinShmemSpace(shared_size());
    RequestNamedLWLockTranche("atomix", 2);
}

static void shmem_startup(void)
{
    bool found;

    if (prev_shmem_startup_hook)
        prev_shmem_startup_hook();

    LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
    atomix_shared = (AtomixShared *)ShmemInitStruct("atomix", shared_size(), &found);
    if (!found) {
        memset(atomix_shared, 0, shared_size());
        LWLockPadded *locks = GetNamedLWLockTranche("atomix");
        atomix_shared->lock = &locks[0].lock;
        atomix_shared->id_lock = &locks[1].lock;
        atomix_shared->epoch_us = (int64)GetCurrentTimestamp() + atomix::kUnixToPgEpochUs;
        /* Session sequences start from the clock (64 per ms since 2023-11),
         * so a restarted node does not hand out its previous life's ids. */
        atomix_shared->session_seq =
            (uint64)((atomix_shared->epoch_us / 1000 - INT64CONST(1700000000000)) << 6);
        atomix_shared->nslots = (uint32)MaxBackends;
        atomix_shared->partitions = atomix_partitions;
        atomix_shared->worker_phase = WORKER_STOPPED;
        for (int p = 0; p < ATOMIX_MAX_PARTITIONS; p++) {
            pg_atomic_init_u32(&atomix_shared->read_leases[p].version, 0);
            pg_atomic_init_u64(&atomix_shared->read_leases[p].reads, 0);
        }
    }
    LWLockRelease(AddinShmemInitLock);
}

void atomix_shmem_startup(void)
{
    prev_shmem_startup_hook = shmem_startup_hook;
    shmem_startup_hook = shmem_startup;
}

bool atomix_request_status(int max_wait_ms)
{
    if (!atomix_shared)
        return false;
    LWLockAcquire(atomix_shared->lock, LW_EXCLUSIVE);
    bool running = atomix_shared->worker_phase == WORKER_RUNNING;
    uint64 want = ++atomix_shared->status_wanted;
    LWLockRelease(atomix_shared->lock);
    if (!running)
        return false;
    atomix_wake_worker();
    /* the worker publishes at the end of its current turn: a millisecond,
     * or the length of one apply */
    for (int waited_us = 0; waited_us < max_wait_ms * 1000; waited_us += 200) {
        LWLockAcquire(atomix_shared->lock, LW_SHARED);
        bool done = atomix_shared->status_published >= want ||
                    atomix_shared->worker_phase != WORKER_RUNNING;
        LWLockRelease(atomix_shared->lock);
        if (done)
            return true;
        CHECK_FOR_INTERRUPTS();
        pg_usleep(200);
    }
    return false;
}

void atomix_wake_worker(void)
{
    Latch *latch = NULL;
    if (!atomix_shared)
        return;
    LWLockAcquire(atomix_shared->lock, LW_SHARED);
    if (atomix_shared->worker_pid != 0)
        latch = atomix_shared->worker_latch;
    LWLockRelease(atomix_shared->lock);
    if (latch)
        SetLatch(latch);
}
