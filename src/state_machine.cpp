/*
 * state_machine.cpp — applying commands, snapshots and restores (see
 * state_machine.h for the rules every replica follows).
 */
#include "state_machine.h"

#include <algorithm>
#include <limits>

namespace atomix {

static constexpr uint32_t kSnapshotMagic = 0x41534e50; /* "ASNP" */
static constexpr uint8_t kSnapshotFormat = 1;
static constexpr uint8_t kRecordMapEntry = 1;
static constexpr uint8_t kRecordCounter = 2;
static constexpr uint8_t kRecordRequest = 3;
static constexpr uint8_t kRecordEnd = 0xff;

std::optional<int64_t> StateMachine::next_expiry()
{
    if (!next_expiry_known_) {
        next_expiry_ = storage_.map_next_expiry();
        next_expiry_known_ = true;
    }
    return next_expiry_;
}

void StateMachine::note_expiry(int64_t expires_at_us)
{
    if (next_expiry_known_ && (!next_expiry_ || expires_at_us < *next_expiry_))
        next_expiry_ = expires_at_us;
}

bool StateMachine::apply(uint64_t index, const void *data, size_t len,
                         std::vector<CommandResult> &results, bool *malformed)
{
    PartitionMeta meta = storage_.load_meta();
    if (index <= meta.applied_index)
        return false;
    if (malformed)
        *malformed = false;

    std::vector<Command> commands;
    int64_t stamp = meta.log_time_us;
    try {
        EntryReader reader(data, len);
        stamp = reader.header().stamp_us;
        Command cmd;
        while (reader.next(cmd))
            commands.push_back(std::move(cmd));
        if (commands.size() > kMaxCommandsPerEntry)
            throw DecodeError("too many commands in one entry");
    } catch (const DecodeError &) {
        /* Deterministic: every replica decodes the same bytes and skips them. */
        commands.clear();
        if (malformed)
            *malformed = true;
    }

    /* Log time never goes backwards, even if a new leader's clock is behind. */
    int64_t now = std::max(meta.log_time_us, stamp);
    std::optional<int64_t> expiry = next_expiry();
    if (expiry && *expiry <= now) {
        storage_.map_purge_expired(now);
        next_expiry_known_ = false;
    }

    /* Forget old request ids at log-time minute boundaries: the same log
     * positions on every replica. */
    if (now / kRequestLogPurgeEveryUs != meta.log_time_us / kRequestLogPurgeEveryUs)
        storage_.request_purge(now - kRequestLogWindowUs);

    std::vector<RequestRecord> records;
    for (uint32_t i = 0; i < commands.size(); i++) {
        const Command &cmd = commands[i];
        if (cmd.is_retry() && cmd.request_id != 0) {
            std::optional<RequestRecord> seen = storage_.request_lookup(cmd.request_id);
            if (seen && seen->recorded_at_us >= now - kRequestLogWindowUs) {
                results.push_back(CommandResult{cmd.request_id, static_cast<ResultCode>(seen->code),
                                                seen->value});
                continue;
            }
        }
        CommandResult r = execute(cmd, index, i, now);
        results.push_back(r);
        if (request_log_ && cmd.request_id != 0 && cmd.op != Op::Barrier)
            records.push_back(RequestRecord{cmd.request_id, static_cast<uint8_t>(r.code), r.value, now});
    }
    if (!records.empty())
        storage_.request_record(records);

    meta.applied_index = index;
    meta.log_time_us = now;
    storage_.store_meta(meta);
    return true;
}

CommandResult StateMachine::map_write(const Command &cmd, int64_t version, int64_t now_us)
{
    CommandResult r;
    r.request_id = cmd.request_id;
    /* a plain put overwrites whatever is there: no need to read it */
    bool needs_current = cmd.op != Op::MapPut || cmd.has_if_version();
    std::optional<MapRow> current;
    if (needs_current)
        current = storage_.map_get(cmd.name, cmd.key);

    switch (cmd.op) {
    case Op::MapInsert:
        if (current) {
            r.code = ResultCode::Null;
            return r;
        }
        break;
    case Op::MapPut:
        if (cmd.has_if_version() && (!current || current->version != cmd.if_version)) {
            r.code = ResultCode::Null;
            return r;
        }
        break;
    case Op::MapRemove:
        if (!current || (cmd.has_if_version() && current->version != cmd.if_version)) {
            r.value = 0;
            return r;
        }
        storage_.map_remove(cmd.name, cmd.key);
        r.value = 1;
        return r;
    default:
        break;
    }

    MapRow row;
    row.value = cmd.value;
    row.version = version;
    if (cmd.has_ttl()) {
        /* saturate instead of overflowing for absurd (but valid) intervals */
        int64_t limit = std::numeric_limits<int64_t>::max() - now_us;
        row.expires_at_us = now_us + std::min(cmd.ttl_us, limit);
        note_expiry(*row.expires_at_us);
    }
    storage_.map_put(cmd.name, cmd.key, row);
    r.value = version;
    return r;
}

CommandResult StateMachine::execute(const Command &cmd, uint64_t index, uint32_t position,
                                    int64_t now_us)
{
    CommandResult r;
    r.request_id = cmd.request_id;
    int64_t version = make_version(index, position);

    switch (cmd.op) {
    case Op::MapPut:
    case Op::MapInsert:
    case Op::MapRemove:
        return map_write(cmd, version, now_us);
    case Op::MapClear:
        r.value = storage_.map_clear(cmd.name);
        return r;
    case Op::CounterSet: {
        r.value = storage_.counter_get(cmd.name).value_or(0);
        storage_.counter_put(cmd.name, cmd.arg1);
        return r;
    }
    case Op::CounterIncr: {
        int64_t current = storage_.counter_get(cmd.name).value_or(0);
        int64_t next;
        if (__builtin_add_overflow(current, cmd.arg1, &next)) {
            r.code = ResultCode::OutOfRange;
            return r;
        }
        storage_.counter_put(cmd.name, next);
        r.value = next;
        return r;
    }
    case Op::CounterCas: {
        int64_t current = storage_.counter_get(cmd.name).value_or(0);
        if (current != cmd.arg1) {
            r.value = 0;
            return r;
        }
        storage_.counter_put(cmd.name, cmd.arg2);
        r.value = 1;
        return r;
    }
    case Op::Barrier:
        r.value = static_cast<int64_t>(index);
        return r;
    }
    return r;
}

std::string StateMachine::snapshot()
{
    std::string out;
    ByteWriter w(out);
    PartitionMeta meta = storage_.load_meta();
    w.u32(kSnapshotMagic);
    w.u8(kSnapshotFormat);
    w.u64(meta.applied_index);
    w.i64(meta.log_time_us);
    storage_.for_each_map_entry([&](const MapEntry &e) {
        w.u8(kRecordMapEntry);
        w.bytes(e.map);
        w.bytes(e.key);
        w.bytes(e.row.value);
        w.i64(e.row.version);
        w.u8(e.row.expires_at_us ? 1 : 0);
        w.i64(e.row.expires_at_us.value_or(0));
    });
    storage_.for_each_counter([&](const CounterRow &c) {
        w.u8(kRecordCounter);
        w.bytes(c.name);
        w.i64(c.value);
    });
    storage_.for_each_request([&](const RequestRecord &q) {
        w.u8(kRecordRequest);
        w.u64(q.request_id);
        w.u8(q.code);
        w.i64(q.value);
        w.i64(q.recorded_at_us);
    });
    w.u8(kRecordEnd);
    return out;
}

bool StateMachine::restore(const void *data, size_t len)
{
    ByteReader r(data, len);
    if (r.u32() != kSnapshotMagic)
        throw DecodeError("not an atomix snapshot");
    if (r.u8() != kSnapshotFormat)
        throw DecodeError("unsupported atomix snapshot format");
    PartitionMeta snap;
    snap.applied_index = r.u64();
    snap.log_time_us = r.i64();

    if (storage_.load_meta().applied_index >= snap.applied_index)
        return false;

    /* Decode everything before touching the storage: a damaged snapshot
     * must leave the replica as it was. */
    std::vector<MapEntry> entries;
    std::vector<CounterRow> counters;
    std::vector<RequestRecord> requests;
    for (;;) {
        uint8_t kind = r.u8();
        if (kind == kRecordEnd)
            break;
        if (kind == kRecordMapEntry) {
            MapEntry e;
            e.map = r.bytes();
            e.key = r.bytes();
            e.row.value = r.bytes();
            e.row.version = r.i64();
            bool has_expiry = r.u8() != 0;
            int64_t expires = r.i64();
            if (has_expiry)
                e.row.expires_at_us = expires;
            entries.push_back(std::move(e));
        } else if (kind == kRecordCounter) {
            CounterRow c;
            c.name = r.bytes();
            c.value = r.i64();
            counters.push_back(std::move(c));
        } else if (kind == kRecordRequest) {
            RequestRecord q;
            q.request_id = r.u64();
            q.code = r.u8();
            q.value = r.i64();
            q.recorded_at_us = r.i64();
            requests.push_back(q);
        } else {
            throw DecodeError("unknown record in atomix snapshot");
        }
    }

    storage_.clear_all();
    for (const MapEntry &e : entries)
        storage_.map_put(e.map, e.key, e.row);
    for (const CounterRow &c : counters)
        storage_.counter_put(c.name, c.value);
    if (!requests.empty())
        storage_.request_record(requests);
    storage_.store_meta(snap);
    next_expiry_known_ = false;
    return true;
}

} // namespace atomix
