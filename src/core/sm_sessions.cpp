/*
 * sm_sessions.cpp — sessions, node leases and deadlines in the partition
 * state machine.
 *
 * A session (node << 48 | sequence) belongs to one backend of one node
 * incarnation (epoch).  In each partition it touches, it has a session row
 * listing what it holds or waits for, and its node's lease row lists it.
 * Liveness is per node: a lease expires when `timeout` of log time passes
 * without a keep-alive (or a command) from that node, and takes all the
 * node's sessions with it.  A closed or expired session leaves a tombstone
 * for kTombstoneKeepUs (as long as origins are remembered), so a late command from it is
 * refused instead of quietly opening it again.
 */
#include <algorithm>

#include "state_machine.h"

#include "core_only.h" /* last: nothing above brought in Postgres */

namespace atomix {

static bool contains(const std::vector<uint64_t> &v, uint64_t x)
{
    return std::find(v.begin(), v.end(), x) != v.end();
}

/* A command's list of ids (LE u64 each); a malformed one reads as empty, on
 * every replica alike. */
static std::vector<uint64_t> id_list(const std::string &bytes)
{
    std::vector<uint64_t> ids;
    try {
        ByteReader reader(bytes.data(), bytes.size());
        while (!reader.at_end())
            ids.push_back(reader.u64());
    } catch (const DecodeError &) {
        ids.clear();
    }
    return ids;
}

NodeLease StateMachine::load_node(uint32_t node, bool *found, std::optional<int64_t> *deadline)
{
    std::optional<ObjectRow> row = storage_.object_get(kKindNode, node_key(node));
    *found = row.has_value();
    if (!row) {
        *deadline = std::nullopt;
        return NodeLease{};
    }
    *deadline = row->deadline_us;
    return decode_node(row->state);
}

void StateMachine::store_node(uint32_t node, const NodeLease &lease, std::optional<int64_t> deadline)
{
    /* a lease with no sessions has nothing to expire */
    if (lease.sessions.empty())
        deadline = std::nullopt;
    if (deadline)
        note_deadline(*deadline);
    storage_.object_put(kKindNode, node_key(node), ObjectRow{encode_node(lease), deadline});
}

/* Checks the caller's session and opens it here if it is new; renews its
 * node's lease (a command from the node proves it alive). */
ResultCode StateMachine::open_session(const Command &cmd, const Context &ctx)
{
    if (cmd.session == 0)
        return ResultCode::SessionExpired;
    std::string key = session_key(cmd.session);
    uint32_t node = session_node(cmd.session);
    bool found;
    std::optional<int64_t> deadline;
    NodeLease lease = load_node(node, &found, &deadline);
    bool changed = !found;
    if (found && cmd.epoch < lease.epoch)
        return ResultCode::SessionExpired; /* from before the node restarted */
    if (found && cmd.epoch > lease.epoch) {
        expire_node(node, ctx); /* the node restarted: its old sessions are gone */
        lease = load_node(node, &found, &deadline);
        changed = true;
    }
    lease.epoch = cmd.epoch;
    if (lease.timeout_us <= 0)
        lease.timeout_us = kDefaultSessionTimeoutUs;

    if (!contains(lease.sessions, cmd.session)) {
        if (storage_.object_get(kKindTombstone, tombstone_key(cmd.session, cmd.epoch)))
            return ResultCode::SessionExpired;
        SessionState session;
        session.epoch = cmd.epoch;
        storage_.object_put(kKindSession, key, ObjectRow{encode_session(session), std::nullopt});
        lease.sessions.push_back(cmd.session);
        changed = true;
    }
    /* rewrite the lease only when the renewal moves it noticeably */
    int64_t renewed = ctx.now_us + lease.timeout_us;
    if (changed || !deadline || renewed - *deadline > lease.timeout_us / 8)
        store_node(node, lease, renewed);
    return ResultCode::Ok;
}

void StateMachine::add_session_ref(uint64_t session, char kind, const std::string &name)
{
    std::string key = session_key(session);
    std::optional<ObjectRow> row = storage_.object_get(kKindSession, key);
    if (!row)
        return;
    SessionState s = decode_session(row->state);
    for (const SessionRef &ref : s.refs)
        if (ref.kind == kind && ref.name == name)
            return;
    s.refs.push_back(SessionRef{kind, name});
    storage_.object_put(kKindSession, key, ObjectRow{encode_session(s), std::nullopt});
}

void StateMachine::drop_session_ref(uint64_t session, char kind, const std::string &name)
{
    std::string key = session_key(session);
    std::optional<ObjectRow> row = storage_.object_get(kKindSession, key);
    if (!row)
        return;
    SessionState s = decode_session(row->state);
    auto it = std::find_if(s.refs.begin(), s.refs.end(), [&](const SessionRef &ref) {
        return ref.kind == kind && ref.name == name;
    });
    if (it == s.refs.end())
        return;
    s.refs.erase(it);
    storage_.object_put(kKindSession, key, ObjectRow{encode_session(s), std::nullopt});
}

/* Releases everything the session holds here, answers its waiters with
 * `waiters_get`, and leaves a tombstone. */
void StateMachine::close_session(uint64_t session, int64_t epoch, const Context &ctx,
                                 ResultCode waiters_get)
{
    std::string key = session_key(session);
    std::optional<ObjectRow> row = storage_.object_get(kKindSession, key);
    if (closed_sink_)
        closed_sink_->push_back(session);
    if (row) {
        SessionState s = decode_session(row->state);
        storage_.object_remove(kKindSession, key);
        for (const SessionRef &ref : s.refs) {
            if (ref.kind == kKindLock)
                lock_leave_session(ref.name, session, ctx, waiters_get);
            else if (ref.kind == kKindSemaphore)
                semaphore_leave_session(ref.name, session, waiters_get);
            else if (ref.kind == kKindElection)
                election_leave_session(ref.name, session, ctx);
        }
    }
    int64_t forget_at = ctx.now_us + kTombstoneKeepUs;
    note_deadline(forget_at);
    storage_.object_put(kKindTombstone, tombstone_key(session, epoch), ObjectRow{std::string(), forget_at});
}

/* The node's lease ran out (or it restarted): all its sessions here expire. */
void StateMachine::expire_node(uint32_t node, const Context &ctx)
{
    bool found;
    std::optional<int64_t> deadline;
    NodeLease lease = load_node(node, &found, &deadline);
    if (!found)
        return;
    /* all of them are going: none may be granted what another releases
     * (moved, not copied: copying an empty vector into an empty one is a
     * memmove of null pointers, which UBSan reports) */
    closing_.swap(lease.sessions);
    lease.unlisted.clear();
    store_node(node, lease, std::nullopt);
    std::vector<uint64_t> sessions = closing_;
    for (uint64_t session : sessions)
        close_session(session, lease.epoch, ctx, ResultCode::SessionExpired);
    closing_.clear();
}

/* arg1 node, epoch, ttl_us the node's session timeout, value the node's
 * live sessions (u64 each) among those with sequence <= arg2.  A session of
 * the node missing from two keep-alives in a row was closed by its backend
 * (a close the node could not send is caught up here). */
CommandResult StateMachine::keep_alive(const Command &cmd, const Context &ctx)
{
    CommandResult r;
    r.request_id = cmd.request_id;
    uint32_t node = static_cast<uint32_t>(cmd.arg1);
    bool found;
    std::optional<int64_t> deadline;
    NodeLease lease = load_node(node, &found, &deadline);
    if (found && cmd.epoch < lease.epoch)
        return r; /* a stale keep-alive from the node's previous life */
    if (found && cmd.epoch > lease.epoch)
        expire_node(node, ctx);
    lease = load_node(node, &found, &deadline);
    lease.epoch = cmd.epoch;
    if (cmd.ttl_us > 0)
        lease.timeout_us = cmd.ttl_us;
    if (lease.timeout_us <= 0)
        lease.timeout_us = kDefaultSessionTimeoutUs;

    std::vector<uint64_t> live = id_list(cmd.value);
    std::vector<uint64_t> gone, unlisted;
    for (uint64_t session : lease.sessions) {
        if (session_seq(session) > static_cast<uint64_t>(cmd.arg2) || contains(live, session))
            continue;
        if (contains(lease.unlisted, session))
            gone.push_back(session);
        else
            unlisted.push_back(session);
    }
    lease.unlisted = std::move(unlisted);
    if (!gone.empty()) {
        lease.sessions.erase(std::remove_if(lease.sessions.begin(), lease.sessions.end(),
                                            [&](uint64_t s) { return contains(gone, s); }),
                             lease.sessions.end());
    }
    store_node(node, lease, ctx.now_us + lease.timeout_us);
    for (uint64_t session : gone)
        close_session(session, lease.epoch, ctx, ResultCode::SessionExpired);
    /* the lease's new deadline: the node vouches for its sessions until a
     * little before it */
    r.value = ctx.now_us + lease.timeout_us;
    return r;
}

/* A new leader's first words: the election took log time nobody could
 * renew in, so the leases of the nodes it is connected to (value: their
 * ids, u64 each) get a full timeout from now, as etcd's lessor does on
 * promotion.  A node it cannot reach keeps its old deadline: a crashed node
 * does not gain the election's length. */
CommandResult StateMachine::leases_renew(const Command &cmd, const Context &ctx)
{
    CommandResult r;
    r.request_id = cmd.request_id;
    std::vector<uint64_t> nodes = id_list(cmd.value);
    for (const std::string &name : storage_.object_names(kKindNode)) {
        std::optional<ObjectRow> row = storage_.object_get(kKindNode, name);
        if (!row || !row->deadline_us || !contains(nodes, std::stoull(name)))
            continue;
        NodeLease lease = decode_node(row->state);
        int64_t renewed = ctx.now_us + lease.timeout_us;
        if (renewed > *row->deadline_us)
            store_node(static_cast<uint32_t>(std::stoul(name)), lease, renewed);
    }
    return r;
}

CommandResult StateMachine::session_close(const Command &cmd, const Context &ctx)
{
    CommandResult r;
    r.request_id = cmd.request_id;
    uint32_t node = session_node(cmd.session);
    bool found;
    std::optional<int64_t> deadline;
    NodeLease lease = load_node(node, &found, &deadline);
    r.value = 1;
    /* from the node's previous life, whose sessions closed with it: the id
     * may belong to a session of the new life by now */
    if (found && cmd.epoch < lease.epoch)
        return r;
    if (found && contains(lease.sessions, cmd.session)) {
        lease.sessions.erase(std::remove(lease.sessions.begin(), lease.sessions.end(), cmd.session),
                             lease.sessions.end());
        lease.unlisted.erase(std::remove(lease.unlisted.begin(), lease.unlisted.end(), cmd.session),
                             lease.unlisted.end());
        store_node(node, lease, deadline);
    }
    close_session(cmd.session, cmd.epoch, ctx, ResultCode::SessionExpired);
    r.value = 1;
    return r;
}

/* Everything whose deadline has come: expired node leases, timed-out
 * waiters, tombstones old enough to forget. */
void StateMachine::settle_deadlines(const Context &ctx)
{
    for (const ObjectKey &k : storage_.objects_due(ctx.now_us)) {
        std::optional<ObjectRow> row = storage_.object_get(k.kind, k.name);
        if (!row || !row->deadline_us || *row->deadline_us > ctx.now_us)
            continue; /* already settled by an earlier one */
        switch (k.kind) {
        case kKindNode:
            expire_node(static_cast<uint32_t>(std::stoul(k.name)), ctx);
            break;
        case kKindLock:
            timeout_lock(k.name, ctx);
            break;
        case kKindSemaphore:
            timeout_semaphore(k.name, ctx);
            break;
        case kKindTombstone:
            storage_.object_remove(k.kind, k.name);
            break;
        default:
            /* nothing else has deadlines; clear it so it is not due forever */
            storage_.object_put(k.kind, k.name, ObjectRow{row->state, std::nullopt});
            break;
        }
    }
}

} // namespace atomix
