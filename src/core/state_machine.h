/*
 * state_machine.h — the partition state machine, free of Postgres.
 *
 * One StateMachine per partition replica.  It applies packed Raft entries to
 * a PartitionStorage: the raft worker plugs in SPI-backed storage over the
 * partition tables, unit tests and the raft_fixture test plug in
 * MemoryStorage.  Everything that must be identical on every replica is
 * decided here, from the entry bytes and the stored state only:
 *   - versions: (raft index << 16) | position of the command in the entry;
 *   - time: the leader's stamp in the entry header, never a local clock;
 *   - idempotence: an entry at or below the stored applied index is skipped,
 *     which makes replaying the log after a crash harmless.
 */
#ifndef ATOMIX_STATE_MACHINE_H
#define ATOMIX_STATE_MACHINE_H

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "codec.h"
#include "objects.h"
#include "request_origins.h"

namespace atomix {

/* A packed entry holds at most this many commands (the low 16 version bits). */
constexpr uint32_t kMaxCommandsPerEntry = 65535;

inline int64_t make_version(uint64_t index, uint32_t position)
{
    return static_cast<int64_t>((index << 16) | position);
}

struct PartitionMeta {
    uint64_t applied_index = 0;
    int64_t log_time_us = 0; /* latest leader stamp applied */
    /* what the partition remembers of each node sending it commands, for at
     * most once (request_origins.h's encoding; "" when empty) */
    std::string origins;
};

struct MapRow {
    std::string value;
    int64_t version = 0;
    std::optional<int64_t> expires_at_us;
};

/* One keyed entry: kind is kEntryMap, kEntryValue or kEntrySet. */
struct EntryKey {
    char kind = kEntryMap;
    std::string map;
    std::string key;
};

struct MapEntry {
    char kind = kEntryMap;
    std::string map;
    std::string key;
    MapRow row;
};

struct CounterRow {
    std::string name;
    int64_t value = 0;
};

/* A coordination object row (objects.h has the blob formats). */
struct ObjectRow {
    std::string state;
    std::optional<int64_t> deadline_us; /* log time it next needs attention */
};

struct ObjectKey {
    char kind = 0;
    std::string name;
};

/* How often (log time) quiet origins are retired and idle ones forgotten
 * (request_origins.h), and how long a closed session's tombstone is kept. */
constexpr int64_t kForgetEveryUs = 60LL * 1000000;
constexpr int64_t kTombstoneKeepUs = kOriginIdleUs;

/* Where a partition's state lives.  Implementations may throw (the PG one
 * turns Postgres errors into exceptions); the caller decides what to do. */
class PartitionStorage {
  public:
    virtual ~PartitionStorage() = default;

    virtual PartitionMeta load_meta() = 0;
    virtual void store_meta(const PartitionMeta &meta) = 0;

    /* Keyed entries of maps, values and sets (kind tells which). */
    virtual std::optional<MapRow> map_get(char kind, const std::string &map, const std::string &key) = 0;
    virtual void map_put(char kind, const std::string &map, const std::string &key, const MapRow &row) = 0;
    virtual bool map_remove(char kind, const std::string &map, const std::string &key) = 0;
    virtual int64_t map_clear(char kind, const std::string &map) = 0;
    /* Removes entries with expires_at <= now; returns which. */
    virtual std::vector<EntryKey> map_purge_expired(int64_t now_us) = 0;
    virtual std::optional<int64_t> map_next_expiry() = 0;

    virtual std::optional<ObjectRow> object_get(char kind, const std::string &name) = 0;
    virtual void object_put(char kind, const std::string &name, const ObjectRow &row) = 0;
    virtual void object_remove(char kind, const std::string &name) = 0;
    /* Objects whose deadline <= now, by (deadline, kind, name). */
    virtual std::vector<ObjectKey> objects_due(int64_t now_us) = 0;
    virtual std::optional<int64_t> object_next_deadline() = 0;
    /* Names of every object of one kind, in byte order. */
    virtual std::vector<std::string> object_names(char kind) = 0;

    virtual std::optional<int64_t> counter_get(const std::string &name) = 0;
    virtual void counter_put(const std::string &name, int64_t value) = 0;

    /* Whole-state access for snapshots. */
    virtual void for_each_map_entry(const std::function<void(const MapEntry &)> &fn) = 0;
    virtual void for_each_counter(const std::function<void(const CounterRow &)> &fn) = 0;
    virtual void for_each_object(
        const std::function<void(const ObjectKey &, const ObjectRow &)> &fn) = 0;
    virtual void clear_all() = 0;
};

enum class ResultCode : uint8_t {
    Ok = 0,
    Null = 1,       /* the SQL result is NULL (version mismatch, key exists) */
    OutOfRange = 2, /* counter arithmetic would overflow bigint */
    /* The caller waits: a later apply answers the same request id (a lock
     * or permits granted, or the wait timed out). */
    Pending = 3,
    SessionExpired = 4, /* the caller's session was closed or expired */
    NotFound = 5,       /* the semaphore does not exist */
    Invalid = 6,        /* more permits than the semaphore has */
    Conflict = 7,       /* the candidate id belongs to another session */
    NotOwner = 8,       /* withdrawing another session's candidate */
    /* The command breaks a limit every replica enforces (a name, key or
     * value too long, a NUL byte in a name or key): refused before any
     * write.  The SQL layer refuses these first; this catches what a peer or
     * an older node may still send. */
    Refused = 9,
    /* A copy of a request its origin node is already done with (it saw the
     * request applied, or told its caller it failed): not run again, and
     * nobody waits for this answer (request_origins.h). */
    Finished = 10,
};

/* Limits the state machine enforces itself (the SQL layer's are the same or
 * tighter: atomix.max_value_size is at most this). */
constexpr size_t kSmMaxNameBytes = 255;
constexpr size_t kSmMaxKeyBytes = 1024;
constexpr size_t kSmMaxValueBytes = 64u * 1024 * 1024;

struct CommandResult {
    uint64_t request_id = 0;
    ResultCode code = ResultCode::Ok;
    int64_t value = 0; /* version, count, counter value or 0/1 */
};

/* A change a watch reports (see docs/coordination.md for the payload). */
struct WatchEvent {
    const char *kind = ""; /* map, value, set, lock, election */
    std::string name;
    std::string key;
    const char *event = ""; /* put, remove, expire, acquired, released, leader, candidates */
    int64_t version = 0;
};

/* Until a node's keep-alive says otherwise, its sessions expire after this. */
constexpr int64_t kDefaultSessionTimeoutUs = 10LL * 1000000;

class StateMachine {
  public:
    explicit StateMachine(PartitionStorage &storage) : storage_(storage) {}

    /* Applies the packed entry at raft `index`.  Returns false, changing
     * nothing, when the storage already holds that index.  A malformed entry
     * is skipped (every replica skips it the same way) and reported through
     * `malformed`.  One result per command is appended to `results`, plus
     * one for every earlier Pending request the entry settles (grants,
     * timeouts, waiters of closed sessions). */
    bool apply(uint64_t index, const void *data, size_t len, std::vector<CommandResult> &results,
               bool *malformed = nullptr);

    /* The state as one buffer: meta, then every map entry and counter. */
    std::string snapshot();

    /* Installs a snapshot.  Returns false, changing nothing, when the storage
     * is already at or past the snapshot's index (a durable replica restarting
     * after its last snapshot keeps its newer tables). */
    bool restore(const void *data, size_t len);

    /* Whether copies of requests are looked for (request_origins.h).  Must
     * be the same on every replica of a partition: a one-node cluster never
     * retries (there is no other leader to retry against), so it skips the
     * cost; copies inside one entry are still answered once. */
    void set_track_origins(bool enabled) { track_origins_ = enabled; }

    /* Copies of an earlier request answered with its recorded outcome, or
     * refused as finished, since this replica started. */
    uint64_t duplicates_answered() const { return duplicates_answered_; }

    /* The recorded outcome of an applied request (after a snapshot restore:
     * the forwards its entries carried are answered from it). */
    std::optional<RecordedOutcome> recorded_outcome(uint64_t request_id);

    /* Forgets cached derived state (after the storage rolled back). */
    void forget_caches() { next_deadline_known_ = false; }

    /* Changes applied from now on are appended here (nullptr: none). */
    void set_event_sink(std::vector<WatchEvent> *events) { events_ = events; }
    /* Sessions closed by entries applied from now on (nullptr: none). */
    void set_closed_sink(std::vector<uint64_t> *closed) { closed_sink_ = closed; }

    /* The earliest log time at which something expires or times out (an
     * entry's ttl, a waiter's timeout, a node lease): the leader proposes an
     * empty entry then, so applying it settles them on every replica. */
    std::optional<int64_t> next_deadline();

    /* The cached next deadline without touching storage; false when unknown
     * (the worker asks inside its apply transaction, then uses this). */
    bool cached_next_deadline(std::optional<int64_t> *out) const
    {
        if (next_deadline_known_)
            *out = next_deadline_;
        return next_deadline_known_;
    }

  private:
    /* Where the command being applied sits, for versions and tokens. */
    struct Context {
        uint64_t index = 0;
        uint32_t position = 0;
        int64_t now_us = 0;
        int64_t version() const { return make_version(index, position); }
    };

    CommandResult execute(const Command &cmd, const Context &ctx);
    static bool breaks_limits(const Command &cmd);
    void record_outcome(uint64_t request_id, ResultCode code, int64_t value, int64_t now_us);
    CommandResult map_write(const Command &cmd, char kind, const std::string &key, int64_t version,
                            int64_t now_us);
    CommandResult set_write(const Command &cmd, const Context &ctx);
    CommandResult map_commit(const Command &cmd, const Context &ctx);
    CommandResult id_reserve(const Command &cmd);
    void note_deadline(int64_t at_us);
    void emit(const char *kind, const std::string &name, const std::string &key,
              const char *event, int64_t version);
    void settle(uint64_t request_id, ResultCode code, int64_t value);

    /* sm_sessions.cpp */
    void settle_deadlines(const Context &ctx);
    ResultCode open_session(const Command &cmd, const Context &ctx);
    void add_session_ref(uint64_t session, char kind, const std::string &name);
    void drop_session_ref(uint64_t session, char kind, const std::string &name);
    void close_session(uint64_t session, int64_t epoch, const Context &ctx, ResultCode waiters_get);
    NodeLease load_node(uint32_t node, bool *found, std::optional<int64_t> *deadline);
    void store_node(uint32_t node, const NodeLease &lease, std::optional<int64_t> deadline);
    void expire_node(uint32_t node, const Context &ctx);
    CommandResult keep_alive(const Command &cmd, const Context &ctx);
    CommandResult session_close(const Command &cmd, const Context &ctx);
    CommandResult leases_renew(const Command &cmd, const Context &ctx);

    /* sm_locks.cpp */
    CommandResult lock_acquire(const Command &cmd, const Context &ctx);
    CommandResult lock_release(const Command &cmd, const Context &ctx);
    CommandResult wait_cancel(const Command &cmd, const Context &ctx);
    void remember_cancel(uint64_t waiting, char kind, const Context &ctx);
    void store_lock(const std::string &name, const LockState &lock, const Context &ctx);
    void grant_lock(const std::string &name, LockState &lock, const Context &ctx);
    void release_lock(const std::string &name, LockState &lock, const Context &ctx);
    void timeout_lock(const std::string &name, const Context &ctx);
    void lock_leave_session(const std::string &name, uint64_t session, const Context &ctx,
                            ResultCode waiters_get);
    CommandResult semaphore_create(const Command &cmd);
    CommandResult semaphore_acquire(const Command &cmd, const Context &ctx);
    CommandResult semaphore_release(const Command &cmd, const Context &ctx);
    void store_semaphore(const std::string &name, const SemaphoreState &sem);
    void grant_permits(const std::string &name, SemaphoreState &sem);
    void timeout_semaphore(const std::string &name, const Context &ctx);
    void semaphore_leave_session(const std::string &name, uint64_t session, ResultCode waiters_get);

    /* sm_elections.cpp */
    CommandResult election_change(const Command &cmd, const Context &ctx);
    void election_leave_session(const std::string &name, uint64_t session, const Context &ctx);
    void store_election(const std::string &name, const ElectionState &before,
                        ElectionState &after, const Context &ctx);

    PartitionStorage &storage_;
    bool next_deadline_known_ = false;
    bool track_origins_ = true;
    std::optional<int64_t> next_deadline_;
    std::vector<WatchEvent> *events_ = nullptr;
    std::vector<uint64_t> *closed_sink_ = nullptr;
    std::vector<CommandResult> *settled_ = nullptr; /* during apply */
    /* During apply: the partition's origins (request_origins.h), and the
     * outcomes of this entry's own requests (a one-node cluster keeps only
     * these; a wait settled in the same entry overwrites its Pending). */
    RequestOrigins origins_;
    std::unordered_map<uint64_t, RecordedOutcome> entry_outcomes_;
    int64_t settle_now_us_ = 0;
    uint64_t duplicates_answered_ = 0;
    std::vector<uint64_t> closing_; /* sessions a node lease expiry is closing */
    bool closing(uint64_t session) const
    {
        return std::find(closing_.begin(), closing_.end(), session) != closing_.end();
    }
};

} // namespace atomix

#endif
