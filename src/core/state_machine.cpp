/*
 * state_machine.cpp — applying commands, snapshots and restores (see
 * state_machine.h for the rules every replica follows).
 */
#include "state_machine.h"

#include "planted_bugs.h"

#include <algorithm>
#include <limits>
#include <stdexcept>

#include "core_only.h" /* last: nothing above brought in Postgres */

namespace atomix {

static constexpr uint32_t kSnapshotMagic = 0x41534e50; /* "ASNP" */
/* 3: the meta carries the request origins; 2 (still restored): request log
 * records instead, which are dropped (at most once for requests sent before
 * the upgrade is not carried over) */
static constexpr uint8_t kSnapshotFormat = 3;
static constexpr uint8_t kRecordMapEntry = 1;
static constexpr uint8_t kRecordCounter = 2;
static constexpr uint8_t kRecordRequest = 3; /* format 2 only */
static constexpr uint8_t kRecordObject = 4;
static constexpr uint8_t kRecordEnd = 0xff;

static const char *entry_kind_name(char kind)
{
    return kind == kEntryValue ? "value" : kind == kEntrySet ? "set" : "map";
}

std::optional<int64_t> StateMachine::next_deadline()
{
    if (!next_deadline_known_) {
        std::optional<int64_t> a = storage_.map_next_expiry();
        std::optional<int64_t> b = storage_.object_next_deadline();
        next_deadline_ = a && b ? std::min(*a, *b) : a ? a : b;
        next_deadline_known_ = true;
    }
    return next_deadline_;
}

void StateMachine::note_deadline(int64_t at_us)
{
    if (next_deadline_known_ && (!next_deadline_ || at_us < *next_deadline_))
        next_deadline_ = at_us;
}

void StateMachine::emit(const char *kind, const std::string &name, const std::string &key,
                        const char *event, int64_t version)
{
    if (events_)
        events_->push_back(WatchEvent{kind, name, key, event, version});
}

void StateMachine::settle(uint64_t request_id, ResultCode code, int64_t value)
{
    if (settled_ && request_id != 0) {
        settled_->push_back(CommandResult{request_id, code, value});
        /* a copy of the waiting request that arrives later gets the final
         * outcome, not the Pending it was first answered */
        record_outcome(request_id, code, value, settle_now_us_);
    }
}

void StateMachine::record_outcome(uint64_t request_id, ResultCode code, int64_t value,
                                  int64_t now_us)
{
    if (request_id == 0)
        return;
    RecordedOutcome rec{request_id, static_cast<uint8_t>(code), value};
    auto here = entry_outcomes_.find(request_id);
    if (here != entry_outcomes_.end()) {
        /* atomix 0.1 wrote one request log row per outcome and could not
         * apply an entry holding one id twice (planted_bugs.h) */
        if (kPlantPoisonedEntry)
            throw std::runtime_error("request id recorded twice in one entry");
        here->second = rec;
    } else {
        entry_outcomes_.emplace(request_id, rec);
    }
    if (track_origins_)
        origins_.record(request_id, rec.code, value, now_us);
}

std::optional<RecordedOutcome> StateMachine::recorded_outcome(uint64_t request_id)
{
    RecordedOutcome out;
    RequestOrigins origins = RequestOrigins::decode(storage_.load_meta().origins);
    if (origins.lookup(request_id, &out) != RequestOrigins::Seen::Applied)
        return std::nullopt;
    return out;
}

/* What every replica refuses before touching storage, so no committed entry
 * can make the storage raise an error (a btree row too large, ...). */
bool StateMachine::breaks_limits(const Command &cmd)
{
    auto bad_text = [](const std::string &s, size_t max) {
        return s.size() > max || s.find('\0') != std::string::npos;
    };
    return bad_text(cmd.name, kSmMaxNameBytes) || bad_text(cmd.key, kSmMaxKeyBytes) ||
           cmd.value.size() > kSmMaxValueBytes;
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
    settled_ = &results;
    settle_now_us_ = now;
    entry_outcomes_.clear();
    origins_ = track_origins_ ? RequestOrigins::decode(meta.origins) : RequestOrigins();
    Context ctx{index, 0, now};
    std::optional<int64_t> deadline = next_deadline();
    if (deadline && *deadline <= now) {
        for (const EntryKey &k : storage_.map_purge_expired(now))
            emit(entry_kind_name(k.kind), k.map, k.key, "expire", ctx.version());
        settle_deadlines(ctx);
        next_deadline_known_ = false;
    }

    /* Retire quiet origins and forget those of long dead worker lives at
     * log-time minute boundaries: the same log positions on every replica. */
    if (track_origins_ && now / kForgetEveryUs != meta.log_time_us / kForgetEveryUs)
        origins_.forget_idle(now - kOriginIdleUs, now - kOriginQuietUs);

    /* At most once (request_origins.h): a request id already applied — in an
     * earlier entry, or earlier in this one — is answered with its recorded
     * outcome, and one its origin is done with is refused; neither runs
     * again, whether or not it carries the retry flag (a copy can arrive
     * without it: a resend racing the first attempt's reply).  Each command
     * first raises its origin's floor: it never lies above its own id. */
    for (uint32_t i = 0; i < commands.size(); i++) {
        const Command &cmd = commands[i];
        bool client = cmd.request_id != 0 && cmd.op != Op::Barrier;
        if (client && track_origins_)
            origins_.heard(cmd.request_id, cmd.floor, now);
        if (client && (!kPlantPoisonedEntry || cmd.is_retry())) {
            RecordedOutcome seen;
            bool copy = false;
            auto here = entry_outcomes_.find(cmd.request_id);
            if (here != entry_outcomes_.end() && !kPlantPoisonedEntry) {
                seen = here->second;
                copy = true;
            } else if (track_origins_ && !kPlantNoRequestLog) {
                switch (origins_.lookup(cmd.request_id, &seen)) {
                case RequestOrigins::Seen::Applied:
                    copy = true;
                    break;
                case RequestOrigins::Seen::Finished:
                    seen = RecordedOutcome{cmd.request_id, static_cast<uint8_t>(ResultCode::Finished), 0};
                    copy = true;
                    break;
                case RequestOrigins::Seen::New:
                    break;
                }
            }
            if (copy) {
                duplicates_answered_++;
                results.push_back(
                    CommandResult{cmd.request_id, static_cast<ResultCode>(seen.code), seen.value});
                continue;
            }
        }
        ctx.position = i;
        CommandResult r;
        if (breaks_limits(cmd)) {
            r.request_id = cmd.request_id;
            r.code = ResultCode::Refused;
        } else {
            /* settlements of other requests go to `results` first */
            r = execute(cmd, ctx);
        }
        results.push_back(r);
        if (client)
            record_outcome(cmd.request_id, r.code, r.value, now);
    }
    settled_ = nullptr;
    entry_outcomes_.clear();

    meta.applied_index = index;
    meta.log_time_us = now;
    if (track_origins_ && origins_.changed())
        meta.origins = origins_.encode();
    storage_.store_meta(meta);
    return true;
}

CommandResult StateMachine::map_write(const Command &cmd, char kind, const std::string &key,
                                      int64_t version, int64_t now_us)
{
    CommandResult r;
    r.request_id = cmd.request_id;
    bool is_put = cmd.op == Op::MapPut || cmd.op == Op::ValueSet;
    bool is_remove = cmd.op == Op::MapRemove || cmd.op == Op::ValueDelete;
    /* a plain put overwrites whatever is there: no need to read it */
    bool needs_current = !is_put || cmd.has_if_version();
    std::optional<MapRow> current;
    if (needs_current)
        current = storage_.map_get(kind, cmd.name, key);

    if (is_remove) {
        if (!current || (cmd.has_if_version() && current->version != cmd.if_version)) {
            r.value = 0;
            return r;
        }
        storage_.map_remove(kind, cmd.name, key);
        emit(entry_kind_name(kind), cmd.name, key, "remove", version);
        r.value = 1;
        return r;
    }
    if (is_put && cmd.has_if_version() && (!current || current->version != cmd.if_version)) {
        r.code = ResultCode::Null;
        return r;
    }
    switch (cmd.op) {
    case Op::MapInsert:
        if (current) {
            r.code = ResultCode::Null;
            return r;
        }
        break;
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
        note_deadline(*row.expires_at_us);
    }
    storage_.map_put(kind, cmd.name, key, row);
    emit(entry_kind_name(kind), cmd.name, key, "put", version);
    r.value = version;
    return r;
}

/* set_add is true when the element was not there; set_remove when it was. */
CommandResult StateMachine::set_write(const Command &cmd, const Context &ctx)
{
    CommandResult r;
    r.request_id = cmd.request_id;
    bool present = storage_.map_get(kEntrySet, cmd.name, cmd.key).has_value();
    if (cmd.op == Op::SetRemove) {
        if (present) {
            storage_.map_remove(kEntrySet, cmd.name, cmd.key);
            emit("set", cmd.name, cmd.key, "remove", ctx.version());
        }
        r.value = present ? 1 : 0;
        return r;
    }
    if (present)
        return r; /* value 0: already a member, its ttl unchanged */
    MapRow row;
    row.version = ctx.version();
    if (cmd.has_ttl()) {
        int64_t limit = std::numeric_limits<int64_t>::max() - ctx.now_us;
        row.expires_at_us = ctx.now_us + std::min(cmd.ttl_us, limit);
        note_deadline(*row.expires_at_us);
    }
    storage_.map_put(kEntrySet, cmd.name, cmd.key, row);
    emit("set", cmd.name, cmd.key, "put", ctx.version());
    r.value = 1;
    return r;
}

/* All or nothing: every if_version is checked against the state before the
 * commit, then every write is applied with the commit's version. */
CommandResult StateMachine::map_commit(const Command &cmd, const Context &ctx)
{
    CommandResult r;
    r.request_id = cmd.request_id;
    std::vector<MapCommitOp> ops;
    try {
        ops = decode_commit_ops(cmd.value);
    } catch (const DecodeError &) {
        r.code = ResultCode::Invalid; /* every replica refuses it alike */
        return r;
    }
    for (const MapCommitOp &op : ops)
        if (op.key.size() > kSmMaxKeyBytes || op.key.find('\0') != std::string::npos ||
            op.value.size() > kSmMaxValueBytes) {
            r.code = ResultCode::Refused;
            return r;
        }
    for (const MapCommitOp &op : ops) {
        if (!op.has_if_version)
            continue;
        std::optional<MapRow> current = storage_.map_get(kEntryMap, cmd.name, op.key);
        if (!current || current->version != op.if_version) {
            r.code = ResultCode::Null;
            return r;
        }
    }
    int64_t version = ctx.version();
    for (const MapCommitOp &op : ops) {
        if (op.remove) {
            if (storage_.map_remove(kEntryMap, cmd.name, op.key))
                emit("map", cmd.name, op.key, "remove", version);
            continue;
        }
        MapRow row;
        row.value = op.value;
        row.version = version;
        if (op.ttl_us > 0) {
            int64_t limit = std::numeric_limits<int64_t>::max() - ctx.now_us;
            row.expires_at_us = ctx.now_us + std::min(op.ttl_us, limit);
            note_deadline(*row.expires_at_us);
        }
        storage_.map_put(kEntryMap, cmd.name, op.key, row);
        emit("map", cmd.name, op.key, "put", version);
    }
    r.value = version;
    return r;
}

/* Hands out [next, next + block): ids start at 1. */
CommandResult StateMachine::id_reserve(const Command &cmd)
{
    CommandResult r;
    r.request_id = cmd.request_id;
    std::optional<ObjectRow> row = storage_.object_get(kKindIdGenerator, cmd.name);
    int64_t next = row ? decode_i64(row->state) : 1;
    int64_t after;
    if (cmd.arg1 <= 0 || __builtin_add_overflow(next, cmd.arg1, &after)) {
        r.code = ResultCode::OutOfRange;
        return r;
    }
    storage_.object_put(kKindIdGenerator, cmd.name, ObjectRow{encode_i64(after), std::nullopt});
    r.value = next;
    return r;
}

CommandResult StateMachine::execute(const Command &cmd, const Context &ctx)
{
    CommandResult r;
    r.request_id = cmd.request_id;
    int64_t version = ctx.version();

    switch (cmd.op) {
    case Op::MapPut:
    case Op::MapInsert:
    case Op::MapRemove:
        return map_write(cmd, kEntryMap, cmd.key, version, ctx.now_us);
    case Op::ValueSet:
    case Op::ValueDelete:
        return map_write(cmd, kEntryValue, std::string(), version, ctx.now_us);
    case Op::SetAdd:
    case Op::SetRemove:
        return set_write(cmd, ctx);
    case Op::MapCommit:
        return map_commit(cmd, ctx);
    case Op::IdReserve:
        return id_reserve(cmd);
    case Op::SessionKeepAlive:
        return keep_alive(cmd, ctx);
    case Op::SessionClose:
        return session_close(cmd, ctx);
    case Op::LeasesRenew:
        return leases_renew(cmd, ctx);
    case Op::LockAcquire:
        return lock_acquire(cmd, ctx);
    case Op::LockRelease:
        return lock_release(cmd, ctx);
    case Op::WaitCancel:
        return wait_cancel(cmd, ctx);
    case Op::SemaphoreCreate:
        return semaphore_create(cmd);
    case Op::SemaphoreAcquire:
        return semaphore_acquire(cmd, ctx);
    case Op::SemaphoreRelease:
        return semaphore_release(cmd, ctx);
    case Op::ElectionEnter:
    case Op::ElectionWithdraw:
    case Op::ElectionAnoint:
    case Op::ElectionPromote:
    case Op::ElectionEvict:
        return election_change(cmd, ctx);
    case Op::MapClear:
        r.value = storage_.map_clear(kEntryMap, cmd.name);
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
        r.value = static_cast<int64_t>(ctx.index);
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
    w.bytes(meta.origins);
    storage_.for_each_map_entry([&](const MapEntry &e) {
        w.u8(kRecordMapEntry);
        w.u8(static_cast<uint8_t>(e.kind));
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
    storage_.for_each_object([&](const ObjectKey &k, const ObjectRow &row) {
        w.u8(kRecordObject);
        w.u8(static_cast<uint8_t>(k.kind));
        w.bytes(k.name);
        w.bytes(row.state);
        w.u8(row.deadline_us ? 1 : 0);
        w.i64(row.deadline_us.value_or(0));
    });
    w.u8(kRecordEnd);
    return out;
}

bool StateMachine::restore(const void *data, size_t len)
{
    ByteReader r(data, len);
    if (r.u32() != kSnapshotMagic)
        throw DecodeError("not an atomix snapshot");
    uint8_t format = r.u8();
    if (format != kSnapshotFormat && format != 2)
        throw DecodeError("unsupported atomix snapshot format");
    PartitionMeta snap;
    snap.applied_index = r.u64();
    snap.log_time_us = r.i64();
    if (format >= 3) {
        snap.origins = r.bytes();
        (void)RequestOrigins::decode(snap.origins); /* damaged: refuse it whole */
    }

    if (storage_.load_meta().applied_index >= snap.applied_index)
        return false;

    /* Decode everything before touching the storage: a damaged snapshot
     * must leave the replica as it was. */
    std::vector<MapEntry> entries;
    std::vector<CounterRow> counters;
    std::vector<std::pair<ObjectKey, ObjectRow>> objects;
    for (;;) {
        uint8_t kind = r.u8();
        if (kind == kRecordEnd)
            break;
        if (kind == kRecordMapEntry) {
            MapEntry e;
            e.kind = static_cast<char>(r.u8());
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
        } else if (kind == kRecordRequest && format == 2) {
            (void)r.u64(); /* request id, code, value, recorded at */
            (void)r.u8();
            (void)r.i64();
            (void)r.i64();
        } else if (kind == kRecordObject) {
            std::pair<ObjectKey, ObjectRow> o;
            o.first.kind = static_cast<char>(r.u8());
            o.first.name = r.bytes();
            o.second.state = r.bytes();
            bool has_deadline = r.u8() != 0;
            int64_t deadline = r.i64();
            if (has_deadline)
                o.second.deadline_us = deadline;
            objects.push_back(std::move(o));
        } else {
            throw DecodeError("unknown record in atomix snapshot");
        }
    }

    storage_.clear_all();
    for (const MapEntry &e : entries)
        storage_.map_put(e.kind, e.map, e.key, e.row);
    for (const CounterRow &c : counters)
        storage_.counter_put(c.name, c.value);
    for (const auto &o : objects)
        storage_.object_put(o.first.kind, o.first.name, o.second);
    storage_.store_meta(snap);
    next_deadline_known_ = false;
    return true;
}

} // namespace atomix
