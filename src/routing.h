/*
 * routing.h — which partition owns a piece of primitive state.
 *
 * A map is spread over all partitions by (map, key); a counter lives in the
 * partition of its name.  The hash is fixed forever (FNV-1a 64 over
 * length-prefixed parts, then a final avalanche): changing it would move
 * existing state, so it is pinned by a unit test with known values.
 */
#ifndef ATOMIX_ROUTING_H
#define ATOMIX_ROUTING_H

#include <cstdint>
#include <string>

namespace atomix {

uint64_t hash_parts(const std::string &a, const std::string &b);

inline uint32_t map_partition(const std::string &map, const std::string &key, uint32_t partitions)
{
    return static_cast<uint32_t>(hash_parts(map, key) % partitions);
}

inline uint32_t counter_partition(const std::string &name, uint32_t partitions)
{
    /* counters hash as (name, "\x01"); sharing a partition with some map key
     * is harmless: the hash only chooses the partition */
    return static_cast<uint32_t>(hash_parts(name, std::string("\x01", 1)) % partitions);
}

} // namespace atomix

#endif
