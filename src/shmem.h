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
#include "storage/dsm.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"
}

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

enum AtomixReplyCode {
    REPLY_OK = 0,
    REPLY_NULL = 1,          /* SQL NULL result */
    REPLY_OUT_OF_RANGE = 2,  /* bigint overflow in the state machine */
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
    char inline_payload[ATOMIX_INLINE_PAYLOAD];
};

#define ATOMIX_MAX_PARTITIONS 256 /* atomix.partitions upper bound */
#define ATOMIX_MAX_NODES 32       /* nodes shown by the topology tables */

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
};

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
    AtomixReplicaStatus replicas[ATOMIX_MAX_PARTITIONS];
    int32 nnodes;
    AtomixNodeStatus nodes[ATOMIX_MAX_NODES];
    uint32 nslots;
    AtomixRequestSlot slots[FLEXIBLE_ARRAY_MEMBER];
};

extern AtomixShared *atomix_shared;

void atomix_shmem_request(void);
void atomix_shmem_startup(void);
bool atomix_loaded_at_startup(void);
void atomix_set_loaded_at_startup(void);

/* Wakes the worker, if any (the extension script uses it after CREATE). */
void atomix_wake_worker(void);

#endif
