/*
 * shmem.h — the shared memory between backends and the raft worker.
 *
 * Each backend owns one RequestSlot (indexed by its BackendId).  A backend
 * fills its slot, marks it QUEUED and sets the worker's latch; the worker
 * takes it (TAKEN), and once the command is committed and applied writes the
 * reply (DONE) and sets the backend's latch.  A backend that stops waiting
 * (cancel, statement_timeout) frees a QUEUED slot itself or marks a TAKEN one
 * ABANDONED, which the worker frees when the command completes.  All state
 * changes happen under `lock`.
 *
 * Payloads up to ATOMIX_INLINE_PAYLOAD bytes travel inline; larger ones in a
 * DSM segment the backend creates and keeps until the slot leaves QUEUED.
 */
#ifndef ATOMIX_SHMEM_H
#define ATOMIX_SHMEM_H

extern "C" {
#include "postgres.h"
#include "port/atomics.h"
#include "storage/dsm.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"
}

#include "partition_stats.h"

#define ATOMIX_INLINE_PAYLOAD 2048
#define ATOMIX_REPLY_MESSAGE 256
#define ATOMIX_ALL_PARTITIONS (-1)

enum AtomixSlotState {
    SLOT_FREE = 0,
    SLOT_QUEUED,
    SLOT_TAKEN,
    SLOT_DONE,
    SLOT_ABANDONED,
};

/* 0-9 are the state machine's ResultCodes (state_machine.h). */
enum AtomixReplyCode {
    REPLY_OK = 0,
    REPLY_NULL = 1,          /* SQL NULL result */
    REPLY_OUT_OF_RANGE = 2,  /* bigint overflow in the state machine */
    REPLY_SESSION_EXPIRED = 4,
    REPLY_NOT_FOUND = 5,
    REPLY_INVALID = 6,
    REPLY_CONFLICT = 7,
    REPLY_NOT_OWNER = 8,
    REPLY_REFUSED = 9,       /* over a limit the state machine enforces */
    REPLY_NOT_SUBMITTED = 10, /* worker stopped before proposing: not applied */
    REPLY_IN_DOUBT = 11,     /* worker stopped after proposing: may be applied */
    REPLY_UNAVAILABLE = 12,  /* no leader within atomix.unavailable_timeout */
    REPLY_INTERNAL = 13,     /* raft or apply failure; message says which */
};

enum AtomixWorkerPhase {
    WORKER_STOPPED = 0,
    WORKER_STARTING,      /* attached, waiting for the extension to exist */
    WORKER_RUNNING,       /* raft groups started; requests are served */
};

#define ATOMIX_MAX_PARTITIONS 256 /* atomix.partitions upper bound */
#define ATOMIX_MAX_NODES 32       /* nodes shown by the topology tables */
#define ATOMIX_PART_WORDS (ATOMIX_MAX_PARTITIONS / 32)

/* The session of the backend owning a slot (see docs/coordination.md).
 * Written by the backend under `lock`; the worker reads it to renew and
 * close sessions and sets `expired` when it can no longer vouch for one. */
struct AtomixSessionInfo {
    uint64 id;    /* 0: none yet */
    bool expired; /* set by the worker: a partition's lease was not renewed */
    uint32 partitions[ATOMIX_PART_WORDS]; /* partitions the session touched */
};

/* A session whose backend exited, waiting for the worker to close it in
 * the partitions it touched. */
struct AtomixClosedSession {
    uint64 id;
    uint32 partitions[ATOMIX_PART_WORDS];
};
#define ATOMIX_CLOSED_RING 256

/* A node-local block of ids reserved from an id generator. */
struct AtomixIdBlock {
    char name[256]; /* "" = unused */
    int64 next;
    int64 end;    /* exclusive */
    uint64 used;  /* last use, for replacement */
};
#define ATOMIX_ID_BLOCKS 128
#define ATOMIX_MAX_WATCHES 1024

struct AtomixRequestSlot {
    uint32 state;
    uint64 ticket; /* bumped per request so a stale reply is never taken */
    Latch *latch;
    int32 partition; /* or ATOMIX_ALL_PARTITIONS: one command per partition */
    uint32 payload_len;
    dsm_handle payload_dsm; /* DSM_HANDLE_INVALID when inline */
    int32 reply_code;
    int64 reply_value;
    char reply_message[ATOMIX_REPLY_MESSAGE];
    AtomixSessionInfo session;
    char inline_payload[ATOMIX_INLINE_PAYLOAD];
};

/* What the worker last saw of one local replica, published after every loop
 * turn for the topology foreign tables (fdw/). */
struct AtomixReplicaStatus {
    int32 role;        /* RAFT_UNAVAILABLE, RAFT_FOLLOWER, RAFT_CANDIDATE, RAFT_LEADER */
    int32 leader_node; /* 0 when unknown */
    uint64 term;
    uint64 commit_index;
    uint64 applied_index; /* committed to the partition tables */
    uint64 last_index;    /* last entry in this replica's log */
    /* when leading: each node's replicated index, by position in
     * atomix.initial_cluster's id order (0 = unknown) */
    uint64 match_index[ATOMIX_MAX_NODES];
    /* this replica's health (docs/architecture.md, "Machine failures") */
    bool halted;
    TimestampTz restart_at; /* when halted: the next restart of its group */
    char last_error[ATOMIX_REPLY_MESSAGE];
    uint64 apply_failures;
    uint64 resends;
    uint64 duplicates_dropped;
    bool stalled; /* work waits and nothing was applied for a while */
    uint64 commits_unstuck;
    AtomixPartitionStats stats;
};

/* A partition's read lease as this node's backends see it (the worker is
 * its leader and holds a lease, replication/read_index.h).  While
 * CLOCK_BOOTTIME is before `until_boot_us` and `applied_index` (committed
 * to the tables) has reached `commit_index` (the leader's commit index
 * before anything last left this node), a linearizable read may read the
 * local tables at once: no other leader can exist, so nothing committed
 * anywhere is missing from them (docs/architecture.md, "Read leases").
 * Written by the worker alone under a sequence count (odd while it
 * writes); read with read_lease_snapshot(). */
struct AtomixReadLease {
    pg_atomic_uint32 version;
    int64 until_boot_us; /* 0: no lease */
    uint64 commit_index;
    uint64 applied_index;
    pg_atomic_uint64 reads; /* reads this node's backends served under it */
};

struct AtomixReadLeaseView {
    int64 until_boot_us;
    uint64 commit_index;
    uint64 applied_index;
};

/* The worker's write of one lease (single writer). */
static inline void read_lease_write(AtomixReadLease *l, const AtomixReadLeaseView &v)
{
    pg_atomic_fetch_add_u32(&l->version, 1); /* odd; a full barrier */
    l->until_boot_us = v.until_boot_us;
    l->commit_index = v.commit_index;
    l->applied_index = v.applied_index;
    pg_write_barrier();
    pg_atomic_fetch_add_u32(&l->version, 1);
}

/* A consistent copy, or false when the worker kept writing (the caller then
 * takes the slow path). */
static inline bool read_lease_snapshot(AtomixReadLease *l, AtomixReadLeaseView *out)
{
    for (int tries = 0; tries < 4; tries++) {
        uint32 before = pg_atomic_read_u32(&l->version);
        if (before & 1)
            continue;
        pg_read_barrier();
        out->until_boot_us = l->until_boot_us;
        out->commit_index = l->commit_index;
        out->applied_index = l->applied_index;
        pg_read_barrier();
        if (pg_atomic_read_u32(&l->version) == before)
            return true;
    }
    return false;
}

struct AtomixNodeStatus {
    uint32 id;
    bool connected; /* our transport connection to it is authenticated */
    TimestampTz last_contact;
};

struct AtomixShared {
    LWLock *lock;
    pid_t worker_pid;
    Latch *worker_latch;
    uint32 worker_phase;
    int32 partitions;   /* atomix.partitions, as seen by the postmaster */
    TimestampTz worker_started_at;
    TimestampTz status_updated_at;
    /* The status below is published on demand: a scan of the topology
     * tables asks for generation status_wanted and waits (briefly) until
     * status_published reaches it; the worker otherwise publishes only
     * every second or so (atomix_request_status). */
    uint64 status_wanted;
    uint64 status_published;
    AtomixReplicaStatus replicas[ATOMIX_MAX_PARTITIONS];
    int32 nnodes;
    AtomixNodeStatus nodes[ATOMIX_MAX_NODES];

    /* sessions: this shared memory's life is the node's incarnation */
    int64 epoch_us;
    uint64 session_seq;
    bool sessions_changed; /* a backend opened a session or touched a new partition */
    /* until when (Unix µs) the worker vouches for this node's sessions in
     * each partition: its last acknowledged keep-alive plus most of the
     * timeout.  A backend touching a partition past it is told its session
     * expired. */
    int64 lease_valid_until_us[ATOMIX_MAX_PARTITIONS];
    /* not the sessions' lease above: the leader's read lease */
    AtomixReadLease read_leases[ATOMIX_MAX_PARTITIONS];
    uint32 closed_head;
    uint32 closed_count;
    AtomixClosedSession closed[ATOMIX_CLOSED_RING];

    LWLock *id_lock; /* protects id_blocks */
    AtomixIdBlock id_blocks[ATOMIX_ID_BLOCKS];
    uint64 id_clock;

    /* names (hashed) someone called atomix.watch() for on this node */
    int32 nwatched;
    bool watch_all; /* the table overflowed: notify every change */
    uint64 watched[ATOMIX_MAX_WATCHES];
    uint32 nslots;
    AtomixRequestSlot slots[FLEXIBLE_ARRAY_MEMBER];
};

extern AtomixShared *atomix_shared;

/* One bit per request slot, after the slots: set by the backend that queues
 * the slot, under atomix_shared->lock, so the worker takes requests by
 * looking at these bits instead of at every slot (each a cache miss, under
 * the exclusive lock every backend queues with).  A queued slot's bit is
 * always set; a set bit may be stale (the request was cancelled), so the
 * worker still checks the slot's state. */
uint64 *atomix_queued_bits(void);
static inline void atomix_mark_queued(uint32 slot)
{
    atomix_queued_bits()[slot / 64] |= UINT64CONST(1) << (slot % 64);
}

void atomix_shmem_request(void);
void atomix_shmem_startup(void);
bool atomix_loaded_at_startup(void);
void atomix_set_loaded_at_startup(void);

/* Wakes the worker, if any (the extension script uses it after CREATE). */
void atomix_wake_worker(void);
/* Asks the worker for a fresh status and waits for it (at most
 * `max_wait_ms`; false when it did not come, e.g. no worker running). */
bool atomix_request_status(int max_wait_ms);

#endif
