/*
 * memory_storage.h — PartitionStorage in plain C++ containers.
 *
 * Used by the unit tests and the raft_fixture test, where replicas run
 * without a server.  Ordered containers make dumps comparable byte for byte.
 *
 * It is exactly as strict as the Postgres tables (bgworker/pg_storage.cpp):
 * whatever Postgres would refuse, this refuses too, by throwing — a btree
 * key over the index row size limit, a write while writes are made to fail.
 * A double that accepted more would hide the bugs the worker then hits.
 */
#ifndef ATOMIX_MEMORY_STORAGE_H
#define ATOMIX_MEMORY_STORAGE_H

#include <algorithm>
#include <map>
#include <set>
#include <stdexcept>
#include <tuple>
#include <utility>

#include "state_machine.h"

namespace atomix {

/* The largest btree index row Postgres accepts with 8 kB pages. */
constexpr size_t kBtreeMaxRowBytes = 2704;

class StorageRefused : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

class MemoryStorage : public PartitionStorage {
  public:
    /* Test hook: every write fails while set (an injected storage failure). */
    bool fail_writes = false;

    PartitionMeta load_meta() override { return meta_; }
    void store_meta(const PartitionMeta &meta) override { meta_ = meta; }

    std::optional<MapRow> map_get(char kind, const std::string &map, const std::string &key) override
    {
        auto it = maps_.find({kind, map, key});
        if (it == maps_.end())
            return std::nullopt;
        return it->second;
    }
    void map_put(char kind, const std::string &map, const std::string &key, const MapRow &row) override
    {
        check_write();
        /* btree over (kind, map, key): a varlena header per text column */
        check_index_row(1 + 4 + map.size() + 4 + key.size());
        maps_[{kind, map, key}] = row;
    }
    bool map_remove(char kind, const std::string &map, const std::string &key) override
    {
        return maps_.erase({kind, map, key}) > 0;
    }
    int64_t map_clear(char kind, const std::string &map) override
    {
        int64_t n = 0;
        for (auto it = maps_.begin(); it != maps_.end();) {
            if (std::get<0>(it->first) == kind && std::get<1>(it->first) == map) {
                it = maps_.erase(it);
                n++;
            } else {
                ++it;
            }
        }
        return n;
    }
    std::vector<EntryKey> map_purge_expired(int64_t now_us) override
    {
        std::vector<EntryKey> out;
        for (auto it = maps_.begin(); it != maps_.end();) {
            if (it->second.expires_at_us && *it->second.expires_at_us <= now_us) {
                out.push_back(EntryKey{std::get<0>(it->first), std::get<1>(it->first),
                                       std::get<2>(it->first)});
                it = maps_.erase(it);
            } else {
                ++it;
            }
        }
        return out;
    }
    std::optional<int64_t> map_next_expiry() override
    {
        std::optional<int64_t> best;
        for (auto &kv : maps_)
            if (kv.second.expires_at_us && (!best || *kv.second.expires_at_us < *best))
                best = kv.second.expires_at_us;
        return best;
    }

    std::optional<ObjectRow> object_get(char kind, const std::string &name) override
    {
        auto it = objects_.find({kind, name});
        if (it == objects_.end())
            return std::nullopt;
        return it->second;
    }
    void object_put(char kind, const std::string &name, const ObjectRow &row) override
    {
        check_write();
        check_index_row(1 + 4 + name.size());
        objects_[{kind, name}] = row;
    }
    void object_remove(char kind, const std::string &name) override { objects_.erase({kind, name}); }
    std::vector<ObjectKey> objects_due(int64_t now_us) override
    {
        std::vector<std::pair<int64_t, ObjectKey>> due;
        for (auto &kv : objects_)
            if (kv.second.deadline_us && *kv.second.deadline_us <= now_us)
                due.push_back({*kv.second.deadline_us, ObjectKey{kv.first.first, kv.first.second}});
        std::stable_sort(due.begin(), due.end(),
                         [](const auto &a, const auto &b) { return a.first < b.first; });
        std::vector<ObjectKey> out;
        for (auto &d : due)
            out.push_back(d.second);
        return out;
    }
    std::optional<int64_t> object_next_deadline() override
    {
        std::optional<int64_t> best;
        for (auto &kv : objects_)
            if (kv.second.deadline_us && (!best || *kv.second.deadline_us < *best))
                best = kv.second.deadline_us;
        return best;
    }
    std::vector<std::string> object_names(char kind) override
    {
        std::vector<std::string> out;
        for (auto &kv : objects_)
            if (kv.first.first == kind)
                out.push_back(kv.first.second);
        return out;
    }
    void for_each_object(const std::function<void(const ObjectKey &, const ObjectRow &)> &fn) override
    {
        for (auto &kv : objects_)
            fn(ObjectKey{kv.first.first, kv.first.second}, kv.second);
    }

    std::optional<int64_t> counter_get(const std::string &name) override
    {
        auto it = counters_.find(name);
        if (it == counters_.end())
            return std::nullopt;
        return it->second;
    }
    void counter_put(const std::string &name, int64_t value) override
    {
        check_write();
        check_index_row(4 + name.size());
        counters_[name] = value;
    }

    void for_each_map_entry(const std::function<void(const MapEntry &)> &fn) override
    {
        for (auto &kv : maps_)
            fn(MapEntry{std::get<0>(kv.first), std::get<1>(kv.first), std::get<2>(kv.first), kv.second});
    }
    void for_each_counter(const std::function<void(const CounterRow &)> &fn) override
    {
        for (auto &kv : counters_)
            fn(CounterRow{kv.first, kv.second});
    }
    void clear_all() override
    {
        maps_.clear();
        counters_.clear();
        objects_.clear();
    }

    size_t map_count() const { return maps_.size(); }

  private:
    void check_write() const
    {
        if (fail_writes)
            throw StorageRefused("injected storage failure");
    }
    static void check_index_row(size_t bytes)
    {
        if (bytes + 16 > kBtreeMaxRowBytes)
            throw StorageRefused("index row size exceeds btree version 4 maximum 2704");
    }

    PartitionMeta meta_;
    std::map<std::tuple<char, std::string, std::string>, MapRow> maps_;
    std::map<std::pair<char, std::string>, ObjectRow> objects_;
    std::map<std::string, int64_t> counters_;
};

} // namespace atomix

#endif
