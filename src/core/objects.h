/*
 * objects.h — the state of coordination objects (locks, semaphores,
 * elections, id generators, sessions, node leases) as stored in the
 * partition's object table: one row per object, kind + name + an encoded
 * blob.  Pure C++, shared by the state machine (which rewrites them) and the
 * SQL read functions (which decode them for lock_holder, election_get, ...).
 *
 * Blobs are rewritten whole on every change.  That keeps the storage
 * interface tiny and snapshots trivial; objects stay small (a lock's blob
 * grows with its waiters only).
 */
#ifndef ATOMIX_OBJECTS_H
#define ATOMIX_OBJECTS_H

#include <cstdint>
#include <string>
#include <vector>

namespace atomix {

/* Object kinds (the `kind` column of object_data). */
constexpr char kKindLock = 'l';
constexpr char kKindSemaphore = 'm';
constexpr char kKindElection = 'e';
constexpr char kKindIdGenerator = 'i';
constexpr char kKindSession = 's';
constexpr char kKindNode = 'n';
constexpr char kKindTombstone = 't'; /* a closed or expired session, remembered a while */

/* Entry kinds (the `kind` column of map_data). */
constexpr char kEntryMap = 'm';
constexpr char kEntryValue = 'v';
constexpr char kEntrySet = 's';

/* A session's node is in its top 16 bits. */
inline uint32_t session_node(uint64_t session) { return static_cast<uint32_t>(session >> 48); }
inline uint64_t session_seq(uint64_t session) { return session & 0xffffffffffffULL; }
/* Names of session, tombstone and node rows. */
std::string session_key(uint64_t session);
/* Sequences restart with each node incarnation, so a tombstone names both. */
std::string tombstone_key(uint64_t session, int64_t epoch);
std::string node_key(uint32_t node);

/* A caller waiting for a lock or permits. */
struct Waiter {
    uint64_t request_id = 0;
    uint64_t session = 0;
    int64_t deadline_us = 0; /* log time; 0 = waits forever */
    int32_t permits = 1;
};

struct LockState {
    uint64_t holder = 0; /* session; 0 = free */
    int64_t token = 0;
    int64_t since_us = 0;
    uint64_t grant_request = 0; /* the request id the grant answered */
    std::vector<Waiter> waiters; /* first come, first served */
};

struct SemaphoreHolder {
    uint64_t session = 0;
    int32_t permits = 0;
    /* the latest acquire's request and permits, so a cancelled wait that
     * was granted meanwhile can give exactly those back */
    uint64_t last_request = 0;
    int32_t last_permits = 0;
};

struct SemaphoreState {
    int32_t permits = 0;   /* total */
    int32_t available = 0;
    std::vector<SemaphoreHolder> holders;
    std::vector<Waiter> waiters;
};

struct Candidate {
    std::string id;
    uint64_t session = 0;
};

struct ElectionState {
    int64_t term = 0;
    std::vector<Candidate> candidates; /* the leader first */
};

/* What a session holds or waits for in this partition (released when the
 * session closes or expires). */
struct SessionRef {
    char kind = 0;
    std::string name;
};

struct SessionState {
    int64_t epoch = 0;
    std::vector<SessionRef> refs;
};

/* A node's lease in this partition: its incarnation, renewal timeout and
 * the sessions it has here.  The row's deadline is when the lease expires. */
struct NodeLease {
    int64_t epoch = 0;
    int64_t timeout_us = 0;
    std::vector<uint64_t> sessions;
    /* sessions the last keep-alive did not list: closed if the next one
     * does not list them either (one keep-alive may have been overtaken by
     * the session's first command here during a leader change) */
    std::vector<uint64_t> unlisted;
};

std::string encode_lock(const LockState &s);
LockState decode_lock(const std::string &blob);
std::string encode_semaphore(const SemaphoreState &s);
SemaphoreState decode_semaphore(const std::string &blob);
std::string encode_election(const ElectionState &s);
ElectionState decode_election(const std::string &blob);
std::string encode_session(const SessionState &s);
SessionState decode_session(const std::string &blob);
std::string encode_node(const NodeLease &s);
NodeLease decode_node(const std::string &blob);
std::string encode_i64(int64_t v);
int64_t decode_i64(const std::string &blob);

} // namespace atomix

#endif
