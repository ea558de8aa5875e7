/*
 * routing.cpp — the partition hash (see routing.h).
 */
#include "routing.h"

#include "core_only.h" /* last: nothing above brought in Postgres */

namespace atomix {

static constexpr uint64_t kFnvOffset = 14695981039346656037ULL;
static constexpr uint64_t kFnvPrime = 1099511628211ULL;

static uint64_t fnv_add(uint64_t h, const std::string &s)
{
    /* length first, so ("ab","c") and ("a","bc") hash differently */
    uint64_t n = s.size();
    for (int i = 0; i < 8; i++) {
        h ^= (n >> (8 * i)) & 0xff;
        h *= kFnvPrime;
    }
    for (unsigned char c : s) {
        h ^= c;
        h *= kFnvPrime;
    }
    return h;
}

uint64_t hash_parts(const std::string &a, const std::string &b)
{
    uint64_t h = fnv_add(fnv_add(kFnvOffset, a), b);
    /* FNV's low bits are weak for short inputs; finish with a mix so that
     * `% partitions` spreads evenly */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

std::string routing_key(const std::string &key)
{
    size_t open = key.find('{');
    if (open == std::string::npos)
        return key;
    size_t close = key.find('}', open + 1);
    if (close == std::string::npos || close == open + 1)
        return key;
    return key.substr(open + 1, close - open - 1);
}

} // namespace atomix
