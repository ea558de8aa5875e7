/*
 * session_registry.h — the worker's side of the sessions in shared memory
 * (src/sql/shmem.h, src/sql/session.cpp): which sessions are alive on this node and
 * in which partitions, which were closed, and how long each partition's
 * lease is vouched for.
 */
#ifndef ATOMIX_SESSION_REGISTRY_H
#define ATOMIX_SESSION_REGISTRY_H

#include <cstdint>
#include <vector>

namespace atomix {

struct SessionSnapshot {
    /* live (not expired) session ids, by partition */
    std::vector<std::vector<uint64_t>> by_partition;
    uint64_t max_seq = 0; /* sequence of the newest session opened so far */
};

struct ClosedSessionInfo {
    uint64_t id = 0;
    std::vector<int32_t> partitions;
};

int64_t node_epoch_us();

/* Whether a backend opened a session or touched a new partition since the
 * last call (and clears the flag). */
bool sessions_changed();
void scan_sessions(int32_t partitions, SessionSnapshot &out);

/* Sessions whose backends exited since the last call. */
std::vector<ClosedSessionInfo> take_closed_sessions();

/* Flags the live sessions that touched `partition` as expired (their
 * backends get an error on their next call) and returns them. */
std::vector<ClosedSessionInfo> expire_sessions_in(int32_t partition);

/* Flags one session expired (the log closed it); false if it is not live
 * on this node. */
bool expire_session_id(uint64_t id);

/* Whether this node flagged the session expired (false if it is not here:
 * its backend is gone, nobody waits for an answer). */
bool session_flagged_expired(uint64_t id);

int64_t lease_valid_until(int32_t partition);
void extend_lease(int32_t partition, int64_t until_us);

} // namespace atomix

#endif
