/*
 * memory_storage.h — PartitionStorage in plain C++ containers.
 *
 * Used by the unit tests and the raft_fixture test, where replicas run
 * without a server.  Ordered containers make dumps comparable byte for byte.
 */
#ifndef ATOMIX_MEMORY_STORAGE_H
#define ATOMIX_MEMORY_STORAGE_H

#include <algorithm>
#include <map>
#include <tuple>
#include <utility>

#include "state_machine.h"

namespace atomix {

class MemoryStorage : public PartitionStorage {
  public:
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
    void counter_put(const std::string &name, int64_t value) override { counters_[name] = value; }

    std::optional<RequestRecord> request_lookup(uint64_t request_id) override
    {
        auto it = requests_.find(request_id);
        if (it == requests_.end())
            return std::nullopt;
        return it->second;
    }
    void request_record(const std::vector<RequestRecord> &records) override
    {
        for (const RequestRecord &r : records)
            requests_[r.request_id] = r;
    }
    void request_purge(int64_t before_us) override
    {
        for (auto it = requests_.begin(); it != requests_.end();)
            it = it->second.recorded_at_us < before_us ? requests_.erase(it) : std::next(it);
    }
    void for_each_request(const std::function<void(const RequestRecord &)> &fn) override
    {
        for (auto &kv : requests_)
            fn(kv.second);
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
        requests_.clear();
        objects_.clear();
    }

    size_t map_count() const { return maps_.size(); }

  private:
    PartitionMeta meta_;
    std::map<std::tuple<char, std::string, std::string>, MapRow> maps_;
    std::map<std::pair<char, std::string>, ObjectRow> objects_;
    std::map<std::string, int64_t> counters_;
    std::map<uint64_t, RequestRecord> requests_;
};

} // namespace atomix

#endif
