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

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "codec.h"

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
};

struct MapRow {
    std::string value;
    int64_t version = 0;
    std::optional<int64_t> expires_at_us;
};

struct MapEntry {
    std::string map;
    std::string key;
    MapRow row;
};

struct CounterRow {
    std::string name;
    int64_t value = 0;
};

/* The outcome of an applied client command, kept for a while so that a
 * retried command is answered, not applied twice. */
struct RequestRecord {
    uint64_t request_id = 0;
    uint8_t code = 0; /* ResultCode */
    int64_t value = 0;
    int64_t recorded_at_us = 0; /* log time */
};

/* How long applied request ids are remembered (log time), and how often the
 * old ones are dropped.  Retries stop well before (atomix.unavailable_timeout
 * is capped below this). */
constexpr int64_t kRequestLogWindowUs = 10LL * 60 * 1000000;
constexpr int64_t kRequestLogPurgeEveryUs = 60LL * 1000000;

/* Where a partition's state lives.  Implementations may throw (the PG one
 * turns Postgres errors into exceptions); the caller decides what to do. */
class PartitionStorage {
  public:
    virtual ~PartitionStorage() = default;

    virtual PartitionMeta load_meta() = 0;
    virtual void store_meta(const PartitionMeta &meta) = 0;

    virtual std::optional<MapRow> map_get(const std::string &map, const std::string &key) = 0;
    virtual void map_put(const std::string &map, const std::string &key, const MapRow &row) = 0;
    virtual bool map_remove(const std::string &map, const std::string &key) = 0;
    virtual int64_t map_clear(const std::string &map) = 0;
    /* Removes entries with expires_at <= now; returns how many. */
    virtual int64_t map_purge_expired(int64_t now_us) = 0;
    virtual std::optional<int64_t> map_next_expiry() = 0;

    virtual std::optional<int64_t> counter_get(const std::string &name) = 0;
    virtual void counter_put(const std::string &name, int64_t value) = 0;

    virtual std::optional<RequestRecord> request_lookup(uint64_t request_id) = 0;
    virtual void request_record(const std::vector<RequestRecord> &records) = 0;
    virtual void request_purge(int64_t before_us) = 0;

    /* Whole-state access for snapshots. */
    virtual void for_each_map_entry(const std::function<void(const MapEntry &)> &fn) = 0;
    virtual void for_each_counter(const std::function<void(const CounterRow &)> &fn) = 0;
    virtual void for_each_request(const std::function<void(const RequestRecord &)> &fn) = 0;
    virtual void clear_all() = 0;
};

enum class ResultCode : uint8_t {
    Ok = 0,
    Null = 1,       /* the SQL result is NULL (version mismatch, key exists) */
    OutOfRange = 2, /* counter arithmetic would overflow bigint */
};

struct CommandResult {
    uint64_t request_id = 0;
    ResultCode code = ResultCode::Ok;
    int64_t value = 0; /* version, count, counter value or 0/1 */
};

class StateMachine {
  public:
    explicit StateMachine(PartitionStorage &storage) : storage_(storage) {}

    /* Applies the packed entry at raft `index`.  Returns false, changing
     * nothing, when the storage already holds that index.  A malformed entry
     * is skipped (every replica skips it the same way) and reported through
     * `malformed`.  One result per command is appended to `results`. */
    bool apply(uint64_t index, const void *data, size_t len, std::vector<CommandResult> &results,
               bool *malformed = nullptr);

    /* The state as one buffer: meta, then every map entry and counter. */
    std::string snapshot();

    /* Installs a snapshot.  Returns false, changing nothing, when the storage
     * is already at or past the snapshot's index (a durable replica restarting
     * after its last snapshot keeps its newer tables). */
    bool restore(const void *data, size_t len);

    /* Whether applied client commands are recorded for retry detection.
     * Must be the same on every replica of a partition: a one-node cluster
     * never retries (there is no other leader to retry against), so it
     * skips the cost. */
    void set_request_log(bool enabled) { request_log_ = enabled; }

    std::optional<int64_t> next_expiry();

    /* The cached next expiry without touching storage; false when unknown
     * (the worker asks inside its apply transaction, then uses this). */
    bool cached_next_expiry(std::optional<int64_t> *out) const
    {
        if (next_expiry_known_)
            *out = next_expiry_;
        return next_expiry_known_;
    }

  private:
    CommandResult execute(const Command &cmd, uint64_t index, uint32_t position, int64_t now_us);
    CommandResult map_write(const Command &cmd, int64_t version, int64_t now_us);
    void note_expiry(int64_t expires_at_us);

    PartitionStorage &storage_;
    bool next_expiry_known_ = false;
    bool request_log_ = true;
    std::optional<int64_t> next_expiry_;
};

} // namespace atomix

#endif
