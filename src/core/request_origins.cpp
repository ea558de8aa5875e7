/*
 * request_origins.cpp — see request_origins.h.
 */
#include "request_origins.h"

#include <algorithm>

#include "codec.h"

#include "core_only.h" /* last: nothing above brought in Postgres */

namespace atomix {

static constexpr uint8_t kOriginsFormat = 1;

RequestOrigins RequestOrigins::decode(const std::string &bytes)
{
    RequestOrigins t;
    if (bytes.empty())
        return t;
    ByteReader r(bytes.data(), bytes.size());
    if (r.u8() != kOriginsFormat)
        throw DecodeError("unsupported request origins format");
    uint32_t n = r.u32();
    for (uint32_t i = 0; i < n; i++) {
        RequestOrigin o;
        o.key = r.u64();
        o.floor = r.u64();
        o.heard_us = r.i64();
        uint32_t k = r.u32();
        if (k > kMaxOutcomesPerOrigin)
            throw DecodeError("too many outcomes for one request origin");
        o.outcomes.reserve(k);
        for (uint32_t j = 0; j < k; j++) {
            RecordedOutcome out;
            out.request_id = r.u64();
            out.code = r.u8();
            out.value = r.i64();
            o.outcomes.push_back(out);
        }
        t.origins_.push_back(std::move(o));
    }
    if (!r.at_end())
        throw DecodeError("trailing bytes after request origins");
    return t;
}

std::string RequestOrigins::encode() const
{
    std::string out;
    if (origins_.empty())
        return out;
    ByteWriter w(out);
    w.u8(kOriginsFormat);
    w.u32(static_cast<uint32_t>(origins_.size()));
    for (const RequestOrigin &o : origins_) {
        w.u64(o.key);
        w.u64(o.floor);
        w.i64(o.heard_us);
        w.u32(static_cast<uint32_t>(o.outcomes.size()));
        for (const RecordedOutcome &out : o.outcomes) {
            w.u64(out.request_id);
            w.u8(out.code);
            w.i64(out.value);
        }
    }
    return out;
}

RequestOrigin *RequestOrigins::find(uint64_t key)
{
    auto it = std::lower_bound(origins_.begin(), origins_.end(), key,
                               [](const RequestOrigin &o, uint64_t k) { return o.key < k; });
    return it != origins_.end() && it->key == key ? &*it : nullptr;
}

const RequestOrigin *RequestOrigins::find(uint64_t key) const
{
    return const_cast<RequestOrigins *>(this)->find(key);
}

RequestOrigin &RequestOrigins::find_or_add(uint64_t key, int64_t now_us)
{
    auto it = std::lower_bound(origins_.begin(), origins_.end(), key,
                               [](const RequestOrigin &o, uint64_t k) { return o.key < k; });
    if (it == origins_.end() || it->key != key) {
        RequestOrigin o;
        o.key = key;
        o.heard_us = now_us;
        it = origins_.insert(it, std::move(o));
        changed_ = true;
    }
    return *it;
}

void RequestOrigins::raise_floor(RequestOrigin &o, uint64_t floor)
{
    if (floor <= o.floor)
        return;
    o.floor = floor;
    auto keep = std::lower_bound(o.outcomes.begin(), o.outcomes.end(), floor,
                                 [](const RecordedOutcome &x, uint64_t id) { return x.request_id < id; });
    o.outcomes.erase(o.outcomes.begin(), keep);
}

void RequestOrigins::heard(uint64_t request_id, uint64_t floor, int64_t now_us)
{
    RequestOrigin &o = find_or_add(request_id >> 32, now_us);
    if (o.heard_us != now_us) {
        o.heard_us = std::max(o.heard_us, now_us);
        changed_ = true;
    }
    /* a floor of another origin (or none) says nothing about this one */
    if (floor >> 32 == o.key && floor > o.floor) {
        raise_floor(o, floor);
        changed_ = true;
    }
}

RequestOrigins::Seen RequestOrigins::lookup(uint64_t request_id, RecordedOutcome *out) const
{
    const RequestOrigin *o = find(request_id >> 32);
    if (!o)
        return Seen::New;
    if (request_id < o->floor)
        return Seen::Finished;
    auto it = std::lower_bound(o->outcomes.begin(), o->outcomes.end(), request_id,
                               [](const RecordedOutcome &x, uint64_t id) { return x.request_id < id; });
    if (it == o->outcomes.end() || it->request_id != request_id)
        return Seen::New;
    if (out)
        *out = *it;
    return Seen::Applied;
}

void RequestOrigins::record(uint64_t request_id, uint8_t code, int64_t value, int64_t now_us)
{
    RequestOrigin &o = find_or_add(request_id >> 32, now_us);
    if (request_id < o.floor)
        return;
    changed_ = true;
    auto it = std::lower_bound(o.outcomes.begin(), o.outcomes.end(), request_id,
                               [](const RecordedOutcome &x, uint64_t id) { return x.request_id < id; });
    if (it != o.outcomes.end() && it->request_id == request_id) {
        it->code = code;
        it->value = value;
        return;
    }
    o.outcomes.insert(it, RecordedOutcome{request_id, code, value});
    if (o.outcomes.size() > kMaxOutcomesPerOrigin)
        raise_floor(o, o.outcomes.front().request_id + 1);
}

void RequestOrigins::forget_idle(int64_t forget_before_us, int64_t retire_before_us)
{
    auto idle = [&](const RequestOrigin &o) { return o.heard_us < forget_before_us; };
    auto end = std::remove_if(origins_.begin(), origins_.end(), idle);
    if (end != origins_.end()) {
        origins_.erase(end, origins_.end());
        changed_ = true;
    }
    /* Lives of one node never overlap (the next worker starts after the last
     * one answered all its callers), so an origin whose node was heard from
     * under another origin since is a finished life.  Log time alone would
     * not do: a leader's clock stepped forward moves it by minutes at once,
     * and would retire a live origin with requests in flight (found by
     * test_simulation, seed 51). */
    auto newer_life = [&](const RequestOrigin &o) {
        for (const RequestOrigin &p : origins_)
            if (p.key >> 16 == o.key >> 16 && p.key != o.key && p.heard_us > o.heard_us)
                return true;
        return false;
    };
    for (RequestOrigin &o : origins_)
        if (o.heard_us < retire_before_us && !o.outcomes.empty() && newer_life(o)) {
            raise_floor(o, o.outcomes.back().request_id + 1);
            changed_ = true;
        }
}

} // namespace atomix
