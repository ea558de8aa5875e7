/*
 * request_filter.h — which request ids are certainly NOT in a partition's
 * request log, without asking the table.
 *
 * Applying an entry looks every request id in it up in
 * atomix.request_log_p<N> (at most once, for every copy of a request).
 * Nearly every id is new, and the lookup — one SELECT per entry — was 19%
 * of the raft worker's time under map_put.  This filter answers "not there"
 * for most new ids so only the rest are looked up.
 *
 * It is a Bloom filter per minute of the records' log time (the request
 * log is purged by log time, a minute at a time: a minute's filter goes when
 * every record of it may be gone).  It never answers "not there" for an id
 * that was added, so it must see every row the table gets: PgStorage adds
 * what it inserts, and starts over from the table (reset()) whenever the
 * table may hold rows it did not see (first use, a snapshot restore).  An id
 * added whose insert was then rolled back only costs a lookup later.
 *
 * Each minute's bit array is sized from the busiest minute so far (16 bits
 * and 5 probes per id: ~0.15% false "maybe"s), from 1 kB to 1 MB; a minute that
 * outgrows it gets another array, twice as large.
 *
 * Pure C++; tested in test/unit/test_request_filter.cpp.
 */
#ifndef ATOMIX_REQUEST_FILTER_H
#define ATOMIX_REQUEST_FILTER_H

#include <algorithm>
#include <cstdint>
#include <map>
#include <vector>

namespace atomix {

class RequestFilter {
  public:
    static constexpr int64_t kMinuteUs = 60LL * 1000000;
    static constexpr size_t kMinBits = 8 * 1024;
    static constexpr size_t kMaxBits = 8 * 1024 * 1024;
    static constexpr int kHashes = 5;

    /* The filter knows nothing: every id is a "maybe" until the caller has
     * added every row of the table again and called mark_complete(). */
    void reset()
    {
        minutes_.clear();
        complete_ = false;
    }
    void mark_complete() { complete_ = true; }
    bool complete() const { return complete_; }

    void add(uint64_t id, int64_t recorded_at_us)
    {
        Part &part = part_for(minute_of(recorded_at_us));
        uint64_t h = mix(id);
        for (int i = 0; i < kHashes; i++) {
            size_t bit = probe(h, i, part.bits.size() * 64);
            part.bits[bit / 64] |= 1ULL << (bit % 64);
        }
        part.count++;
    }

    /* false: the id is certainly not in the table; true: it may be */
    bool may_contain(uint64_t id) const
    {
        if (!complete_)
            return true;
        uint64_t h = mix(id);
        for (const auto &kv : minutes_)
            for (const Part &part : kv.second.parts) {
                bool all = true;
                for (int i = 0; i < kHashes && all; i++) {
                    size_t bit = probe(h, i, part.bits.size() * 64);
                    all = (part.bits[bit / 64] >> (bit % 64)) & 1;
                }
                if (all)
                    return true;
            }
        return false;
    }

    /* The table dropped every record older than before_us: forget the
     * minutes that lie wholly before it. */
    void forget_before(int64_t before_us)
    {
        while (!minutes_.empty() && (minutes_.begin()->first + 1) * kMinuteUs <= before_us)
            minutes_.erase(minutes_.begin());
    }

    size_t minutes() const { return minutes_.size(); }
    size_t bytes() const
    {
        size_t n = 0;
        for (const auto &kv : minutes_)
            for (const Part &part : kv.second.parts)
                n += part.bits.size() * 8;
        return n;
    }

  private:
    /* One bit array, good for `capacity` ids at 16 bits each; a
     * minute that outgrows its array gets another, twice as large. */
    struct Part {
        std::vector<uint64_t> bits;
        uint64_t count = 0;
        uint64_t capacity = 0;
    };
    struct Minute {
        std::vector<Part> parts;
        uint64_t count() const
        {
            uint64_t n = 0;
            for (const Part &p : parts)
                n += p.count;
            return n;
        }
    };

    static int64_t minute_of(int64_t us) { return us >= 0 ? us / kMinuteUs : (us - kMinuteUs + 1) / kMinuteUs; }

    Part &part_for(int64_t minute)
    {
        auto it = minutes_.find(minute);
        if (it == minutes_.end()) {
            /* sized for the busiest minute seen so far */
            uint64_t expect = 0;
            for (const auto &kv : minutes_)
                expect = std::max<uint64_t>(expect, kv.second.count());
            it = minutes_.emplace(minute, Minute()).first;
            add_part(it->second, expect * 16);
        }
        Minute &m = it->second;
        if (m.parts.back().count >= m.parts.back().capacity)
            add_part(m, m.parts.back().bits.size() * 64 * 2);
        return m.parts.back();
    }

    static void add_part(Minute &m, uint64_t want_bits)
    {
        size_t bits = kMinBits;
        while (bits < kMaxBits && bits < want_bits)
            bits *= 2;
        Part part;
        part.bits.assign(bits / 64, 0);
        part.capacity = bits / 16;
        m.parts.push_back(std::move(part));
    }

    /* splitmix64 finalizer: request ids are structured (node, incarnation,
     * counter), their bits must be spread before indexing */
    static uint64_t mix(uint64_t x)
    {
        x += 0x9e3779b97f4a7c15ULL;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
        return x ^ (x >> 31);
    }
    /* double hashing: probe i of n bits (n a power of two) */
    static size_t probe(uint64_t h, int i, size_t n)
    {
        uint64_t a = h, b = (h >> 32) | 1;
        return static_cast<size_t>((a + static_cast<uint64_t>(i) * b * 0x9e3779b97f4a7c15ULL) & (n - 1));
    }

    std::map<int64_t, Minute> minutes_;
    bool complete_ = false;
};

} // namespace atomix

#endif
