/*
 * request_queue.h — the worker's side of the shared request slots
 * (protocol in src/sql/shmem.h).
 */
#ifndef ATOMIX_REQUEST_QUEUE_H
#define ATOMIX_REQUEST_QUEUE_H

#include <cstdint>
#include <string>
#include <vector>

#include "partition_stats.h"

namespace atomix {

struct TakenRequest {
    uint32_t slot = 0;
    uint64_t ticket = 0;
    int32_t partition = 0; /* or ATOMIX_ALL_PARTITIONS */
    std::string payload;   /* one encoded Command */
};

struct SlotReply {
    uint32_t slot = 0;
    uint64_t ticket = 0;
    int code = 0; /* AtomixReplyCode */
    int64_t value = 0;
    std::string message;
};

/* Publishes this process as the worker (phase WORKER_STARTING) and arranges
 * for every waiting backend to be woken with an error when it exits. */
void worker_attach();
void worker_set_phase(int phase);

/* Moves every QUEUED slot to TAKEN and copies its payload out.  A slot whose
 * payload segment vanished (its backend gave up) is skipped. */
void take_requests(std::vector<TakenRequest> &out);

/* Whether the backend waiting in `slot` for request `ticket` gave up. */
bool slot_abandoned(uint32_t slot, uint64_t ticket);

/* Publishes the local replicas' state for the topology foreign tables. */
struct ReplicaStatus {
    int role = 0;
    int leader_node = 0;
    uint64_t term = 0;
    uint64_t commit_index = 0;
    uint64_t applied_index = 0;
    uint64_t last_index = 0;
    std::vector<uint64_t> match_index; /* by node position, when leading */
    bool halted = false;
    std::string last_error;
    int64_t restart_at_us = 0; /* Unix µs, when halted */
    uint64_t apply_failures = 0;
    uint64_t resends = 0;
    uint64_t duplicates_dropped = 0;
    bool stalled = false;
    uint64_t commits_unstuck = 0;
    AtomixPartitionStats stats = {};
};
struct NodeStatus {
    uint32_t id = 0;
    bool connected = false;
    int64_t last_contact_us = 0; /* Unix µs, 0 = never */
};
/* The latest status generation a scan asked for (shmem.h: on demand). */
uint64_t replica_status_wanted();
/* Publishes the status as `generation`: scans that asked for it or an
 * earlier one stop waiting. */
void publish_replica_status(const std::vector<ReplicaStatus> &replicas,
                            const std::vector<NodeStatus> &nodes, uint64_t generation);

/* Delivers replies to the slots still waiting for them, frees slots whose
 * backend gave up, and wakes the backends. */
void deliver_replies(const std::vector<SlotReply> &replies);

} // namespace atomix

#endif
