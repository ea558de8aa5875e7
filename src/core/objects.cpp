/*
 * objects.cpp — blob formats of coordination objects (see objects.h).
 * Little-endian through ByteWriter/ByteReader; a malformed blob throws
 * DecodeError.
 */
#include "objects.h"

#include <cstdio>

#include "codec.h"

#include "core_only.h" /* last: nothing above brought in Postgres */

namespace atomix {

std::string session_key(uint64_t session)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(session));
    return buf;
}

std::string tombstone_key(uint64_t session, int64_t epoch)
{
    return session_key(session) + "@" + std::to_string(epoch);
}

std::string node_key(uint32_t node) { return std::to_string(node); }

static void put_waiters(ByteWriter &w, const std::vector<Waiter> &waiters)
{
    w.u32(static_cast<uint32_t>(waiters.size()));
    for (const Waiter &x : waiters) {
        w.u64(x.request_id);
        w.u64(x.session);
        w.i64(x.deadline_us);
        w.u32(static_cast<uint32_t>(x.permits));
    }
}

static std::vector<Waiter> get_waiters(ByteReader &r)
{
    std::vector<Waiter> out(r.u32());
    for (Waiter &x : out) {
        x.request_id = r.u64();
        x.session = r.u64();
        x.deadline_us = r.i64();
        x.permits = static_cast<int32_t>(r.u32());
    }
    return out;
}

static void finish(const ByteReader &r)
{
    if (!r.at_end())
        throw DecodeError("trailing bytes in an atomix object");
}

std::string encode_lock(const LockState &s)
{
    std::string out;
    ByteWriter w(out);
    w.u64(s.holder);
    w.i64(s.token);
    w.i64(s.since_us);
    w.u64(s.grant_request);
    put_waiters(w, s.waiters);
    return out;
}

LockState decode_lock(const std::string &blob)
{
    ByteReader r(blob.data(), blob.size());
    LockState s;
    s.holder = r.u64();
    s.token = r.i64();
    s.since_us = r.i64();
    s.grant_request = r.u64();
    s.waiters = get_waiters(r);
    finish(r);
    return s;
}

std::string encode_semaphore(const SemaphoreState &s)
{
    std::string out;
    ByteWriter w(out);
    w.u32(static_cast<uint32_t>(s.permits));
    w.u32(static_cast<uint32_t>(s.available));
    w.u32(static_cast<uint32_t>(s.holders.size()));
    for (const SemaphoreHolder &h : s.holders) {
        w.u64(h.session);
        w.u32(static_cast<uint32_t>(h.permits));
        w.u64(h.last_request);
        w.u32(static_cast<uint32_t>(h.last_permits));
    }
    put_waiters(w, s.waiters);
    return out;
}

SemaphoreState decode_semaphore(const std::string &blob)
{
    ByteReader r(blob.data(), blob.size());
    SemaphoreState s;
    s.permits = static_cast<int32_t>(r.u32());
    s.available = static_cast<int32_t>(r.u32());
    s.holders.resize(r.u32());
    for (SemaphoreHolder &h : s.holders) {
        h.session = r.u64();
        h.permits = static_cast<int32_t>(r.u32());
        h.last_request = r.u64();
        h.last_permits = static_cast<int32_t>(r.u32());
    }
    s.waiters = get_waiters(r);
    finish(r);
    return s;
}

std::string encode_election(const ElectionState &s)
{
    std::string out;
    ByteWriter w(out);
    w.i64(s.term);
    w.u32(static_cast<uint32_t>(s.candidates.size()));
    for (const Candidate &c : s.candidates) {
        w.bytes(c.id);
        w.u64(c.session);
    }
    return out;
}

ElectionState decode_election(const std::string &blob)
{
    ByteReader r(blob.data(), blob.size());
    ElectionState s;
    s.term = r.i64();
    s.candidates.resize(r.u32());
    for (Candidate &c : s.candidates) {
        c.id = r.bytes();
        c.session = r.u64();
    }
    finish(r);
    return s;
}

std::string encode_session(const SessionState &s)
{
    std::string out;
    ByteWriter w(out);
    w.i64(s.epoch);
    w.u32(static_cast<uint32_t>(s.refs.size()));
    for (const SessionRef &ref : s.refs) {
        w.u8(static_cast<uint8_t>(ref.kind));
        w.bytes(ref.name);
    }
    return out;
}

SessionState decode_session(const std::string &blob)
{
    ByteReader r(blob.data(), blob.size());
    SessionState s;
    s.epoch = r.i64();
    s.refs.resize(r.u32());
    for (SessionRef &ref : s.refs) {
        ref.kind = static_cast<char>(r.u8());
        ref.name = r.bytes();
    }
    finish(r);
    return s;
}

std::string encode_node(const NodeLease &s)
{
    std::string out;
    ByteWriter w(out);
    w.i64(s.epoch);
    w.i64(s.timeout_us);
    w.u32(static_cast<uint32_t>(s.sessions.size()));
    for (uint64_t id : s.sessions)
        w.u64(id);
    w.u32(static_cast<uint32_t>(s.unlisted.size()));
    for (uint64_t id : s.unlisted)
        w.u64(id);
    return out;
}

NodeLease decode_node(const std::string &blob)
{
    ByteReader r(blob.data(), blob.size());
    NodeLease s;
    s.epoch = r.i64();
    s.timeout_us = r.i64();
    s.sessions.resize(r.u32());
    for (uint64_t &id : s.sessions)
        id = r.u64();
    s.unlisted.resize(r.u32());
    for (uint64_t &id : s.unlisted)
        id = r.u64();
    finish(r);
    return s;
}

std::string encode_i64(int64_t v)
{
    std::string out;
    ByteWriter w(out);
    w.i64(v);
    return out;
}

int64_t decode_i64(const std::string &blob)
{
    ByteReader r(blob.data(), blob.size());
    int64_t v = r.i64();
    finish(r);
    return v;
}

} // namespace atomix
