/*
 * pg_storage.h — PartitionStorage over one partition's Postgres tables.
 *
 * Used only by the raft worker, inside its apply transaction (apply_txn.h).
 * Statements are prepared once per partition and kept.  The partition's
 * meta row (applied index, log time, request origins) is cached and written once per
 * transaction by flush_meta(), just before commit, so the applied index is
 * always committed together with the state it describes.
 */
#ifndef ATOMIX_PG_STORAGE_H
#define ATOMIX_PG_STORAGE_H

extern "C" {
#include "postgres.h"
#include "executor/spi.h"
}

#include "table_writer.h"
#include "state_machine.h"

namespace atomix {

class PgStorage : public PartitionStorage {
  public:
    explicit PgStorage(int32_t partition)
        : partition_(partition), map_writer_("map_data_p" + std::to_string(partition)),
          counter_writer_("counter_data_p" + std::to_string(partition)),
          object_writer_("object_data_p" + std::to_string(partition))
    {
    }

    PartitionMeta load_meta() override;
    void store_meta(const PartitionMeta &meta) override;
    /* Writes the cached meta if it changed; call inside the transaction. */
    void flush_meta();
    /* Puts the cached meta back after the entry that changed it rolled back. */
    void restore_cached_meta(const PartitionMeta &meta)
    {
        meta_ = meta;
        meta_loaded_ = true;
    }
    uint64_t cached_applied_index() const { return meta_loaded_ ? meta_.applied_index : 0; }

    std::optional<MapRow> map_get(char kind, const std::string &map, const std::string &key) override;
    void map_put(char kind, const std::string &map, const std::string &key, const MapRow &row) override;
    bool map_remove(char kind, const std::string &map, const std::string &key) override;
    int64_t map_clear(char kind, const std::string &map) override;
    std::vector<EntryKey> map_purge_expired(int64_t now_us) override;
    std::optional<int64_t> map_next_expiry() override;

    std::optional<ObjectRow> object_get(char kind, const std::string &name) override;
    void object_put(char kind, const std::string &name, const ObjectRow &row) override;
    void object_remove(char kind, const std::string &name) override;
    std::vector<ObjectKey> objects_due(int64_t now_us) override;
    std::optional<int64_t> object_next_deadline() override;
    std::vector<std::string> object_names(char kind) override;
    void for_each_object(
        const std::function<void(const ObjectKey &, const ObjectRow &)> &fn) override;

    std::optional<int64_t> counter_get(const std::string &name) override;
    void counter_put(const std::string &name, int64_t value) override;

    void for_each_map_entry(const std::function<void(const MapEntry &)> &fn) override;
    void for_each_counter(const std::function<void(const CounterRow &)> &fn) override;
    void clear_all() override;

  private:
    enum Stmt {
        META_GET,
        META_PUT,
        META_PUT_BEFORE_ORIGINS,
        MAP_GET,
        MAP_PUT,
        MAP_REMOVE,
        MAP_CLEAR,
        MAP_PURGE,
        MAP_NEXT_EXPIRY,
        COUNTER_GET,
        COUNTER_PUT,
        MAP_ALL,
        COUNTER_ALL,
        CLEAR_MAP,
        CLEAR_COUNTERS,
        OBJECT_GET,
        OBJECT_PUT,
        OBJECT_REMOVE,
        OBJECTS_DUE,
        OBJECT_NEXT_DEADLINE,
        OBJECT_ALL,
        CLEAR_OBJECTS,
        OBJECT_NAMES,
        STMT_COUNT
    };
    SPIPlanPtr plan(Stmt stmt);
    /* Executes a kept plan; returns SPI_processed. */
    uint64 exec(Stmt stmt, Datum *args, const char *nulls);

    int32_t partition_;
    SPIPlanPtr plans_[STMT_COUNT] = {};
    /* the hot writes, without SQL (table_writer.h) */
    TableWriter map_writer_;
    TableWriter counter_writer_;
    TableWriter object_writer_;
    PartitionMeta meta_;
    bool meta_loaded_ = false;
    bool meta_dirty_ = false;
    bool has_origins_ = true; /* partition_state.origins exists (atomix 0.5 on) */
};

} // namespace atomix

#endif
