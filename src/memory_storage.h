/*
 * memory_storage.h — PartitionStorage in plain C++ containers.
 *
 * Used by the unit tests and the raft_fixture test, where replicas run
 * without a server.  Ordered containers make dumps comparable byte for byte.
 */
#ifndef ATOMIX_MEMORY_STORAGE_H
#define ATOMIX_MEMORY_STORAGE_H

#include <map>
#include <utility>

#include "state_machine.h"

namespace atomix {

class MemoryStorage : public PartitionStorage {
  public:
    PartitionMeta load_meta() override { return meta_; }
    void store_meta(const PartitionMeta &meta) override { meta_ = meta; }

    std::optional<MapRow> map_get(const std::string &map, const std::string &key) override
    {
        auto it = maps_.find({map, key});
        if (it == maps_.end())
            return std::nullopt;
        return it->second;
    }
    void map_put(const std::string &map, const std::string &key, const MapRow &row) override
    {
        maps_[{map, key}] = row;
    }
    bool map_remove(const std::string &map, const std::string &key) override
    {
        return maps_.erase({map, key}) > 0;
    }
    int64_t map_clear(const std::string &map) override
    {
        int64_t n = 0;
        for (auto it = maps_.begin(); it != maps_.end();) {
            if (it->first.first == map) {
                it = maps_.erase(it);
                n++;
            } else {
                ++it;
            }
        }
        return n;
    }
    int64_t map_purge_expired(int64_t now_us) override
    {
        int64_t n = 0;
        for (auto it = maps_.begin(); it != maps_.end();) {
            if (it->second.expires_at_us && *it->second.expires_at_us <= now_us) {
                it = maps_.erase(it);
                n++;
            } else {
                ++it;
            }
        }
        return n;
    }
    std::optional<int64_t> map_next_expiry() override
    {
        std::optional<int64_t> best;
        for (auto &kv : maps_)
            if (kv.second.expires_at_us && (!best || *kv.second.expires_at_us < *best))
                best = kv.second.expires_at_us;
        return best;
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
            fn(MapEntry{kv.first.first, kv.first.second, kv.second});
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
    }

    size_t map_count() const { return maps_.size(); }

  private:
    PartitionMeta meta_;
    std::map<std::pair<std::string, std::string>, MapRow> maps_;
    std::map<std::string, int64_t> counters_;
    std::map<uint64_t, RequestRecord> requests_;
};

} // namespace atomix

#endif
