/*
 * codec.cpp — encoding and bounds-checked decoding of commands and packed
 * entries (see codec.h for the layout's reasons).
 */
#include "codec.h"

#include <cstring>

#include "core_only.h" /* last: nothing above brought in Postgres */

namespace atomix {

void ByteWriter::u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }

void ByteWriter::u32(uint32_t v)
{
    for (int i = 0; i < 4; i++)
        out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void ByteWriter::u64(uint64_t v)
{
    for (int i = 0; i < 8; i++)
        out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void ByteWriter::bytes(const std::string &s)
{
    u32(static_cast<uint32_t>(s.size()));
    out_.append(s);
}

void ByteReader::need(size_t n) const
{
    if (static_cast<size_t>(end_ - p_) < n)
        throw DecodeError("truncated atomix command");
}

uint8_t ByteReader::u8()
{
    need(1);
    return *p_++;
}

uint32_t ByteReader::u32()
{
    need(4);
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= static_cast<uint32_t>(p_[i]) << (8 * i);
    p_ += 4;
    return v;
}

uint64_t ByteReader::u64()
{
    need(8);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= static_cast<uint64_t>(p_[i]) << (8 * i);
    p_ += 8;
    return v;
}

std::string ByteReader::bytes()
{
    uint32_t n = u32();
    need(n);
    std::string s(reinterpret_cast<const char *>(p_), n);
    p_ += n;
    return s;
}

size_t encoded_command_size(const Command &cmd)
{
    return 1 + 1 + 8 + 8 + 8 + 8 + (4 + cmd.name.size()) + (4 + cmd.key.size()) +
           (4 + cmd.value.size()) + 8 * 4;
}

void encode_command(const Command &cmd, std::string &out)
{
    out.reserve(out.size() + encoded_command_size(cmd));
    ByteWriter w(out);
    w.u8(static_cast<uint8_t>(cmd.op));
    w.u8(cmd.flags);
    w.u64(cmd.request_id);
    w.u64(cmd.floor);
    w.u64(cmd.session);
    w.i64(cmd.epoch);
    w.bytes(cmd.name);
    w.bytes(cmd.key);
    w.bytes(cmd.value);
    w.i64(cmd.ttl_us);
    w.i64(cmd.if_version);
    w.i64(cmd.arg1);
    w.i64(cmd.arg2);
}

static Command read_command(ByteReader &r, uint8_t format)
{
    Command cmd;
    uint8_t op = r.u8();
    if (op < static_cast<uint8_t>(Op::MapPut) || op > kLastOp)
        throw DecodeError("unknown atomix command");
    cmd.op = static_cast<Op>(op);
    cmd.flags = r.u8();
    cmd.request_id = r.u64();
    if (format >= 3)
        cmd.floor = r.u64();
    cmd.session = r.u64();
    cmd.epoch = r.i64();
    cmd.name = r.bytes();
    cmd.key = r.bytes();
    cmd.value = r.bytes();
    cmd.ttl_us = r.i64();
    cmd.if_version = r.i64();
    cmd.arg1 = r.i64();
    cmd.arg2 = r.i64();
    return cmd;
}

Command decode_command(const void *data, size_t len)
{
    ByteReader r(data, len);
    Command cmd = read_command(r, EntryHeader::kFormat);
    if (!r.at_end())
        throw DecodeError("trailing bytes after atomix command");
    return cmd;
}

static void patch_u64(std::string &encoded, size_t offset, uint64_t v)
{
    if (encoded.size() < offset + 8)
        throw DecodeError("truncated atomix command");
    for (int i = 0; i < 8; i++)
        encoded[offset + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

void patch_request_id(std::string &encoded, uint64_t id) { patch_u64(encoded, kCommandRequestIdOffset, id); }

void patch_request_floor(std::string &encoded, uint64_t floor)
{
    patch_u64(encoded, kCommandFloorOffset, floor);
}

void encode_commit_ops(const std::vector<MapCommitOp> &ops, std::string &out)
{
    ByteWriter w(out);
    w.u32(static_cast<uint32_t>(ops.size()));
    for (const MapCommitOp &op : ops) {
        w.u8((op.remove ? 1 : 0) | (op.has_if_version ? 2 : 0));
        w.bytes(op.key);
        w.bytes(op.value);
        w.i64(op.if_version);
        w.i64(op.ttl_us);
    }
}

std::vector<MapCommitOp> decode_commit_ops(const std::string &data)
{
    ByteReader r(data.data(), data.size());
    uint32_t n = r.u32();
    std::vector<MapCommitOp> ops;
    for (uint32_t i = 0; i < n; i++) {
        MapCommitOp op;
        uint8_t flags = r.u8();
        op.remove = flags & 1;
        op.has_if_version = flags & 2;
        op.key = r.bytes();
        op.value = r.bytes();
        op.if_version = r.i64();
        op.ttl_us = r.i64();
        ops.push_back(std::move(op));
    }
    if (!r.at_end())
        throw DecodeError("trailing bytes after map_commit operations");
    return ops;
}

void encode_entry_header(const EntryHeader &h, std::string &out)
{
    ByteWriter w(out);
    w.u32(EntryHeader::kMagic);
    w.u8(EntryHeader::kFormat);
    w.i64(h.stamp_us);
    w.u32(h.count);
}

void patch_entry_count(std::string &entry, uint32_t count)
{
    if (entry.size() < kEntryHeaderSize)
        throw DecodeError("entry shorter than its header");
    for (int i = 0; i < 4; i++)
        entry[kEntryHeaderSize - 4 + i] = static_cast<char>((count >> (8 * i)) & 0xff);
}

EntryReader::EntryReader(const void *data, size_t len)
    : p_(static_cast<const uint8_t *>(data)), end_(p_ + len)
{
    ByteReader r(data, len);
    if (r.u32() != EntryHeader::kMagic)
        throw DecodeError("not an atomix entry");
    format_ = r.u8();
    if (format_ != EntryHeader::kFormat && format_ != 2)
        throw DecodeError("unsupported atomix entry format");
    header_.stamp_us = r.i64();
    header_.count = r.u32();
    p_ = r.position();
}

bool EntryReader::next(Command &cmd)
{
    if (read_ >= header_.count) {
        /* Only the zero padding raft buffers are rounded up with may follow
         * the last command (see raft_group.h). */
        if (end_ - p_ >= 8)
            throw DecodeError("trailing bytes after the last atomix command");
        for (const uint8_t *q = p_; q < end_; q++)
            if (*q != 0)
                throw DecodeError("trailing bytes after the last atomix command");
        return false;
    }
    ByteReader r(p_, static_cast<size_t>(end_ - p_));
    cmd = read_command(r, format_);
    p_ = r.position();
    read_++;
    return true;
}

const char *op_name(Op op)
{
    switch (op) {
    case Op::MapPut: return "map_put";
    case Op::MapInsert: return "map_insert";
    case Op::MapRemove: return "map_remove";
    case Op::MapClear: return "map_clear";
    case Op::CounterSet: return "counter_set";
    case Op::CounterIncr: return "counter_incr";
    case Op::CounterCas: return "counter_cas";
    case Op::Barrier: return "barrier";
    case Op::SessionKeepAlive: return "session_keep_alive";
    case Op::SessionClose: return "session_close";
    case Op::LockAcquire: return "lock_acquire";
    case Op::LockRelease: return "lock_release";
    case Op::WaitCancel: return "wait_cancel";
    case Op::SemaphoreCreate: return "semaphore_create";
    case Op::SemaphoreAcquire: return "semaphore_acquire";
    case Op::SemaphoreRelease: return "semaphore_release";
    case Op::ElectionEnter: return "election_enter";
    case Op::ElectionWithdraw: return "election_withdraw";
    case Op::ElectionAnoint: return "election_anoint";
    case Op::ElectionPromote: return "election_promote";
    case Op::ElectionEvict: return "election_evict";
    case Op::IdReserve: return "id_reserve";
    case Op::ValueSet: return "value_set";
    case Op::ValueDelete: return "value_delete";
    case Op::SetAdd: return "set_add";
    case Op::SetRemove: return "set_remove";
    case Op::MapCommit: return "map_commit";
    case Op::LeasesRenew: return "leases_renew";
    }
    return "unknown";
}

} // namespace atomix
