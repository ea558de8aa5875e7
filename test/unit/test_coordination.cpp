/*
 * test_coordination.cpp — the coordination primitives of the partition state
 * machine (docs/coordination.md): sessions and node leases, locks,
 * semaphores, elections, values, sets, map_commit, id blocks, snapshots of
 * object rows, replica agreement and watch events, over MemoryStorage.
 *
 * Every entry carries an explicit raft index and leader stamp, so time only
 * moves when an entry says so, exactly like a replica replaying a known log.
 * Each command's own result is checked, and so are the "settled" results
 * that apply appends for earlier Pending requests (grants, timeouts,
 * waiters of closed or expired sessions).
 */
#include "unit_helpers.h"

#include <algorithm>
#include <limits>

#include "memory_storage.h"
#include "objects.h"

using namespace atomix;
using namespace unit;

namespace {

constexpr int64_t kSec = 1000000;
/* node incarnations (Unix µs when the node's shared memory was created) */
constexpr int64_t E1 = 1700000000LL * kSec;
constexpr int64_t E2 = E1 + 3600 * kSec;
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

uint64_t sid(uint32_t node, uint64_t seq) { return (static_cast<uint64_t>(node) << 48) | seq; }

const char *code_name(ResultCode c)
{
    switch (c) {
    case ResultCode::Ok: return "Ok";
    case ResultCode::Null: return "Null";
    case ResultCode::OutOfRange: return "OutOfRange";
    case ResultCode::Pending: return "Pending";
    case ResultCode::SessionExpired: return "SessionExpired";
    case ResultCode::NotFound: return "NotFound";
    case ResultCode::Invalid: return "Invalid";
    case ResultCode::Conflict: return "Conflict";
    case ResultCode::NotOwner: return "NotOwner";
    case ResultCode::Finished: return "Finished";
    case ResultCode::Refused: return "Refused";
    }
    return "?";
}

void assert_result(const CommandResult &r, ResultCode code, int64_t value)
{
    if (r.code != code || r.value != value)
        fail_msg("request %llu: got %s %lld, expected %s %lld", (unsigned long long)r.request_id,
                 code_name(r.code), (long long)r.value, code_name(code), (long long)value);
}

void assert_code(const CommandResult &r, ResultCode code)
{
    if (r.code != code)
        fail_msg("request %llu: got %s, expected %s", (unsigned long long)r.request_id,
                 code_name(r.code), code_name(code));
}

/* ---- command builders ---- */

Command in_session(Command c, uint64_t session, uint64_t rid)
{
    c.session = session;
    c.request_id = rid;
    c.epoch = E1;
    return c;
}

Command in_epoch(Command c, int64_t epoch)
{
    c.epoch = epoch;
    return c;
}

Command with_rid(Command c, uint64_t rid)
{
    c.request_id = rid;
    return c;
}

Command acquire(uint64_t s, uint64_t rid, const std::string &lock, bool wait = true)
{
    Command c = in_session(cmd_of(Op::LockAcquire, lock), s, rid);
    c.arg1 = wait ? 1 : 0;
    return c;
}

Command release(uint64_t s, uint64_t rid, const std::string &lock)
{
    return in_session(cmd_of(Op::LockRelease, lock), s, rid);
}

Command cancel(uint64_t s, uint64_t rid, char kind, const std::string &name, uint64_t waiting)
{
    Command c = in_session(cmd_of(Op::WaitCancel, name, std::string(1, kind)), s, rid);
    c.arg1 = static_cast<int64_t>(waiting);
    return c;
}

Command keep_alive(uint32_t node, int64_t epoch, int64_t timeout_us,
                   const std::vector<uint64_t> &live, uint64_t max_seq)
{
    Command c = cmd_of(Op::SessionKeepAlive);
    c.arg1 = node;
    c.epoch = epoch;
    c.ttl_us = timeout_us;
    c.arg2 = static_cast<int64_t>(max_seq);
    ByteWriter w(c.value);
    for (uint64_t id : live)
        w.u64(id);
    return c;
}

Command close_session(uint64_t s, uint64_t rid = 0)
{
    return in_session(cmd_of(Op::SessionClose), s, rid);
}

Command sem_create(uint64_t rid, const std::string &name, int64_t permits)
{
    Command c = with_rid(cmd_of(Op::SemaphoreCreate, name), rid);
    c.arg1 = permits;
    return c;
}

Command sem_acquire(uint64_t s, uint64_t rid, const std::string &name, int64_t permits,
                    bool wait = true)
{
    Command c = in_session(cmd_of(Op::SemaphoreAcquire, name), s, rid);
    c.arg1 = permits;
    c.arg2 = wait ? 1 : 0;
    return c;
}

Command sem_release(uint64_t s, uint64_t rid, const std::string &name, int64_t permits)
{
    Command c = in_session(cmd_of(Op::SemaphoreRelease, name), s, rid);
    c.arg1 = permits;
    return c;
}

Command election(Op op, uint64_t s, uint64_t rid, const std::string &name, const std::string &candidate)
{
    return in_session(cmd_of(op, name, candidate), s, rid);
}

Command value_set(uint64_t rid, const std::string &name, const std::string &value)
{
    return with_rid(cmd_of(Op::ValueSet, name, "", value), rid);
}

Command value_delete(uint64_t rid, const std::string &name)
{
    return with_rid(cmd_of(Op::ValueDelete, name), rid);
}

Command set_op(Op op, uint64_t rid, const std::string &set, const std::string &element)
{
    return with_rid(cmd_of(op, set, element), rid);
}

Command put(uint64_t rid, const std::string &map, const std::string &key, const std::string &value)
{
    return with_rid(cmd_of(Op::MapPut, map, key, value), rid);
}

MapCommitOp put_op(const std::string &key, const std::string &value, int64_t ttl_us = 0)
{
    MapCommitOp op;
    op.key = key;
    op.value = value;
    op.ttl_us = ttl_us;
    return op;
}

MapCommitOp remove_op(const std::string &key)
{
    MapCommitOp op;
    op.remove = true;
    op.key = key;
    return op;
}

MapCommitOp if_version(MapCommitOp op, int64_t version)
{
    op.has_if_version = true;
    op.if_version = version;
    return op;
}

Command map_commit(uint64_t rid, const std::string &map, const std::vector<MapCommitOp> &ops)
{
    Command c = with_rid(cmd_of(Op::MapCommit, map), rid);
    encode_commit_ops(ops, c.value);
    return c;
}

Command id_reserve(uint64_t rid, const std::string &name, int64_t block)
{
    Command c = with_rid(cmd_of(Op::IdReserve, name), rid);
    c.arg1 = block;
    return c;
}

/* ---- results of one applied entry ---- */

struct Applied {
    std::vector<CommandResult> all;     /* as apply appended them */
    std::vector<CommandResult> own;     /* one per command, in order */
    std::vector<CommandResult> settled; /* earlier Pending requests answered, in order */

    /* The one settlement for rid (fails if there is none or several). */
    const CommandResult &settlement(uint64_t rid) const
    {
        const CommandResult *found = nullptr;
        for (const CommandResult &r : settled)
            if (r.request_id == rid) {
                if (found)
                    fail_msg("request %llu settled twice", (unsigned long long)rid);
                found = &r;
            }
        if (!found)
            fail_msg("request %llu not settled", (unsigned long long)rid);
        return *found;
    }
};

/* A command's settlements come before its own result, and deadlines
 * settled at the start of the entry before everything; settlements carry
 * the ids of earlier requests, never the id of the command being applied. */
Applied split(const std::vector<Command> &cmds, const std::vector<CommandResult> &all)
{
    Applied a;
    a.all = all;
    size_t at = 0;
    for (const Command &c : cmds) {
        while (at < all.size() && all[at].request_id != c.request_id)
            a.settled.push_back(all[at++]);
        if (at == all.size())
            fail_msg("no result for request %llu", (unsigned long long)c.request_id);
        a.own.push_back(all[at++]);
    }
    while (at < all.size()) /* an entry without commands settles deadlines only */
        a.settled.push_back(all[at++]);
    return a;
}

std::string event_text(const WatchEvent &e)
{
    return std::string(e.kind) + " " + e.name + "[" + e.key + "] " + e.event + " " +
           std::to_string(e.version);
}

std::string ev(const char *kind, const std::string &name, const std::string &key, const char *event,
               int64_t version)
{
    return event_text(WatchEvent{kind, name, key, event, version});
}

void assert_lines(const std::vector<std::string> &got, const std::vector<std::string> &want)
{
    if (got == want)
        return;
    std::string g, w;
    for (const std::string &s : got)
        g += "  " + s + "\n";
    for (const std::string &s : want)
        w += "  " + s + "\n";
    fail_msg("got:\n%sexpected:\n%s", g.c_str(), w.c_str());
}

/* Every object row, in a canonical order (snapshots compare the rest). */
std::string objects_dump(PartitionStorage &st)
{
    std::string out;
    st.for_each_object([&](const ObjectKey &k, const ObjectRow &row) {
        out += std::string(1, k.kind) + " " + hex(k.name) + " = " + hex(row.state);
        if (row.deadline_us)
            out += " due" + std::to_string(*row.deadline_us);
        out += "\n";
    });
    return out;
}

/* One replica: storage + state machine + an event sink. */
struct Replica {
    MemoryStorage st;
    StateMachine sm{st};
    std::vector<WatchEvent> events;
    uint64_t index = 0; /* of the last applied entry */

    Replica() { sm.set_event_sink(&events); }

    /* Applies cmds as the next entry, stamped `stamp`. */
    Applied at(int64_t stamp, const std::vector<Command> &cmds)
    {
        std::string e = pack(stamp, cmds);
        std::vector<CommandResult> all;
        bool malformed = true;
        assert_true(sm.apply(++index, e.data(), e.size(), all, &malformed));
        assert_false(malformed);
        check_deadline_cache();
        return split(cmds, all);
    }

    /* One command that settles nothing else. */
    CommandResult one(int64_t stamp, const Command &c)
    {
        Applied a = at(stamp, {c});
        if (!a.settled.empty())
            fail_msg("entry %llu settled %zu other requests", (unsigned long long)index,
                     a.settled.size());
        return a.own[0];
    }

    /* The version / token of position `pos` in the last entry. */
    int64_t v(uint32_t pos = 0) const { return make_version(index, pos); }

    /* The cached next deadline may be early (it is only lowered between
     * settlements), never late: a late one would skip a settlement that a
     * freshly started replica makes. */
    void check_deadline_cache()
    {
        std::optional<int64_t> cached;
        if (!sm.cached_next_deadline(&cached))
            return;
        StateMachine fresh(st);
        std::optional<int64_t> truth = fresh.next_deadline();
        if (truth && (!cached || *cached > *truth))
            fail_msg("cached next deadline %lld is later than the stored %lld",
                     (long long)cached.value_or(-1), (long long)*truth);
    }

    std::optional<LockState> lock(const std::string &name)
    {
        std::optional<ObjectRow> row = st.object_get(kKindLock, name);
        if (!row)
            return std::nullopt;
        return decode_lock(row->state);
    }
    /* holder of the lock, 0 when free or unknown */
    uint64_t holder(const std::string &name)
    {
        std::optional<LockState> l = lock(name);
        return l ? l->holder : 0;
    }
    std::vector<uint64_t> lock_waiters(const std::string &name)
    {
        std::vector<uint64_t> out;
        if (std::optional<LockState> l = lock(name))
            for (const Waiter &w : l->waiters)
                out.push_back(w.request_id);
        return out;
    }
    SemaphoreState sem(const std::string &name)
    {
        std::optional<ObjectRow> row = st.object_get(kKindSemaphore, name);
        assert_true(row.has_value());
        return decode_semaphore(row->state);
    }
    int32_t sem_held(const std::string &name, uint64_t session)
    {
        for (const SemaphoreHolder &h : sem(name).holders)
            if (h.session == session)
                return h.permits;
        return 0;
    }
    std::vector<uint64_t> sem_waiters(const std::string &name)
    {
        std::vector<uint64_t> out;
        for (const Waiter &w : sem(name).waiters)
            out.push_back(w.request_id);
        return out;
    }
    ElectionState election(const std::string &name)
    {
        std::optional<ObjectRow> row = st.object_get(kKindElection, name);
        return row ? decode_election(row->state) : ElectionState{};
    }
    /* "term:leader,next,..." */
    std::string line(const std::string &name)
    {
        ElectionState e = election(name);
        std::string out = std::to_string(e.term) + ":";
        for (size_t i = 0; i < e.candidates.size(); i++)
            out += (i ? "," : "") + e.candidates[i].id;
        return out;
    }
    uint64_t owner(const std::string &name, const std::string &candidate)
    {
        for (const Candidate &c : election(name).candidates)
            if (c.id == candidate)
                return c.session;
        return 0;
    }
    bool session_open(uint64_t s) { return st.object_get(kKindSession, session_key(s)).has_value(); }
    bool tombstoned(uint64_t s, int64_t epoch = E1)
    {
        return st.object_get(kKindTombstone, tombstone_key(s, epoch)).has_value();
    }
    SessionState session(uint64_t s)
    {
        std::optional<ObjectRow> row = st.object_get(kKindSession, session_key(s));
        assert_true(row.has_value());
        return decode_session(row->state);
    }
    NodeLease lease(uint32_t node, std::optional<int64_t> *deadline = nullptr)
    {
        std::optional<ObjectRow> row = st.object_get(kKindNode, node_key(node));
        assert_true(row.has_value());
        if (deadline)
            *deadline = row->deadline_us;
        return decode_node(row->state);
    }
    std::vector<std::string> take_events()
    {
        std::vector<std::string> out;
        for (const WatchEvent &e : events)
            out.push_back(event_text(e));
        events.clear();
        return out;
    }
};

} // namespace

/* ================================ sessions ================================ */

/* A session opens with its first command in the partition: a session row
 * listing what it holds, and its node's lease listing it. */
static void session_opens_on_first_command(void **)
{
    Replica r;
    uint64_t A = sid(1, 1), A2 = sid(1, 2);
    assert_false(r.sm.next_deadline().has_value());

    CommandResult c = r.one(100, acquire(A, 1, "L", false));
    assert_result(c, ResultCode::Ok, r.v());
    SessionState s = r.session(A);
    assert_true(s.epoch == E1);
    assert_int_equal(s.refs.size(), 1);
    assert_true(s.refs[0].kind == kKindLock && s.refs[0].name == "L");
    std::optional<int64_t> deadline;
    NodeLease n = r.lease(1, &deadline);
    assert_true(n.epoch == E1);
    assert_true(n.timeout_us == kDefaultSessionTimeoutUs);
    assert_true(n.sessions == std::vector<uint64_t>{A});
    assert_true(deadline == 100 + kDefaultSessionTimeoutUs);
    assert_true(r.sm.next_deadline() == 100 + kDefaultSessionTimeoutUs);

    /* another session of the node joins the same lease */
    r.one(200, acquire(A2, 2, "M", false));
    assert_true(r.lease(1).sessions == (std::vector<uint64_t>{A, A2}));
    assert_true(r.session(A2).refs.size() == 1);

    /* without a session: refused, nothing opened or taken */
    assert_result(r.one(300, acquire(0, 3, "N", false)), ResultCode::SessionExpired, 0);
    assert_false(r.lock("N").has_value());
    assert_result(r.one(300, election(Op::ElectionEnter, 0, 4, "e", "x")), ResultCode::SessionExpired, 0);
    assert_true(r.line("e") == "0:");
}

/* A node's sessions expire when its keep-alive timeout of log time passes
 * without renewal; only an entry whose stamp reaches the deadline settles
 * it, and what the sessions held passes on. */
static void lease_expires_on_log_time_only(void **)
{
    Replica r;
    uint64_t A = sid(1, 1), B = sid(2, 1);
    r.at(0, {keep_alive(1, E1, kSec, {}, 0), keep_alive(2, E1, 100 * kSec, {}, 0)});
    /* a lease without sessions has nothing to expire */
    assert_false(r.sm.next_deadline().has_value());

    Applied a = r.at(0, {acquire(A, 1, "L"), acquire(B, 2, "L")});
    int64_t tA = r.v(0);
    assert_result(a.own[0], ResultCode::Ok, tA);
    assert_result(a.own[1], ResultCode::Pending, 0);
    assert_true(r.sm.next_deadline() == kSec);

    /* nothing happens before an entry's stamp reaches the deadline */
    assert_int_equal(r.at(kSec - 1, {}).settled.size(), 0);
    /* a new leader whose clock is behind does not move log time back */
    assert_int_equal(r.at(10, {}).settled.size(), 0);
    assert_true(r.st.load_meta().log_time_us == kSec - 1);
    assert_true(r.holder("L") == A);
    assert_true(r.session_open(A));

    Applied b = r.at(kSec, {});
    assert_int_equal(b.settled.size(), 1);
    int64_t tB = r.v(0);
    assert_result(b.settlement(2), ResultCode::Ok, tB);
    assert_true(tB > tA);
    LockState l = *r.lock("L");
    assert_true(l.holder == B && l.token == tB && l.since_us == kSec && l.grant_request == 2);
    assert_true(l.waiters.empty());
    assert_false(r.session_open(A));
    assert_true(r.tombstoned(A));
    std::optional<int64_t> deadline;
    assert_true(r.lease(1, &deadline).sessions.empty());
    assert_false(deadline.has_value());
    assert_true(r.session_open(B));

    /* the expired session's late commands are refused or change nothing */
    assert_result(r.one(kSec + 1, acquire(A, 3, "L")), ResultCode::SessionExpired, 0);
    assert_result(r.one(kSec + 2, acquire(A, 4, "other", false)), ResultCode::SessionExpired, 0);
    assert_result(r.one(kSec + 3, release(A, 5, "L")), ResultCode::Ok, 0);
    assert_true(r.holder("L") == B);
    assert_false(r.lock("other").has_value());

    /* the node's next session starts afresh */
    CommandResult c = r.one(kSec + 4, acquire(sid(1, 2), 6, "other", false));
    assert_result(c, ResultCode::Ok, r.v());
}

/* A new leader's LeasesRenew gives the leases of the nodes it lists a full
 * timeout from its stamp: the election's gap in log time expires none of
 * them, while a listed node that stays silent still expires one timeout
 * later, and an unlisted one (the crashed old leader) keeps its deadline. */
static void new_leader_renews_leases(void **)
{
    Replica r;
    uint64_t A = sid(1, 1), B = sid(2, 1), C = sid(3, 1);
    r.at(0, {keep_alive(1, E1, kSec, {}, 0), keep_alive(2, E1, kSec, {}, 0),
             keep_alive(3, E1, kSec, {}, 0)});
    r.at(0, {acquire(A, 1, "L", false), acquire(B, 2, "M", false), acquire(C, 3, "N", false)});
    /* node 3 led and died; the new leader's first entry comes 0.9 s later */
    Command renew = cmd_of(Op::LeasesRenew);
    for (uint64_t node : {1, 2})
        for (int i = 0; i < 8; i++)
            renew.value.push_back(static_cast<char>((node >> (8 * i)) & 0xff));
    r.one(9 * kSec / 10, renew);
    std::optional<int64_t> deadline;
    r.lease(1, &deadline);
    assert_true(deadline == 9 * kSec / 10 + kSec);
    /* past the old deadline: both sessions still open */
    r.at(kSec + kSec / 2, {});
    assert_true(r.session_open(A) && r.session_open(B));
    assert_false(r.session_open(C)); /* expired at its own deadline */
    assert_false(r.lock("N").has_value());
    /* node 1 renews, node 2 stays silent and expires a timeout after the renewal */
    r.one(kSec + kSec / 2, keep_alive(1, E1, kSec, {A}, 1));
    r.at(9 * kSec / 10 + kSec, {});
    assert_true(r.session_open(A));
    assert_false(r.session_open(B));
    assert_false(r.lock("M").has_value());
}

/* Commands and keep-alives renew a node's lease; a keep-alive sets the
 * timeout. */
static void commands_and_keep_alives_renew_leases(void **)
{
    Replica r;
    uint64_t A = sid(1, 1);
    r.one(0, keep_alive(1, E1, kSec, {}, 0));
    r.one(0, acquire(A, 1, "L", false));
    std::optional<int64_t> deadline;
    r.lease(1, &deadline);
    assert_true(deadline == kSec);

    r.one(kSec / 2, acquire(A, 2, "M", false)); /* a command proves the node alive */
    r.lease(1, &deadline);
    assert_true(deadline == kSec + kSec / 2);
    assert_int_equal(r.at(kSec + kSec / 4, {}).settled.size(), 0);
    assert_true(r.session_open(A));

    /* a keep-alive listing the session renews it */
    CommandResult k = r.one(kSec + 4 * kSec / 10, keep_alive(1, E1, kSec, {A}, 1));
    assert_result(k, ResultCode::Ok, kSec + 4 * kSec / 10 + kSec); /* the new deadline */
    r.lease(1, &deadline);
    assert_true(deadline == 2 * kSec + 4 * kSec / 10);
    r.at(2 * kSec + 3 * kSec / 10, {});
    assert_true(r.session_open(A) && r.holder("L") == A && r.holder("M") == A);

    /* a longer timeout from the next keep-alive */
    int64_t t = 2 * kSec + 3 * kSec / 10;
    r.one(t, keep_alive(1, E1, 5 * kSec, {A}, 1));
    r.lease(1, &deadline);
    assert_true(deadline == t + 5 * kSec);
    assert_true(r.lease(1).timeout_us == 5 * kSec);
    r.at(t + 5 * kSec - 1, {});
    assert_true(r.session_open(A));
    r.at(t + 5 * kSec, {});
    assert_false(r.session_open(A));
    assert_false(r.lock("L").has_value()); /* free and nobody waits: forgotten */
    assert_false(r.lock("M").has_value());
    /* what is left to wait for is forgetting the tombstone */
    assert_true(r.sm.next_deadline() == t + 5 * kSec + kTombstoneKeepUs);
}

/* A keep-alive lists the node's live sessions among those with sequence
 * <= arg2: a session missing from two keep-alives in a row was closed by its
 * backend (one keep-alive may have been overtaken by the session's first
 * command). */
static void keep_alive_omitting_a_session_closes_it(void **)
{
    Replica r;
    uint64_t A = sid(1, 1), A2 = sid(1, 2), A3 = sid(1, 3), B = sid(2, 1);
    Applied a = r.at(0, {acquire(A, 1, "L"), acquire(A2, 2, "M"), acquire(A3, 3, "N"),
                         acquire(B, 4, "L"), acquire(A2, 5, "N")});
    assert_result(a.own[0], ResultCode::Ok, r.v(0));
    assert_result(a.own[1], ResultCode::Ok, r.v(1));
    assert_result(a.own[2], ResultCode::Ok, r.v(2));
    assert_result(a.own[3], ResultCode::Pending, 0);
    assert_result(a.own[4], ResultCode::Pending, 0);

    /* sessions up to seq 2 are known to the node and none lives; A3 (seq 3)
     * is newer than the list and stays.  Once is not enough ... */
    Applied k0 = r.at(50, {keep_alive(1, E1, 10 * kSec, {}, 2)});
    assert_result(k0.own[0], ResultCode::Ok, 50 + 10 * kSec);
    assert_true(k0.settled.empty());
    assert_true(r.session_open(A) && r.session_open(A2));
    assert_true(r.lease(1).unlisted == (std::vector<uint64_t>{A, A2}));
    /* ... twice in a row is */
    Applied k = r.at(100, {keep_alive(1, E1, 10 * kSec, {}, 2)});
    assert_result(k.own[0], ResultCode::Ok, 100 + 10 * kSec);
    assert_int_equal(k.settled.size(), 2);
    assert_true(k.settled[0].request_id == 4);
    assert_result(k.settled[0], ResultCode::Ok, r.v(0)); /* L passes to B */
    assert_true(k.settled[1].request_id == 5);
    assert_result(k.settled[1], ResultCode::SessionExpired, 0); /* A2's wait */
    assert_true(r.holder("L") == B);
    assert_false(r.lock("M").has_value());
    assert_true(r.holder("N") == A3);
    assert_true(r.lock_waiters("N").empty());
    assert_false(r.session_open(A) || r.session_open(A2));
    assert_true(r.tombstoned(A) && r.tombstoned(A2));
    assert_true(r.session_open(A3));
    assert_true(r.lease(1).sessions == std::vector<uint64_t>{A3});
    assert_true(r.lease(1).unlisted.empty());

    /* listed: kept */
    assert_int_equal(r.at(200, {keep_alive(1, E1, 10 * kSec, {A3}, 3)}).settled.size(), 0);
    assert_true(r.session_open(A3) && r.holder("N") == A3);
    assert_result(r.one(300, acquire(A2, 6, "X", false)), ResultCode::SessionExpired, 0);

    /* left out, then listed again, then left out: not twice in a row */
    r.at(400, {keep_alive(1, E1, 10 * kSec, {}, 3)});
    r.at(500, {keep_alive(1, E1, 10 * kSec, {A3}, 3)});
    assert_true(r.lease(1).unlisted.empty());
    r.at(600, {keep_alive(1, E1, 10 * kSec, {}, 3)});
    assert_true(r.session_open(A3) && r.holder("N") == A3);
    /* a backend's own close needs no keep-alive */
    r.one(700, close_session(A3));
    assert_false(r.session_open(A3));
    assert_true(r.lease(1).sessions.empty() && r.lease(1).unlisted.empty());
}

/* A node that restarts announces its new incarnation: the sessions of its
 * previous life close at once, and their commands are refused. */
static void newer_epoch_closes_previous_life(void **)
{
    Replica r;
    uint64_t A = sid(1, 1), B = sid(2, 1);
    Applied a = r.at(0, {acquire(A, 1, "L"), acquire(B, 2, "L"),
                         election(Op::ElectionEnter, A, 3, "e", "a"),
                         election(Op::ElectionEnter, B, 4, "e", "b"), sem_create(5, "s", 2),
                         sem_acquire(A, 6, "s", 2), sem_acquire(B, 7, "s", 1)});
    assert_result(a.own[1], ResultCode::Pending, 0);
    assert_result(a.own[6], ResultCode::Pending, 0);
    assert_true(r.line("e") == "1:a,b");

    Applied k = r.at(100, {keep_alive(1, E2, 10 * kSec, {}, 0)});
    assert_result(k.own[0], ResultCode::Ok, 100 + 10 * kSec);
    assert_int_equal(k.settled.size(), 2);
    assert_result(k.settlement(2), ResultCode::Ok, r.v(0));
    assert_result(k.settlement(7), ResultCode::Ok, 1);
    assert_true(r.holder("L") == B);
    assert_true(r.line("e") == "2:b");
    assert_int_equal(r.sem("s").available, 1);
    assert_int_equal(r.sem_held("s", B), 1);
    assert_int_equal(r.sem_held("s", A), 0);
    NodeLease n = r.lease(1);
    assert_true(n.epoch == E2 && n.sessions.empty());
    assert_false(r.session_open(A));

    /* the previous life's commands are refused */
    assert_result(r.one(200, acquire(A, 8, "L")), ResultCode::SessionExpired, 0);
    assert_result(r.one(200, acquire(sid(1, 9), 9, "Z", false)), ResultCode::SessionExpired, 0);
    assert_false(r.lock("Z").has_value());
    /* and a keep-alive from it changes nothing */
    assert_result(r.one(300, keep_alive(1, E1, kSec, {A}, 1)), ResultCode::Ok, 0);
    n = r.lease(1);
    assert_true(n.epoch == E2 && n.timeout_us == 10 * kSec && n.sessions.empty());
}

/* Session ids restart at sequence 1 when a node restarts (its shared memory
 * is new): a session of the new life is not the closed one of the previous
 * life that had the same id. */
static void restarted_node_reuses_session_ids(void **)
{
    Replica r;
    uint64_t A = sid(1, 1);
    r.one(0, acquire(A, 1, "L"));
    r.one(100, keep_alive(1, E2, 10 * kSec, {}, 0)); /* A (of E1) closes */
    assert_true(r.tombstoned(A) && !r.lock("L").has_value());

    CommandResult c = r.one(200, in_epoch(acquire(A, 2, "L"), E2));
    assert_result(c, ResultCode::Ok, r.v());
    assert_true(r.session(A).epoch == E2);
    assert_true(r.lease(1).sessions == std::vector<uint64_t>{A});
    assert_true(r.holder("L") == A);

    /* the previous life's commands under the same id are still refused */
    assert_result(r.one(300, acquire(A, 3, "M")), ResultCode::SessionExpired, 0);
    assert_false(r.lock("M").has_value());
    /* and a close from the previous life does not end the new one */
    r.one(300, close_session(A));
    assert_true(r.session_open(A) && r.holder("L") == A);

    /* once the new life's session closes, it is refused too */
    r.one(400, in_epoch(close_session(A), E2));
    assert_false(r.lock("L").has_value());
    assert_result(r.one(500, in_epoch(acquire(A, 4, "L"), E2)), ResultCode::SessionExpired, 0);
}

/* The new life's first command may reach a partition before its keep-alive:
 * the previous life's sessions close before that command is applied, and
 * the command works on the state they left. */
static void restarted_node_first_command_closes_previous_life(void **)
{
    uint64_t A = sid(1, 1), B = sid(2, 1), A2 = sid(1, 2);
    {
        Replica r;
        Applied a = r.at(0, {sem_create(1, "s", 2), sem_acquire(A, 2, "s", 2), sem_acquire(B, 3, "s", 1)});
        assert_result(a.own[2], ResultCode::Pending, 0);
        Applied s = r.at(100, {in_epoch(sem_acquire(A2, 4, "s", 1), E2)});
        assert_result(s.settlement(3), ResultCode::Ok, 1); /* A's permits came back */
        assert_result(s.own[0], ResultCode::Ok, 1);
        SemaphoreState sem = r.sem("s");
        assert_int_equal(sem.available, 0);
        assert_true(sem.waiters.empty());
        assert_int_equal(sem.holders.size(), 2);
        assert_int_equal(r.sem_held("s", A), 0);
        assert_int_equal(r.sem_held("s", B), 1);
        assert_int_equal(r.sem_held("s", A2), 1);
    }
    {
        Replica r;
        r.at(0, {election(Op::ElectionEnter, A, 1, "e", "a"), election(Op::ElectionEnter, B, 2, "e", "b")});
        assert_true(r.line("e") == "1:a,b");
        /* the same candidate id, entered again by the new life */
        CommandResult c = r.one(100, in_epoch(election(Op::ElectionEnter, A2, 3, "e", "a"), E2));
        assert_result(c, ResultCode::Ok, 2);
        assert_true(r.line("e") == "2:b,a");
        assert_true(r.owner("e", "a") == A2);
    }
    {
        Replica r;
        r.at(0, {election(Op::ElectionEnter, A, 1, "e", "a"), election(Op::ElectionEnter, B, 2, "e", "b")});
        /* another candidate id: the previous life's leader does not come back */
        CommandResult c = r.one(100, in_epoch(election(Op::ElectionEnter, A2, 3, "e", "c"), E2));
        assert_result(c, ResultCode::Ok, 2);
        assert_true(r.line("e") == "2:b,c");
        assert_int_equal(r.session(A2).refs.size(), 1);
    }
    {
        Replica r;
        r.at(0, {acquire(A, 1, "L"), acquire(B, 2, "L")});
        Applied l = r.at(100, {in_epoch(acquire(A2, 3, "L"), E2)});
        assert_result(l.settlement(2), ResultCode::Ok, r.v(0));
        assert_result(l.own[0], ResultCode::Pending, 0);
        assert_true(r.holder("L") == B);
        assert_true(r.lock_waiters("L") == std::vector<uint64_t>{3});
    }
}

/* SessionClose (the backend exited): locks pass on, waits end with
 * SessionExpired, permits return, candidates leave, and a tombstone refuses
 * the session's late commands for kTombstoneKeepUs. */
static void session_close_releases_everything(void **)
{
    Replica r;
    uint64_t A = sid(1, 1), B = sid(2, 1), C = sid(3, 1);
    Applied a = r.at(0, {acquire(A, 1, "L"), acquire(B, 2, "L"), acquire(C, 3, "M"), acquire(A, 4, "M"),
                         sem_create(5, "s", 2), sem_acquire(A, 6, "s", 1), sem_acquire(C, 7, "s", 2),
                         election(Op::ElectionEnter, A, 8, "e", "a"),
                         election(Op::ElectionEnter, B, 9, "e", "b")});
    assert_result(a.own[1], ResultCode::Pending, 0);
    assert_result(a.own[3], ResultCode::Pending, 0);
    assert_result(a.own[6], ResultCode::Pending, 0);
    assert_int_equal(r.session(A).refs.size(), 4);

    Applied c = r.at(100, {close_session(A, 10)});
    assert_result(c.own[0], ResultCode::Ok, 1);
    assert_int_equal(c.settled.size(), 3);
    assert_true(c.settled[0].request_id == 2);
    assert_result(c.settled[0], ResultCode::Ok, r.v(0));
    assert_true(c.settled[1].request_id == 4);
    assert_result(c.settled[1], ResultCode::SessionExpired, 0);
    assert_true(c.settled[2].request_id == 7);
    assert_result(c.settled[2], ResultCode::Ok, 1);
    assert_true(r.holder("L") == B);
    assert_true(r.holder("M") == C && r.lock_waiters("M").empty());
    assert_int_equal(r.sem("s").available, 0);
    assert_int_equal(r.sem_held("s", C), 2);
    assert_int_equal(r.sem_held("s", A), 0);
    assert_true(r.line("e") == "2:b");
    assert_false(r.session_open(A));
    assert_true(r.lease(1).sessions.empty());
    std::optional<ObjectRow> tomb = r.st.object_get(kKindTombstone, tombstone_key(A, E1));
    assert_true(tomb && tomb->deadline_us == 100 + kTombstoneKeepUs);

    /* its late commands are refused */
    assert_result(r.one(100, acquire(A, 11, "L")), ResultCode::SessionExpired, 0);
    assert_result(r.one(100, sem_acquire(A, 12, "s", 1)), ResultCode::SessionExpired, 0);
    assert_code(r.one(100, election(Op::ElectionEnter, A, 13, "e", "a2")), ResultCode::SessionExpired);
    assert_true(r.line("e") == "2:b");
    assert_true(r.lock_waiters("L").empty() && r.sem_waiters("s").empty());
    /* closing again changes nothing */
    assert_result(r.one(100, close_session(A, 14)), ResultCode::Ok, 1);
    assert_true(r.holder("L") == B);

    /* the tombstone is forgotten after kTombstoneKeepUs */
    r.at(100 + kTombstoneKeepUs - 1, {});
    assert_true(r.tombstoned(A));
    r.at(100 + kTombstoneKeepUs, {});
    assert_false(r.tombstoned(A));
}

/* The waits of a session whose node expires end with SessionExpired. */
static void expired_session_waiters_get_session_expired(void **)
{
    Replica r;
    uint64_t A = sid(1, 1), B = sid(2, 1);
    r.at(0, {keep_alive(1, E1, kSec, {}, 0), keep_alive(2, E1, 100 * kSec, {}, 0)});
    Applied a = r.at(0, {acquire(B, 1, "L"), sem_create(2, "s", 1), sem_acquire(B, 3, "s", 1),
                         acquire(A, 4, "L"), sem_acquire(A, 5, "s", 1),
                         with_ttl(acquire(A, 6, "M"), 10 * kSec)});
    assert_result(a.own[3], ResultCode::Pending, 0);
    assert_result(a.own[4], ResultCode::Pending, 0);
    assert_result(a.own[5], ResultCode::Ok, r.v(5)); /* M was free */

    Applied e = r.at(kSec, {});
    assert_int_equal(e.settled.size(), 2);
    assert_true(e.settled[0].request_id == 4);
    assert_result(e.settled[0], ResultCode::SessionExpired, 0);
    assert_true(e.settled[1].request_id == 5);
    assert_result(e.settled[1], ResultCode::SessionExpired, 0);
    assert_true(r.holder("L") == B && r.lock_waiters("L").empty());
    assert_true(r.sem_waiters("s").empty());
    assert_false(r.lock("M").has_value());
}

/* ================================= locks ================================== */

/* try (arg1 = 0) answers at once; wait (arg1 = 1) queues; holders get their
 * token back; only the holder releases. */
static void lock_try_wait_reacquire_release(void **)
{
    Replica r;
    uint64_t A = sid(1, 1), B = sid(2, 1), C = sid(3, 1);
    CommandResult a = r.one(100, acquire(A, 1, "L", false));
    int64_t tA = r.v();
    assert_result(a, ResultCode::Ok, tA);
    LockState l = *r.lock("L");
    assert_true(l.holder == A && l.token == tA && l.since_us == 100 && l.grant_request == 1);

    assert_result(r.one(200, acquire(B, 2, "L", false)), ResultCode::Null, 0);
    assert_true(r.lock_waiters("L").empty());
    assert_result(r.one(300, acquire(B, 3, "L")), ResultCode::Pending, 0);
    assert_true(r.lock_waiters("L") == std::vector<uint64_t>{3});
    /* a zero (or negative) timeout is a try */
    assert_result(r.one(300, with_ttl(acquire(C, 4, "L"), 0)), ResultCode::Null, 0);
    assert_result(r.one(300, with_ttl(acquire(C, 5, "L"), -7)), ResultCode::Null, 0);
    assert_true(r.lock_waiters("L") == std::vector<uint64_t>{3});

    /* not reentrant: the holder gets the token it holds */
    assert_result(r.one(400, acquire(A, 6, "L")), ResultCode::Ok, tA);
    assert_result(r.one(400, acquire(A, 7, "L", false)), ResultCode::Ok, tA);
    assert_true(r.lock("L")->since_us == 100 && r.lock("L")->grant_request == 1);

    /* only the holder releases */
    assert_result(r.one(500, release(B, 8, "L")), ResultCode::Ok, 0);
    assert_result(r.one(500, release(C, 9, "L")), ResultCode::Ok, 0);
    assert_result(r.one(500, release(A, 10, "nope")), ResultCode::Ok, 0);
    assert_result(r.one(500, release(0, 11, "L")), ResultCode::Ok, 0);
    assert_true(r.holder("L") == A && r.lock_waiters("L") == std::vector<uint64_t>{3});

    Applied rel = r.at(600, {release(A, 12, "L")});
    assert_result(rel.own[0], ResultCode::Ok, 1);
    int64_t tB = r.v();
    assert_result(rel.settlement(3), ResultCode::Ok, tB);
    assert_true(tB > tA);
    assert_true(rel.all.size() == 2 && rel.all[0].request_id == 3); /* settlement first */
    l = *r.lock("L");
    assert_true(l.holder == B && l.token == tB && l.since_us == 600 && l.grant_request == 3);
    assert_result(r.one(700, release(A, 13, "L")), ResultCode::Ok, 0);
    /* the session ref follows what the session holds */
    assert_int_equal(r.session(A).refs.size(), 0);
    assert_int_equal(r.session(B).refs.size(), 1);

    assert_result(r.one(800, release(B, 14, "L")), ResultCode::Ok, 1);
    assert_false(r.lock("L").has_value()); /* free, nobody waits: forgotten */
    assert_int_equal(r.session(B).refs.size(), 0);
    /* the next grant's token is still larger */
    CommandResult again = r.one(900, acquire(C, 15, "L", false));
    assert_result(again, ResultCode::Ok, r.v());
    assert_true(again.value > tB);
}

/* Waiters are served first come, first served, whatever their sessions. */
static void lock_fifo_across_three_sessions(void **)
{
    Replica r;
    uint64_t A = sid(1, 1), B = sid(2, 1), C = sid(3, 1), D = sid(1, 2);
    r.one(0, acquire(A, 1, "L"));
    int64_t tA = r.v();
    assert_result(r.one(10, acquire(D, 2, "L")), ResultCode::Pending, 0);
    assert_result(r.one(20, acquire(B, 3, "L")), ResultCode::Pending, 0);
    assert_result(r.one(30, acquire(C, 4, "L")), ResultCode::Pending, 0);
    assert_true(r.lock_waiters("L") == (std::vector<uint64_t>{2, 3, 4}));

    std::vector<uint64_t> order;
    std::vector<int64_t> tokens{tA};
    uint64_t holder = A;
    uint64_t rid = 10;
    for (uint64_t next_session : {D, B, C}) {
        Applied a = r.at(100 + static_cast<int64_t>(rid), {release(holder, rid, "L")});
        rid++;
        assert_result(a.own[0], ResultCode::Ok, 1);
        assert_int_equal(a.settled.size(), 1);
        assert_result(a.settled[0], ResultCode::Ok, r.v());
        order.push_back(a.settled[0].request_id);
        tokens.push_back(a.settled[0].value);
        holder = r.holder("L");
        assert_true(holder == next_session);
    }
    assert_true(order == (std::vector<uint64_t>{2, 3, 4}));
    for (size_t i = 1; i < tokens.size(); i++)
        assert_true(tokens[i] > tokens[i - 1]);
    assert_true(r.lock_waiters("L").empty());
}

/* Tokens strictly increase per lock, also when one entry grants the lock
 * several times, and when one settlement does. */
static void lock_tokens_strictly_increase_within_an_entry(void **)
{
    Replica r;
    uint64_t A = sid(1, 1), B = sid(2, 1), C = sid(3, 1), D = sid(4, 1);
    r.at(0, {acquire(A, 1, "L"), acquire(B, 2, "L"), acquire(C, 3, "L"), acquire(D, 4, "L")});
    int64_t tA = r.v(0);
    Applied a = r.at(10, {release(A, 5, "L"), release(B, 6, "L"), release(C, 7, "L")});
    assert_result(a.settlement(2), ResultCode::Ok, r.v(0));
    assert_result(a.settlement(3), ResultCode::Ok, r.v(1));
    assert_result(a.settlement(4), ResultCode::Ok, r.v(2));
    assert_true(tA < r.v(0));
    assert_true(r.holder("L") == D && r.lock("L")->token == r.v(2));

    /* Two leases expire in one settlement, both at position 0 of the entry:
     * node 5's session holds, node 6's waits (and is granted when node 5's
     * lease ends, before its own), node 7's waits behind. */
    Replica q;
    uint64_t H = sid(5, 1), W = sid(6, 1), X = sid(7, 1), Y = sid(7, 2);
    q.at(0, {keep_alive(5, E1, kSec, {}, 0), keep_alive(6, E1, 2 * kSec, {}, 0),
             keep_alive(7, E1, 100 * kSec, {}, 0)});
    q.at(0, {acquire(H, 1, "L"), acquire(W, 2, "L"), acquire(X, 3, "L")});
    int64_t tH = q.v(0);
    Applied e = q.at(2 * kSec, {acquire(Y, 4, "L"), release(X, 5, "L"), release(Y, 6, "L"),
                                acquire(Y, 7, "L", false)});
    int64_t v0 = q.v(0);
    assert_result(e.settlement(2), ResultCode::Ok, v0);     /* W, at node 5's expiry */
    assert_result(e.settlement(3), ResultCode::Ok, v0 + 1); /* X, at node 6's */
    assert_result(e.own[0], ResultCode::Pending, 0);
    assert_result(e.own[1], ResultCode::Ok, 1);
    /* Y's grant at position 1 (version v0 + 1) is bumped past X's token */
    assert_result(e.settlement(4), ResultCode::Ok, v0 + 2);
    assert_result(e.own[2], ResultCode::Ok, 1);
    /* free again at position 2 with token v0 + 2: kept, so that position 3
     * (version v0 + 3) is still larger */
    assert_result(e.own[3], ResultCode::Ok, v0 + 3);
    assert_true(tH < v0);
    std::vector<std::string> events = q.take_events();
    assert_lines(events, {ev("lock", "L", "", "acquired", tH), ev("lock", "L", "", "released", tH),
                          ev("lock", "L", "", "acquired", v0), ev("lock", "L", "", "released", v0),
                          ev("lock", "L", "", "acquired", v0 + 1),
                          ev("lock", "L", "", "released", v0 + 1),
                          ev("lock", "L", "", "acquired", v0 + 2),
                          ev("lock", "L", "", "released", v0 + 2),
                          ev("lock", "L", "", "acquired", v0 + 3)});
}

/* A wait with a timeout (kFlagHasTtl + ttl_us) is settled Null at its
 * deadline, decided by the stamp of the entry that reaches it. */
static void lock_wait_timeouts(void **)
{
    Replica r;
    uint64_t A = sid(1, 1), B = sid(2, 1), C = sid(3, 1), D = sid(4, 1);
    Applied a = r.at(0, {acquire(A, 1, "L"), with_ttl(acquire(B, 2, "L"), 1000), acquire(C, 3, "L"),
                         with_ttl(acquire(D, 4, "L"), 5000)});
    assert_result(a.own[1], ResultCode::Pending, 0);
    assert_result(a.own[3], ResultCode::Pending, 0);
    assert_true(r.sm.next_deadline() == 1000);
    assert_int_equal(r.session(B).refs.size(), 1);

    assert_int_equal(r.at(999, {}).settled.size(), 0);
    Applied t = r.at(1000, {});
    assert_int_equal(t.settled.size(), 1);
    assert_true(t.settled[0].request_id == 2);
    assert_result(t.settled[0], ResultCode::Null, 0);
    assert_true(r.lock_waiters("L") == (std::vector<uint64_t>{3, 4}));
    assert_int_equal(r.session(B).refs.size(), 0);
    assert_true(r.sm.next_deadline() == 5000);

    /* the lock comes free before D's deadline; it goes to C, D keeps waiting */
    Applied rel = r.at(1500, {release(A, 5, "L")});
    assert_result(rel.settlement(3), ResultCode::Ok, r.v());
    /* settled in the entry that reaches the deadline, before its commands */
    Applied t2 = r.at(6000, {release(C, 6, "L")});
    assert_int_equal(t2.settled.size(), 1);
    assert_true(t2.all[0].request_id == 4);
    assert_result(t2.all[0], ResultCode::Null, 0);
    assert_result(t2.own[0], ResultCode::Ok, 1);
    assert_false(r.lock("L").has_value());

    /* a wait granted before its deadline is not timed out later */
    Replica q;
    q.at(0, {acquire(A, 1, "L"), with_ttl(acquire(B, 2, "L"), 1000)});
    Applied g = q.at(500, {release(A, 3, "L")});
    assert_result(g.settlement(2), ResultCode::Ok, q.v());
    assert_int_equal(q.at(2000, {}).settled.size(), 0);
    assert_true(q.holder("L") == B);
}

/* WaitCancel (key "l", arg1 the waiting request id) removes the waiter, or
 * gives back the grant that answered that very request. */
static void lock_wait_cancel(void **)
{
    Replica r;
    uint64_t A = sid(1, 1), B = sid(2, 1), C = sid(3, 1), D = sid(4, 1), E = sid(5, 1);
    r.at(0, {acquire(A, 1, "L"), acquire(B, 2, "L"), acquire(C, 3, "L")});

    /* only the waiting session can cancel its wait */
    assert_result(r.one(10, cancel(A, 9, kKindLock, "L", 2)), ResultCode::Ok, 0);
    assert_true(r.lock_waiters("L") == (std::vector<uint64_t>{2, 3}));

    assert_result(r.one(20, cancel(B, 10, kKindLock, "L", 2)), ResultCode::Ok, 1);
    assert_true(r.lock_waiters("L") == std::vector<uint64_t>{3});
    assert_int_equal(r.session(B).refs.size(), 0);

    Applied rel = r.at(30, {release(A, 11, "L")});
    assert_int_equal(rel.settled.size(), 1);
    assert_result(rel.settlement(3), ResultCode::Ok, r.v()); /* C, not B */
    int64_t tC = r.v();
    r.take_events();

    /* C's backend gave up meanwhile: cancelling the granted request
     * releases the lock */
    r.one(35, acquire(D, 12, "L"));
    Applied cg = r.at(40, {cancel(C, 13, kKindLock, "L", 3)});
    assert_result(cg.own[0], ResultCode::Ok, 1);
    assert_result(cg.settlement(12), ResultCode::Ok, r.v());
    assert_true(r.holder("L") == D);
    assert_lines(r.take_events(), {ev("lock", "L", "", "released", tC),
                                   ev("lock", "L", "", "acquired", r.v())});
    /* a cancel of a request that no longer holds or waits changes nothing */
    assert_result(r.one(50, cancel(C, 14, kKindLock, "L", 3)), ResultCode::Ok, 0);
    assert_result(r.one(50, cancel(D, 15, kKindLock, "L", 999)), ResultCode::Ok, 0);
    assert_true(r.holder("L") == D);

    /* a cancel that overtook its acquire: the acquire, when it arrives, does
     * not queue */
    assert_result(r.one(60, cancel(E, 16, kKindLock, "L", 77)), ResultCode::Ok, 0);
    assert_result(r.one(70, acquire(E, 77, "L")), ResultCode::Null, 0);
    assert_true(r.lock_waiters("L").empty());
    /* also on an unknown lock */
    assert_result(r.one(80, cancel(E, 17, kKindLock, "Q", 78)), ResultCode::Ok, 0);
    assert_result(r.one(90, acquire(E, 78, "Q")), ResultCode::Null, 0);
    assert_false(r.lock("Q").has_value());
}

/* The lock passes to the next waiter when its holder's session closes or
 * its node's lease expires. */
static void lock_passes_on_when_holder_session_ends(void **)
{
    Replica r;
    uint64_t A = sid(1, 1), B = sid(2, 1), C = sid(3, 1);
    r.at(0, {keep_alive(1, E1, 10 * kSec, {}, 0), keep_alive(2, E1, kSec, {}, 0),
             keep_alive(3, E1, 100 * kSec, {}, 0)});
    r.at(0, {acquire(A, 1, "L"), acquire(B, 2, "L"), acquire(C, 3, "L")});
    int64_t tA = r.v(0);
    r.take_events();

    Applied c = r.at(100, {close_session(A)});
    int64_t tB = r.v();
    assert_result(c.settlement(2), ResultCode::Ok, tB);
    assert_true(r.holder("L") == B);
    assert_lines(r.take_events(), {ev("lock", "L", "", "released", tA), ev("lock", "L", "", "acquired", tB)});

    /* B's node (1 s timeout) goes silent */
    Applied e = r.at(kSec, {});
    int64_t tC = r.v();
    assert_result(e.settlement(3), ResultCode::Ok, tC);
    assert_true(tA < tB && tB < tC);
    assert_true(r.holder("L") == C);
    assert_lines(r.take_events(), {ev("lock", "L", "", "released", tB), ev("lock", "L", "", "acquired", tC)});
}

/* =============================== semaphores =============================== */

static void semaphore_create_not_found_invalid(void **)
{
    Replica r;
    uint64_t A = sid(1, 1);
    assert_result(r.one(0, sem_create(1, "s", 3)), ResultCode::Ok, 1);
    assert_result(r.one(0, sem_create(2, "s", 5)), ResultCode::Ok, 0); /* exists: unchanged */
    SemaphoreState s = r.sem("s");
    assert_true(s.permits == 3 && s.available == 3 && s.holders.empty() && s.waiters.empty());

    assert_result(r.one(0, sem_acquire(A, 3, "nope", 1)), ResultCode::NotFound, 0);
    assert_result(r.one(0, sem_release(A, 4, "nope", 1)), ResultCode::NotFound, 0);
    /* more than the semaphore has: Invalid, with its size */
    assert_result(r.one(0, sem_acquire(A, 5, "s", 4)), ResultCode::Invalid, 3);
    assert_result(r.one(0, sem_acquire(A, 6, "s", 0)), ResultCode::Invalid, 3);
    assert_result(r.one(0, sem_acquire(A, 7, "s", -1)), ResultCode::Invalid, 3);
    /* refused calls open no session */
    assert_false(r.session_open(A));
    assert_false(r.st.object_get(kKindNode, node_key(1)).has_value());
    assert_int_equal(r.sem("s").available, 3);

    /* all of it at once is fine */
    assert_result(r.one(0, sem_acquire(A, 8, "s", 3)), ResultCode::Ok, 1);
    assert_int_equal(r.sem("s").available, 0);
    assert_int_equal(r.sem_held("s", A), 3);
}

/* First come, first served: a large request at the head of the line is not
 * overtaken by smaller ones behind it. */
static void semaphore_fifo_large_head_not_overtaken(void **)
{
    Replica r;
    uint64_t A = sid(1, 1), B = sid(2, 1), C = sid(3, 1), D = sid(4, 1);
    r.one(0, sem_create(1, "s", 3));
    assert_result(r.one(0, sem_acquire(A, 2, "s", 2)), ResultCode::Ok, 1);
    assert_int_equal(r.sem("s").available, 1);
    assert_result(r.one(10, sem_acquire(B, 3, "s", 3)), ResultCode::Pending, 0);
    /* one permit is free, but B is ahead */
    assert_result(r.one(20, sem_acquire(C, 4, "s", 1)), ResultCode::Pending, 0);
    assert_result(r.one(30, sem_acquire(D, 5, "s", 1, false)), ResultCode::Ok, 0); /* no wait: false */
    assert_true(r.sem_waiters("s") == (std::vector<uint64_t>{3, 4}));

    assert_result(r.one(40, sem_release(A, 6, "s", 1)), ResultCode::Ok, 1); /* 2 free: B still waits */
    assert_int_equal(r.sem("s").available, 2);
    Applied a = r.at(50, {sem_release(A, 7, "s", 1)});
    assert_int_equal(a.settled.size(), 1);
    assert_result(a.settlement(3), ResultCode::Ok, 1);
    assert_int_equal(r.sem("s").available, 0);
    assert_int_equal(r.sem_held("s", B), 3);
    assert_int_equal(r.sem_held("s", A), 0);
    assert_true(r.sem_waiters("s") == std::vector<uint64_t>{4});

    Applied b = r.at(60, {sem_release(B, 8, "s", 3)});
    assert_result(b.settlement(4), ResultCode::Ok, 1);
    assert_int_equal(r.sem("s").available, 2);
    assert_int_equal(r.sem_held("s", C), 1);
    assert_true(r.sem("s").waiters.empty());

    /* several small waiters behind a released head are all served */
    Replica q;
    q.one(0, sem_create(1, "s", 3));
    q.one(0, sem_acquire(A, 2, "s", 3));
    q.at(0, {sem_acquire(B, 3, "s", 1), sem_acquire(C, 4, "s", 1), sem_acquire(D, 5, "s", 2)});
    Applied c = q.at(10, {sem_release(A, 6, "s", 3)});
    assert_int_equal(c.settled.size(), 2);
    assert_true(c.settled[0].request_id == 3 && c.settled[1].request_id == 4);
    assert_true(q.sem_waiters("s") == std::vector<uint64_t>{5});
    assert_int_equal(q.sem("s").available, 1);
}

/* A timed-out acquire answers Ok with value 0 (false), and a large head
 * that times out lets the smaller ones behind it through. */
static void semaphore_timeout(void **)
{
    Replica r;
    uint64_t A = sid(1, 1), B = sid(2, 1), C = sid(3, 1);
    r.one(0, sem_create(1, "s", 3));
    r.one(0, sem_acquire(A, 2, "s", 3));
    assert_result(r.one(0, with_ttl(sem_acquire(B, 3, "s", 2), 1000)), ResultCode::Pending, 0);
    assert_result(r.one(0, sem_acquire(C, 4, "s", 1)), ResultCode::Pending, 0);
    assert_result(r.one(500, sem_release(A, 5, "s", 1)), ResultCode::Ok, 1);
    assert_true(r.sem_waiters("s") == (std::vector<uint64_t>{3, 4}));
    assert_true(r.sm.next_deadline() == 1000);

    assert_int_equal(r.at(999, {}).settled.size(), 0);
    Applied t = r.at(1000, {});
    assert_int_equal(t.settled.size(), 2);
    assert_true(t.settled[0].request_id == 3);
    assert_result(t.settled[0], ResultCode::Ok, 0);
    assert_true(t.settled[1].request_id == 4);
    assert_result(t.settled[1], ResultCode::Ok, 1);
    assert_int_equal(r.sem("s").available, 0);
    assert_int_equal(r.sem_held("s", C), 1);
    assert_int_equal(r.sem_held("s", B), 0);
    assert_int_equal(r.session(B).refs.size(), 0);
    /* zero timeout: no wait */
    assert_result(r.one(1100, with_ttl(sem_acquire(B, 6, "s", 1), 0)), ResultCode::Ok, 0);
    assert_true(r.sem("s").waiters.empty());
}

static void semaphore_release_more_than_held(void **)
{
    Replica r;
    uint64_t A = sid(1, 1), B = sid(2, 1);
    r.one(0, sem_create(1, "s", 3));
    r.one(0, sem_acquire(A, 2, "s", 1));
    assert_result(r.one(0, sem_release(A, 3, "s", 2)), ResultCode::Ok, 0);
    assert_int_equal(r.sem("s").available, 2);
    assert_int_equal(r.sem_held("s", A), 1);
    assert_result(r.one(0, sem_release(B, 4, "s", 1)), ResultCode::Ok, 0); /* holds none */
    assert_result(r.one(0, sem_release(A, 5, "s", 0)), ResultCode::Ok, 0);
    assert_result(r.one(0, sem_release(0, 6, "s", 1)), ResultCode::Ok, 0);
    assert_int_equal(r.sem("s").available, 2);

    /* permits add up per session, and go back in parts */
    r.one(0, sem_acquire(A, 7, "s", 2));
    assert_int_equal(r.sem_held("s", A), 3);
    assert_result(r.one(0, sem_release(A, 8, "s", 2)), ResultCode::Ok, 1);
    assert_result(r.one(0, sem_release(A, 9, "s", 1)), ResultCode::Ok, 1);
    assert_result(r.one(0, sem_release(A, 10, "s", 1)), ResultCode::Ok, 0);
    SemaphoreState s = r.sem("s");
    assert_true(s.available == 3 && s.holders.empty());
    assert_int_equal(r.session(A).refs.size(), 0);
}

/* A closing session's permits return (to the line first), its waits end. */
static void semaphore_session_close_returns_permits(void **)
{
    Replica r;
    uint64_t A = sid(1, 1), B = sid(2, 1), C = sid(3, 1);
    r.one(0, sem_create(1, "s", 3));
    r.at(0, {sem_acquire(A, 2, "s", 2), sem_acquire(A, 3, "s", 1), sem_acquire(B, 4, "s", 2),
             sem_acquire(C, 5, "s", 3)});
    assert_int_equal(r.sem_held("s", A), 3);
    assert_true(r.sem_waiters("s") == (std::vector<uint64_t>{4, 5}));

    Applied c = r.at(10, {close_session(A)});
    assert_int_equal(c.settled.size(), 1);
    assert_result(c.settlement(4), ResultCode::Ok, 1);
    assert_int_equal(r.sem("s").available, 1);
    assert_int_equal(r.sem_held("s", B), 2);

    Applied d = r.at(20, {close_session(C)});
    assert_result(d.settlement(5), ResultCode::SessionExpired, 0);
    assert_true(r.sem("s").waiters.empty());
    assert_int_equal(r.sem("s").available, 1);
}

/* WaitCancel (key "m") of a semaphore wait: the waiter leaves the line
 * (letting smaller requests behind it through), or the permits granted to
 * that request come back. */
static void semaphore_wait_cancel(void **)
{
    Replica r;
    uint64_t A = sid(1, 1), B = sid(2, 1), C = sid(3, 1);
    r.one(0, sem_create(1, "s", 3));
    r.one(0, sem_acquire(A, 2, "s", 2));
    r.at(0, {sem_acquire(B, 3, "s", 2), sem_acquire(C, 4, "s", 1)});
    Applied c = r.at(10, {cancel(B, 5, kKindSemaphore, "s", 3)});
    assert_result(c.own[0], ResultCode::Ok, 1);
    assert_result(c.settlement(4), ResultCode::Ok, 1);
    assert_int_equal(r.sem("s").available, 0);
    assert_int_equal(r.session(B).refs.size(), 0);

    /* C was granted meanwhile; its backend gave up: the permit comes back */
    assert_result(r.one(20, cancel(C, 6, kKindSemaphore, "s", 4)), ResultCode::Ok, 1);
    assert_int_equal(r.sem("s").available, 1);
    assert_int_equal(r.sem_held("s", C), 0);
    assert_result(r.one(30, cancel(C, 7, kKindSemaphore, "s", 4)), ResultCode::Ok, 0);
    assert_int_equal(r.sem("s").available, 1);

    /* an acquire whose cancel overtook it answers false without queueing */
    assert_result(r.one(40, cancel(B, 8, kKindSemaphore, "s", 50)), ResultCode::Ok, 0);
    assert_result(r.one(50, sem_acquire(B, 50, "s", 3)), ResultCode::Ok, 0);
    assert_true(r.sem("s").waiters.empty());
}

/* ================================ elections =============================== */

static void election_enter_withdraw_anoint_promote_evict(void **)
{
    Replica r;
    uint64_t A = sid(1, 1), B = sid(2, 1), C = sid(3, 1);
    auto enter = [&](uint64_t s, uint64_t rid, const std::string &cand) {
        return r.one(0, election(Op::ElectionEnter, s, rid, "e", cand));
    };
    auto change = [&](Op op, uint64_t s, uint64_t rid, const std::string &cand) {
        return r.one(0, election(op, s, rid, "e", cand));
    };
    assert_true(r.line("e") == "0:");
    assert_result(enter(A, 1, "a"), ResultCode::Ok, 1); /* the first candidate leads */
    assert_result(enter(B, 2, "b"), ResultCode::Ok, 1);
    assert_result(enter(C, 3, "c"), ResultCode::Ok, 1);
    assert_true(r.line("e") == "1:a,b,c");
    /* entering again from the same session changes nothing */
    assert_result(enter(A, 4, "a"), ResultCode::Ok, 1);
    assert_true(r.line("e") == "1:a,b,c");
    /* another session's candidate id */
    assert_code(enter(B, 5, "a"), ResultCode::Conflict);
    assert_true(r.owner("e", "a") == A);
    /* withdrawing another session's candidate */
    assert_code(change(Op::ElectionWithdraw, A, 6, "b"), ResultCode::NotOwner);
    assert_code(change(Op::ElectionWithdraw, 0, 7, "b"), ResultCode::NotOwner);
    assert_true(r.line("e") == "1:a,b,c");
    /* anoint/promote/withdraw of a candidate that does not stand: nothing */
    assert_result(change(Op::ElectionWithdraw, A, 8, "zz"), ResultCode::Ok, 1);
    assert_result(change(Op::ElectionAnoint, 0, 9, "zz"), ResultCode::Ok, 1);
    assert_result(change(Op::ElectionPromote, 0, 10, "zz"), ResultCode::Ok, 1);
    assert_result(change(Op::ElectionEvict, 0, 11, "zz"), ResultCode::Ok, 1);
    assert_true(r.line("e") == "1:a,b,c");

    /* promote: next in line, behind the leader; no leader change */
    assert_result(change(Op::ElectionPromote, 0, 12, "c"), ResultCode::Ok, 1);
    assert_true(r.line("e") == "1:a,c,b");
    assert_result(change(Op::ElectionPromote, 0, 13, "a"), ResultCode::Ok, 1); /* the leader */
    assert_result(change(Op::ElectionPromote, 0, 14, "c"), ResultCode::Ok, 1); /* already next */
    assert_true(r.line("e") == "1:a,c,b");

    /* anoint: leader now, term + 1 */
    assert_result(change(Op::ElectionAnoint, 0, 15, "b"), ResultCode::Ok, 2);
    assert_true(r.line("e") == "2:b,a,c");
    assert_result(change(Op::ElectionAnoint, 0, 16, "b"), ResultCode::Ok, 2);
    assert_true(r.line("e") == "2:b,a,c");

    /* withdrawing a follower keeps the term */
    assert_result(change(Op::ElectionWithdraw, C, 17, "c"), ResultCode::Ok, 2);
    assert_true(r.line("e") == "2:b,a");
    assert_int_equal(r.session(C).refs.size(), 0);
    /* evict removes anyone's candidate */
    assert_result(change(Op::ElectionEvict, C, 18, "a"), ResultCode::Ok, 2);
    assert_true(r.line("e") == "2:b");
    assert_int_equal(r.session(A).refs.size(), 0);
    /* the leader withdraws: the next leads (here nobody: leader NULL, same term) */
    assert_result(enter(C, 19, "c"), ResultCode::Ok, 2);
    assert_result(change(Op::ElectionWithdraw, B, 20, "b"), ResultCode::Ok, 3);
    assert_true(r.line("e") == "3:c");
    assert_result(change(Op::ElectionEvict, 0, 21, "c"), ResultCode::Ok, 3);
    assert_true(r.line("e") == "3:");
    assert_result(enter(A, 22, "a"), ResultCode::Ok, 4);
    assert_true(r.line("e") == "4:a");

    /* a session standing with two ids keeps its ref until both leave */
    assert_result(enter(A, 23, "a2"), ResultCode::Ok, 4);
    assert_result(change(Op::ElectionWithdraw, A, 24, "a"), ResultCode::Ok, 5);
    assert_int_equal(r.session(A).refs.size(), 1);
    assert_true(r.line("e") == "5:a2");
    /* elections are independent */
    assert_true(r.line("other") == "0:");
}

/* A leader whose session expires hands over to the next in line, term + 1;
 * a follower's expiry keeps the term. */
static void election_leader_expiry_hands_over(void **)
{
    Replica r;
    uint64_t A = sid(1, 1), B = sid(2, 1), C = sid(3, 1);
    r.at(0, {keep_alive(1, E1, kSec, {}, 0), keep_alive(2, E1, 100 * kSec, {}, 0),
             keep_alive(3, E1, 2 * kSec, {}, 0)});
    r.at(0, {election(Op::ElectionEnter, A, 1, "e", "a"), election(Op::ElectionEnter, B, 2, "e", "b"),
             election(Op::ElectionEnter, C, 3, "e", "c"), election(Op::ElectionEnter, A, 4, "f", "a")});
    assert_true(r.line("e") == "1:a,b,c");
    assert_true(r.line("f") == "1:a");
    r.take_events();

    r.at(kSec, {});
    assert_true(r.line("e") == "2:b,c");
    assert_true(r.line("f") == "1:");
    assert_lines(r.take_events(), {ev("election", "e", "b", "leader", 2), ev("election", "f", "", "leader", 1)});

    r.at(2 * kSec, {});
    assert_true(r.line("e") == "2:b");
    assert_lines(r.take_events(), {ev("election", "e", "", "candidates", 2)});
}

/* ============================== values / sets ============================= */

static void values_with_versions_and_ttl(void **)
{
    Replica r;
    CommandResult s1 = r.one(0, value_set(1, "cfg", "one"));
    int64_t v1 = r.v();
    assert_result(s1, ResultCode::Ok, v1);
    std::optional<MapRow> row = r.st.map_get(kEntryValue, "cfg", "");
    assert_true(row && row->value == "one" && row->version == v1 && !row->expires_at_us);
    assert_false(r.st.map_get(kEntryMap, "cfg", "").has_value()); /* not a map entry */

    CommandResult s2 = r.one(10, with_if_version(value_set(2, "cfg", "two"), v1));
    int64_t v2 = r.v();
    assert_result(s2, ResultCode::Ok, v2);
    assert_result(r.one(20, with_if_version(value_set(3, "cfg", "three"), v1)), ResultCode::Null, 0);
    assert_true(r.st.map_get(kEntryValue, "cfg", "")->value == "two");
    assert_result(r.one(20, with_if_version(value_set(4, "new", "x"), 0)), ResultCode::Null, 0);
    assert_false(r.st.map_get(kEntryValue, "new", "").has_value());

    assert_result(r.one(30, with_if_version(value_delete(5, "cfg"), v1)), ResultCode::Ok, 0);
    assert_true(r.st.map_get(kEntryValue, "cfg", "").has_value());
    assert_result(r.one(30, with_if_version(value_delete(6, "cfg"), v2)), ResultCode::Ok, 1);
    assert_false(r.st.map_get(kEntryValue, "cfg", "").has_value());
    assert_result(r.one(30, value_delete(7, "cfg")), ResultCode::Ok, 0);

    CommandResult t = r.one(500, with_ttl(value_set(8, "tmp", "t"), 1000));
    assert_result(t, ResultCode::Ok, r.v());
    assert_true(r.st.map_get(kEntryValue, "tmp", "")->expires_at_us == 1500);
    assert_true(r.sm.next_deadline() == 1500);
    r.at(1499, {});
    assert_true(r.st.map_get(kEntryValue, "tmp", "").has_value());
    r.take_events();
    r.at(1500, {});
    assert_false(r.st.map_get(kEntryValue, "tmp", "").has_value());
    assert_lines(r.take_events(), {ev("value", "tmp", "", "expire", r.v())});
}

static void sets_add_remove_ttl(void **)
{
    Replica r;
    auto member = [&](const std::string &e) { return r.st.map_get(kEntrySet, "S", e); };
    assert_result(r.one(0, set_op(Op::SetAdd, 1, "S", "x")), ResultCode::Ok, 1);
    assert_result(r.one(0, set_op(Op::SetAdd, 2, "S", "x")), ResultCode::Ok, 0);
    assert_result(r.one(0, with_ttl(set_op(Op::SetAdd, 3, "S", "y"), 1000)), ResultCode::Ok, 1);
    assert_true(member("y")->expires_at_us == 1000);
    /* a present element keeps its ttl */
    assert_result(r.one(10, with_ttl(set_op(Op::SetAdd, 4, "S", "y"), 5000)), ResultCode::Ok, 0);
    assert_true(member("y")->expires_at_us == 1000);
    assert_result(r.one(10, set_op(Op::SetAdd, 5, "S", "y")), ResultCode::Ok, 0);
    assert_true(member("y")->expires_at_us == 1000);

    assert_result(r.one(20, set_op(Op::SetRemove, 6, "S", "x")), ResultCode::Ok, 1);
    assert_result(r.one(20, set_op(Op::SetRemove, 7, "S", "x")), ResultCode::Ok, 0);
    assert_result(r.one(20, set_op(Op::SetRemove, 8, "S", "never")), ResultCode::Ok, 0);
    assert_false(member("x").has_value());
    /* other sets and maps are separate */
    assert_result(r.one(20, set_op(Op::SetAdd, 9, "T", "y")), ResultCode::Ok, 1);
    assert_false(r.st.map_get(kEntryMap, "S", "y").has_value());
    r.take_events();

    r.at(1000, {});
    assert_false(member("y").has_value());
    assert_true(r.st.map_get(kEntrySet, "T", "y").has_value());
    assert_lines(r.take_events(), {ev("set", "S", "y", "expire", r.v())});
}

/* map_commit: every if_version is checked first; all writes or none, all
 * with the commit's version. */
static void map_commit_all_or_nothing(void **)
{
    Replica r;
    r.at(0, {put(1, "m", "a", "1"), put(2, "m", "b", "2"), put(3, "m", "c0", "x")});
    int64_t va = r.v(0), vb = r.v(1);
    r.take_events();

    CommandResult c = r.one(10, map_commit(4, "m", {if_version(put_op("a", "A"), va),
                                                   if_version(remove_op("b"), vb),
                                                   put_op("c", "C", 1000), remove_op("zz")}));
    int64_t vc = r.v();
    assert_result(c, ResultCode::Ok, vc);
    std::optional<MapRow> a = r.st.map_get(kEntryMap, "m", "a");
    assert_true(a && a->value == "A" && a->version == vc && !a->expires_at_us);
    assert_false(r.st.map_get(kEntryMap, "m", "b").has_value());
    std::optional<MapRow> cc = r.st.map_get(kEntryMap, "m", "c");
    assert_true(cc && cc->value == "C" && cc->version == vc && cc->expires_at_us == 1010);
    assert_lines(r.take_events(), {ev("map", "m", "a", "put", vc), ev("map", "m", "b", "remove", vc),
                                   ev("map", "m", "c", "put", vc)});

    /* one stale if_version (the last op): nothing at all is applied */
    CommandResult n = r.one(20, map_commit(5, "m", {put_op("a", "AA"), put_op("d", "D"),
                                                   if_version(remove_op("c"), vc),
                                                   if_version(put_op("a", "old"), va)}));
    assert_result(n, ResultCode::Null, 0);
    assert_true(r.st.map_get(kEntryMap, "m", "a")->value == "A");
    assert_false(r.st.map_get(kEntryMap, "m", "d").has_value());
    assert_true(r.st.map_get(kEntryMap, "m", "c").has_value());
    assert_true(r.take_events().empty());
    /* an absent key never matches an if_version */
    assert_result(r.one(20, map_commit(6, "m", {if_version(put_op("nope", "x"), 0)})), ResultCode::Null, 0);
    assert_result(r.one(20, map_commit(7, "m", {if_version(remove_op("nope"), 0)})), ResultCode::Null, 0);
    /* a malformed list is refused alike on every replica */
    Command bad = with_rid(cmd_of(Op::MapCommit, "m", "", std::string("\x01\x00", 2)), 8);
    assert_result(r.one(20, bad), ResultCode::Invalid, 0);
    /* other maps are untouched */
    assert_true(r.st.map_get(kEntryMap, "m", "c0")->value == "x");

    r.at(1010, {});
    assert_false(r.st.map_get(kEntryMap, "m", "c").has_value());
    assert_lines(r.take_events(), {ev("map", "m", "c", "expire", r.v())});
}

/* IdReserve hands out [next, next + block), ids start at 1. */
static void id_reserve_blocks(void **)
{
    Replica r;
    assert_result(r.one(0, id_reserve(1, "ids", 1000)), ResultCode::Ok, 1);
    assert_result(r.one(0, id_reserve(2, "ids", 1000)), ResultCode::Ok, 1001);
    assert_result(r.one(0, id_reserve(3, "ids", 5)), ResultCode::Ok, 2001);
    assert_result(r.one(0, id_reserve(4, "other", 10)), ResultCode::Ok, 1);
    assert_result(r.one(0, id_reserve(5, "ids", 0)), ResultCode::OutOfRange, 0);
    assert_result(r.one(0, id_reserve(6, "ids", -3)), ResultCode::OutOfRange, 0);
    assert_result(r.one(0, id_reserve(7, "ids", 1)), ResultCode::Ok, 2006);
    Applied two = r.at(0, {id_reserve(8, "ids", 10), id_reserve(9, "ids", 10)});
    assert_result(two.own[0], ResultCode::Ok, 2007);
    assert_result(two.own[1], ResultCode::Ok, 2017);

    r.st.object_put(kKindIdGenerator, "big", ObjectRow{encode_i64(kMax - 10), std::nullopt});
    assert_result(r.one(0, id_reserve(10, "big", 10)), ResultCode::Ok, kMax - 10);
    assert_result(r.one(0, id_reserve(11, "big", 1)), ResultCode::OutOfRange, 0);
    assert_true(decode_i64(r.st.object_get(kKindIdGenerator, "big")->state) == kMax);
}

/* ======================== snapshots and replicas ========================= */

/* A log that leaves every kind of object row behind, with deadlines that
 * fall due after any point where a snapshot may be cut. */
std::vector<std::pair<int64_t, std::vector<Command>>> scenario()
{
    uint64_t A = sid(1, 1), B = sid(2, 1), C = sid(3, 1), C2 = sid(3, 2);
    std::vector<std::pair<int64_t, std::vector<Command>>> log;
    log.push_back({0, {keep_alive(1, E1, 2 * kSec, {}, 0), keep_alive(2, E1, 100 * kSec, {}, 0),
                       keep_alive(3, E1, 100 * kSec, {}, 0)}});
    log.push_back({0, {acquire(A, 1, "L"), acquire(B, 2, "L"), with_ttl(acquire(C, 3, "L"), 1500000),
                       sem_create(4, "s", 3), sem_acquire(A, 5, "s", 2), sem_acquire(B, 6, "s", 3),
                       with_ttl(sem_acquire(C, 7, "s", 1), kSec),
                       election(Op::ElectionEnter, A, 8, "e", "a"),
                       election(Op::ElectionEnter, B, 9, "e", "b"),
                       election(Op::ElectionEnter, C, 10, "e", "c")}});
    log.push_back({0, {with_ttl(value_set(11, "v", "x"), 3 * kSec),
                         with_ttl(set_op(Op::SetAdd, 12, "S", "el"), 2500000),
                         with_ttl(put(13, "m", "k", "v"), 1200000), id_reserve(14, "ids", 100),
                         counter_cmd(Op::CounterIncr, "n", 5)}});
    log.push_back({500, {with_rid(cmd_of(Op::ElectionPromote, "e", "c"), 16), acquire(C2, 15, "M"),
                         close_session(C2, 17), acquire(C, 18, "M")}});
    log.push_back({kSec, {}});           /* C's semaphore wait times out */
    log.push_back({1200000, {}});        /* m/k expires */
    log.push_back({1500000, {}});        /* C's lock wait times out */
    log.push_back({2 * kSec, {}});       /* node 1 expires: L to B, s to B, e to c */
    log.push_back({2100000, {release(B, 19, "L"), sem_release(B, 20, "s", 1), close_session(B, 21)}});
    log.push_back({3 * kSec, {}});       /* S/el and v expire */
    log.push_back({3 * kSec + kTombstoneKeepUs, {}}); /* tombstones forgotten */
    return log;
}

/* Two replicas applying the same entries answer alike, report the same
 * events and end with identical storage, at every step. */
static void replicas_agree(void **)
{
    Replica a, b;
    for (const auto &entry : scenario()) {
        Applied x = a.at(entry.first, entry.second);
        Applied y = b.at(entry.first, entry.second);
        assert_int_equal(x.all.size(), y.all.size());
        for (size_t i = 0; i < x.all.size(); i++) {
            assert_true(x.all[i].request_id == y.all[i].request_id);
            assert_true(x.all[i].code == y.all[i].code && x.all[i].value == y.all[i].value);
        }
        assert_lines(a.take_events(), b.take_events());
        assert_true(a.sm.snapshot() == b.sm.snapshot());
    }
    /* and the scenario did what it says */
    assert_true(a.line("e") == "2:"); /* c's session expired last */
    assert_false(a.lock("L").has_value());
    assert_false(a.lock("M").has_value());
    assert_int_equal(a.sem("s").available, 3);
    assert_false(a.tombstoned(sid(1, 1)));
    assert_true(a.tombstoned(sid(3, 1)));
    assert_true(a.st.counter_get("n") == 5);
}

/* snapshot()/restore() carry object rows (locks with waiters and
 * deadlines, semaphores, elections, sessions, leases, tombstones, id
 * generators); a replica restored at any point continues exactly like the
 * one that never stopped, settling the same deadlines. */
static void snapshot_restore_round_trip(void **)
{
    auto log = scenario();
    for (size_t cut = 1; cut < log.size(); cut++) {
        Replica a;
        for (size_t i = 0; i < cut; i++)
            a.at(log[i].first, log[i].second);
        std::string snap = a.sm.snapshot();

        Replica c;
        if (cut > 1)
            c.one(0, counter_cmd(Op::CounterIncr, "stale", 1)); /* replaced by the restore */
        assert_true(c.sm.restore(snap.data(), snap.size()));
        c.index = a.index;
        assert_true(c.sm.snapshot() == snap);
        assert_true(objects_dump(c.st) == objects_dump(a.st));
        assert_true(dump(c.st) == dump(a.st));
        StateMachine fresh(a.st);
        assert_true(c.sm.next_deadline() == fresh.next_deadline());
        /* a restore at or below the stored index is refused */
        assert_false(c.sm.restore(snap.data(), snap.size()));

        a.take_events();
        for (size_t i = cut; i < log.size(); i++) {
            Applied x = a.at(log[i].first, log[i].second);
            Applied y = c.at(log[i].first, log[i].second);
            assert_int_equal(x.all.size(), y.all.size());
            for (size_t k = 0; k < x.all.size(); k++)
                assert_true(x.all[k].request_id == y.all[k].request_id && x.all[k].code == y.all[k].code &&
                            x.all[k].value == y.all[k].value);
            assert_lines(c.take_events(), a.take_events());
            assert_true(a.sm.snapshot() == c.sm.snapshot());
        }
    }

    /* the object rows of a mid-scenario snapshot, concretely */
    Replica a;
    for (size_t i = 0; i < 4; i++)
        a.at(log[i].first, log[i].second);
    std::string snap = a.sm.snapshot();
    Replica c;
    assert_true(c.sm.restore(snap.data(), snap.size()));
    LockState l = *c.lock("L");
    assert_true(l.holder == sid(1, 1) && l.waiters.size() == 2 && l.waiters[1].deadline_us == 1500000);
    assert_true(c.st.object_get(kKindLock, "L")->deadline_us == 1500000);
    assert_int_equal(c.sem("s").waiters.size(), 2);
    assert_true(c.line("e") == "1:a,c,b");
    assert_true(c.session_open(sid(2, 1)) && c.tombstoned(sid(3, 2)));
    assert_true(c.lease(1).sessions == std::vector<uint64_t>{sid(1, 1)});
    assert_true(decode_i64(c.st.object_get(kKindIdGenerator, "ids")->state) == 101);
    assert_true(c.sm.next_deadline() == kSec);
}

/* ================================= watches ================================ */

static void watch_events(void **)
{
    Replica r;
    uint64_t A = sid(1, 1), B = sid(2, 1);
    r.at(0, {put(1, "m", "k", "v"), with_ttl(put(2, "m", "t", "x"), 1000),
             with_rid(cmd_of(Op::MapRemove, "m", "k"), 3), value_set(4, "val", "1"), value_delete(5, "val"),
             set_op(Op::SetAdd, 6, "S", "e"), set_op(Op::SetRemove, 7, "S", "e"),
             with_rid(cmd_of(Op::MapRemove, "m", "absent"), 8), set_op(Op::SetAdd, 9, "S", "x"),
             set_op(Op::SetAdd, 10, "S", "x")});
    assert_lines(r.take_events(), {ev("map", "m", "k", "put", r.v(0)), ev("map", "m", "t", "put", r.v(1)),
                                   ev("map", "m", "k", "remove", r.v(2)), ev("value", "val", "", "put", r.v(3)),
                                   ev("value", "val", "", "remove", r.v(4)), ev("set", "S", "e", "put", r.v(5)),
                                   ev("set", "S", "e", "remove", r.v(6)), ev("set", "S", "x", "put", r.v(8))});
    r.at(1000, {});
    assert_lines(r.take_events(), {ev("map", "m", "t", "expire", r.v(0))});

    /* locks: version is the token; waits and refusals say nothing */
    r.at(1001, {acquire(A, 11, "L"), acquire(B, 12, "L"), acquire(B, 13, "L2", false),
                acquire(A, 14, "L2", false), release(A, 15, "L"), release(B, 16, "L"),
                release(A, 17, "L")});
    assert_lines(r.take_events(), {ev("lock", "L", "", "acquired", r.v(0)),
                                   ev("lock", "L2", "", "acquired", r.v(2)),
                                   ev("lock", "L", "", "released", r.v(0)),
                                   ev("lock", "L", "", "acquired", r.v(4)),
                                   ev("lock", "L", "", "released", r.v(4))});
    /* a timed-out wait changes no holder */
    r.at(1002, {acquire(A, 18, "L"), with_ttl(acquire(B, 19, "L"), 10)});
    r.take_events();
    r.at(1012, {});
    assert_true(r.take_events().empty());

    /* elections: version is the term */
    r.at(1020, {election(Op::ElectionEnter, A, 20, "e", "a"), election(Op::ElectionEnter, B, 21, "e", "b"),
                election(Op::ElectionEnter, A, 22, "e", "a"), election(Op::ElectionEnter, B, 23, "e", "a"),
                with_rid(cmd_of(Op::ElectionAnoint, "e", "b"), 24),
                with_rid(cmd_of(Op::ElectionAnoint, "e", "zz"), 25),
                with_rid(cmd_of(Op::ElectionEvict, "e", "a"), 26),
                election(Op::ElectionWithdraw, B, 27, "e", "b")});
    assert_lines(r.take_events(), {ev("election", "e", "a", "leader", 1), ev("election", "e", "", "candidates", 1),
                                   ev("election", "e", "b", "leader", 2), ev("election", "e", "", "candidates", 2),
                                   ev("election", "e", "", "leader", 2)});

    /* refused writes say nothing */
    r.at(1030, {with_if_version(value_set(28, "val", "x"), 5), with_if_version(put(29, "m", "t", "y"), 5),
                map_commit(30, "m", {put_op("q", "1"), if_version(put_op("t", "1"), 5)}),
                with_if_version(value_delete(31, "val"), 5)});
    assert_true(r.take_events().empty());

    /* no sink: nothing collected */
    r.sm.set_event_sink(nullptr);
    r.at(1040, {put(32, "m", "z", "1")});
    assert_true(r.events.empty());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(session_opens_on_first_command),
        cmocka_unit_test(lease_expires_on_log_time_only),
        cmocka_unit_test(commands_and_keep_alives_renew_leases),
        cmocka_unit_test(new_leader_renews_leases),
        cmocka_unit_test(keep_alive_omitting_a_session_closes_it),
        cmocka_unit_test(newer_epoch_closes_previous_life),
        cmocka_unit_test(restarted_node_reuses_session_ids),
        cmocka_unit_test(restarted_node_first_command_closes_previous_life),
        cmocka_unit_test(session_close_releases_everything),
        cmocka_unit_test(expired_session_waiters_get_session_expired),
        cmocka_unit_test(lock_try_wait_reacquire_release),
        cmocka_unit_test(lock_fifo_across_three_sessions),
        cmocka_unit_test(lock_tokens_strictly_increase_within_an_entry),
        cmocka_unit_test(lock_wait_timeouts),
        cmocka_unit_test(lock_wait_cancel),
        cmocka_unit_test(lock_passes_on_when_holder_session_ends),
        cmocka_unit_test(semaphore_create_not_found_invalid),
        cmocka_unit_test(semaphore_fifo_large_head_not_overtaken),
        cmocka_unit_test(semaphore_timeout),
        cmocka_unit_test(semaphore_release_more_than_held),
        cmocka_unit_test(semaphore_session_close_returns_permits),
        cmocka_unit_test(semaphore_wait_cancel),
        cmocka_unit_test(election_enter_withdraw_anoint_promote_evict),
        cmocka_unit_test(election_leader_expiry_hands_over),
        cmocka_unit_test(values_with_versions_and_ttl),
        cmocka_unit_test(sets_add_remove_ttl),
        cmocka_unit_test(map_commit_all_or_nothing),
        cmocka_unit_test(id_reserve_blocks),
        cmocka_unit_test(replicas_agree),
        cmocka_unit_test(snapshot_restore_round_trip),
        cmocka_unit_test(watch_events),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
