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

/* The part of a map key that chooses its partition: the text between the
 * first '{' and the next '}' when it is not empty (a "hash tag", so that
 * related keys share a partition and one map_commit), else the whole key. */
std::string routing_key(const std::string &key);

inline uint32_t map_partition(const std::string &map, const std::string &key, uint32_t partitions)
{
    return static_cast<uint32_t>(hash_parts(map, routing_key(key)) % partitions);
}

/* Values, locks, semaphores, elections and id generators live in the
 * partition of their name; each kind hashes with its own tag so that a
 * lock and a value of the same name need not share a partition. */
inline uint32_t named_partition(const std::string &name, char kind, uint32_t partitions)
{
    return static_cast<uint32_t>(hash_parts(name, std::string("\x02", 1) + kind) % partitions);
}

/* A set is spread like a map, by (set, element). */
inline uint32_t set_partition(const std::string &set, const std::string &element, uint32_t partitions)
{
    return static_cast<uint32_t>(hash_parts(set, std::string("\x03", 1) + element) % partitions);
}

inline uint32_t counter_partition(const std::string &name, uint32_t partitions)
{
    /* counters hash as (name, "\x01"); sharing a partition with some map key
     * is harmless: the hash only chooses the partition */
    return static_cast<uint32_t>(hash_parts(name, std::string("\x01", 1)) % partitions);
}

} // namespace atomix

#endif
