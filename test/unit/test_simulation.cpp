/*
 * test_simulation.cpp — deterministic simulation of an atomix cluster.
 *
 * Every node runs the production code that decides what happens to a
 * request: the RequestRouter (queues, packing into entries, forwarding to
 * leaders, answers from leaders, resends, deadlines) and, per partition, the
 * StateMachine over MemoryStorage, replicated by c-raft through its
 * raft_fixture (one fixture per partition, server i = node i+1).  What the
 * worker does around them — a loop turn, the FSM adapters, halting a
 * partition whose apply failed and re-applying from the failed entry after a
 * back-off — is reproduced here in a few lines each.  The network between
 * routers is simulated: per-pair FIFO pipes with latency, connections with
 * generations that reset like the real transport's (liveness checks turn a
 * link silent for kLivenessUs into a new connection).
 *
 * One seed = one run: clients on every node issue counter and map calls
 * while a seeded nemesis crashes and restarts nodes, pauses them, cuts
 * links (both ways, one way, a bridge, the busiest leader), delays and
 * duplicates forwarded frames, steps wall clocks and fails storage writes.
 * Everything is a pure function of the seed, so a failing seed replays
 * exactly: SIM_SEED=<seed> build/test_simulation.
 *
 * Checked while it runs: every committed entry applies (an apply that fails
 * without an injected fault is the poisoned-entry outage), replicas apply the
 * same bytes at the same index and hold the same state there, no request id
 * is executed twice (a copy is answered with the first outcome).  At the
 * end: everything healed, every node takes a write within 10 s, every
 * replica holds the same state, and every key's history is linearizable
 * (test/chaos/src/lin.cpp; undecidable counts as a failure).
 *
 * Knobs: SIM_SEEDS=N (seeds per test, default 300), SIM_FIRST=S (first
 * seed), SIM_SEED=S (only S, with a trace), SIM_OVERLAP=1 (faults overlap,
 * never more than a minority), SIM_DURATION_MS (simulated workload time).
 */
#include "unit_helpers.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <unordered_map>

#include "fixture_support.h"
#include "grant_gate.h"
#include "le_bytes.h"
#include "lin.h"
#include "objects.h"
#include "memory_storage.h"
#include "planted_bugs.h"
#include "raft_group.h"
#include "request_router.h"

using namespace atomix;
using namespace unit;

namespace {

/* ---- knobs and constants ---- */

uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtoull(v, nullptr, 10) : dflt;
}

constexpr int64_t kQuantumUs = 5000;             /* one loop turn of every node */
constexpr int64_t kLivenessUs = 3000000;         /* the transport's silent-link reset */
constexpr int64_t kUnavailableUs = 10000000;     /* atomix.unavailable_timeout */
constexpr int64_t kClientTimeoutUs = 15000000;   /* statement_timeout of the clients */
constexpr int64_t kEpochUs = 1800000000000000LL; /* wall clock at time 0 */
constexpr unsigned kKeys = 6;                    /* even: counters, odd: map entries */
constexpr unsigned kLocks = 2;                   /* "l0", "l1": in partitions 0 and 1 */
constexpr unsigned kLockKeyBase = 1000;          /* Call::key of lock calls: base + lock */
constexpr int64_t kSessionTimeoutUs = 4000000;   /* atomix.session_timeout */
constexpr int64_t kVouchMarginUs = kSessionTimeoutUs / 8;

enum Fault {
    FCrash, FPause, FIsolate, FOneWayOut, FOneWayIn, FBridge, FLeaderCut, FDelay, FDuplicate,
    FClockStep, FStorage, kFaultKinds
};
const char *const kFaultNames[kFaultKinds] = {"crash",    "pause",  "isolate",   "one-way-out",
                                              "one-way-in", "bridge", "leader-cut", "delay",
                                              "duplicate", "clock",  "storage"};

struct Sim;
struct Node;

/* ---- a client call and its outcome ---- */

enum class Outcome { Pending, Ok, Fail, Info };

struct Call {
    unsigned node = 0, client = 0, key = 0;
    chaos::LKind kind = chaos::LKind::CounterIncr;
    int64_t a = 0, b = 0;
    int64_t invoke = 0, complete = 0;
    Outcome outcome = Outcome::Pending;
    int64_t res = 0;
    uint64_t request_id = 0;
    /* lock calls: key = kLockKeyBase + lock */
    bool lock_call = false, release = false;
    uint64_t session = 0;
};

/* A client's session on its node (src/session.cpp's state, in short). */
struct ClientSession {
    uint64_t id = 0;
    std::set<unsigned> parts; /* partitions it touched */
};

/* ---- one partition replica on one node ---- */

struct Replica {
    Sim *sim = nullptr;
    unsigned node = 0, part = 0;
    MemoryStorage st;
    StateMachine sm{st};
    raft_fsm fsm{};
    std::vector<CommandResult> results;
    /* halted after a failed apply: entries c-raft hands over meanwhile wait
     * here and are applied, from the failed one on, when it restarts (the
     * worker replays them from its Raft log) */
    bool halted = false;
    int64_t restart_at = 0;
    std::vector<std::pair<uint64_t, std::string>> replay;
    unsigned fail_next_applies = 0; /* injected storage failures left */
};

/* ---- the simulated network between routers ---- */

struct Frame {
    int64_t at = 0;
    FrameType type = FrameType::Forward;
    std::string data;
};
struct Pipe { /* a → b, in order like TCP */
    std::deque<Frame> frames;
    int64_t last_at = 0;
};
struct Conn { /* a ↔ b */
    uint64_t generation = 1;
    bool up = true;
    int64_t impaired_since = -1;
};

/* ---- a node: router, replicas, clients ---- */

struct Proposal {
    Node *node;
    uint64_t incarnation;
    int32_t part;
    std::vector<QueuedCommand> commands;
    struct raft_apply req;
};

struct Node final : RouterHost {
    Sim *sim = nullptr;
    unsigned i = 0; /* index; node id i + 1 */
    bool crashed = false, paused = false;
    uint64_t incarnation = 1, counter = 0;
    int64_t clock_offset_us = 0;
    std::unique_ptr<RequestRouter> router;
    std::unordered_map<uint64_t, size_t> in_flight; /* request id → call */
    std::vector<long> client_call;                  /* per client: call index or -1 */
    std::vector<int64_t> client_next;               /* per client: next invoke time */

    /* sessions, as bgworker/sessions.cpp keeps them */
    int64_t epoch = 0; /* this incarnation's (node_epoch_us) */
    uint64_t session_seq = 0;
    std::vector<ClientSession> client_session;
    std::vector<int> client_lock;      /* lock held, or -1 */
    std::vector<int64_t> client_token; /* its fencing token */
    std::set<uint64_t> flagged;        /* sessions flagged expired here */
    std::vector<int64_t> vouched_until; /* per partition, wall µs */
    std::vector<char> had_sessions;     /* per partition */
    std::vector<char> was_leader;       /* per partition */
    int64_t next_keep_alive = 0;
    bool epoch_announced = false;
    std::unordered_map<uint64_t, unsigned> keep_alives; /* request id → partition */
    GrantGate gate;
    struct PendingGrant {
        size_t call;
        unsigned part;
        int64_t token;
    };
    std::vector<PendingGrant> grants; /* answered by this turn's applies, vetted at its end */

    uint32_t self() const override { return i + 1; }
    uint32_t leader_of(int32_t partition) override;
    bool leads(int32_t partition) override;
    bool send(uint32_t peer, FrameType type, const std::string &head, const std::string &body) override;
    bool connected(uint32_t peer) override;
    uint64_t link_generation(uint32_t peer) override;
    int64_t monotonic_us() override;
    int64_t unavailable_timeout_us() override { return kUnavailableUs; }
    void fail_request(uint64_t request_id, RouteFailure why, const std::string &message) override;
};

struct Partition {
    raft_fixture f;
    std::vector<std::unique_ptr<Replica>> replicas;
    /* what the first replica to apply each index saw: everyone else must see
     * the same entry bytes and, at sampled indexes, the same state */
    std::unordered_map<uint64_t, size_t> entry_hash;
    std::unordered_map<uint64_t, size_t> state_hash;
    std::unordered_map<uint64_t, uint64_t> first_index;             /* request id → entry index */
    std::unordered_map<uint64_t, std::pair<int, int64_t>> first_out; /* request id → outcome */
};

struct Coverage {
    uint64_t runs = 0, calls = 0, ok = 0, fail = 0, info = 0;
    uint64_t faults[kFaultKinds] = {};
    uint64_t frames = 0, duplicated = 0, resets = 0, held_released = 0;
    uint64_t resends = 0, duplicates_dropped = 0, copies_answered = 0;
    uint64_t snapshots = 0, restores = 0, halts = 0, proposals_lost = 0, answered_after_restore = 0;
    uint64_t grants_delivered = 0, grants_refused = 0, sessions_expired_here = 0, sessions_closed_by_log = 0;
    uint64_t beyond_bound_runs = 0;
};

struct Sim {
    uint64_t seed;
    unsigned n, parts;
    bool overlap, trace;
    std::mt19937_64 rng;
    int64_t now = 0; /* µs, the monotonic clock of every node */
    std::vector<std::unique_ptr<Node>> nodes;
    std::vector<std::unique_ptr<Partition>> partitions;
    std::vector<std::vector<Pipe>> pipes;     /* [a][b] */
    std::vector<std::vector<Conn>> conns;     /* [min][max] */
    std::vector<std::vector<int>> blocked;    /* [a][b]: faults cutting a → b */
    std::vector<unsigned> latency_ms, dup_pct; /* per node, applied to its pipes */
    std::vector<Call> calls;
    std::vector<std::string> problems;
    Coverage cov;
    uint64_t next_value = 1;
    bool clients_on = true;
    /* a clock stepped beyond the drift bound (docs/coordination.md): from
     * then on lock safety is not promised, and not checked */
    bool beyond_bound = false;
    std::vector<int64_t> max_token_delivered = std::vector<int64_t>(kLocks, 0);

    struct Active {
        Fault kind;
        int64_t until;
        std::vector<unsigned> nodes;              /* affected */
        std::vector<std::pair<unsigned, unsigned>> cuts;
        bool reset_on_heal = false;
    };
    std::vector<Active> active;

    Sim(uint64_t s, unsigned nodes_, unsigned parts_, bool overlap_, bool trace_)
        : seed(s), n(nodes_), parts(parts_), overlap(overlap_), trace(trace_), rng(s)
    {
    }

    uint64_t below(uint64_t k) { return k ? rng() % k : 0; }
    bool chance(unsigned pct) { return below(100) < pct; }
    void problem(const std::string &p)
    {
        if (problems.size() < 12)
            problems.push_back("t=" + std::to_string(now / 1000) + "ms " + p);
    }
    struct raft *raft(unsigned part, unsigned node) { return raft_fixture_get(&partitions[part]->f, node); }
    Conn &conn(unsigned a, unsigned b) { return conns[std::min(a, b)][std::max(a, b)]; }
    bool down(unsigned i) const { return nodes[i]->crashed || nodes[i]->paused; }

    void log(const std::string &s)
    {
        if (trace)
            fprintf(stderr, "t=%lldms %s\n", (long long)(now / 1000), s.c_str());
    }
};

/* ---- RouterHost of a simulated node ---- */

uint32_t Node::leader_of(int32_t partition)
{
    raft_id id = 0;
    const char *address = nullptr;
    raft_leader(sim->raft((unsigned)partition, i), &id, &address);
    return (uint32_t)id;
}

bool Node::leads(int32_t partition)
{
    return !sim->partitions[(size_t)partition]->replicas[i]->halted &&
           raft_state(sim->raft((unsigned)partition, i)) == RAFT_LEADER;
}

bool Node::send(uint32_t peer, FrameType type, const std::string &head, const std::string &body)
{
    unsigned b = peer - 1;
    if (b >= sim->n || b == i || !sim->conn(i, b).up)
        return false;
    Pipe &pipe = sim->pipes[i][b];
    Frame fr;
    fr.type = type;
    fr.data = head + body;
    unsigned latency = std::max(sim->latency_ms[i], sim->latency_ms[b]);
    fr.at = std::max(pipe.last_at, sim->now + (int64_t)(1 + sim->below(latency)) * 1000);
    pipe.last_at = fr.at;
    sim->cov.frames++;

    /* a copy a retransmitting layer could deliver again */
    bool dup = sim->chance(std::max(sim->dup_pct[i], sim->dup_pct[b]));
    pipe.frames.push_back(fr);
    if (dup) {
        pipe.frames.push_back(fr);
        sim->cov.duplicated++;
    }
    return true;
}

bool Node::connected(uint32_t peer)
{
    unsigned b = peer - 1;
    return b < sim->n && b != i && sim->conn(i, b).up;
}

uint64_t Node::link_generation(uint32_t peer)
{
    unsigned b = peer - 1;
    return b < sim->n && b != i ? sim->conn(i, b).generation : 0;
}

int64_t Node::monotonic_us() { return sim->now; }

void finish_call(Sim &sim, Node &node, uint64_t request_id, Outcome outcome, int64_t res)
{
    auto it = node.in_flight.find(request_id);
    if (it == node.in_flight.end())
        return;
    Call &c = sim.calls[it->second];
    node.in_flight.erase(it);
    c.outcome = outcome;
    c.res = res;
    c.complete = sim.now;
    node.client_call[c.client] = -1;
    node.client_next[c.client] = sim.now + (int64_t)sim.below(20) * 1000;
}

void Node::fail_request(uint64_t request_id, RouteFailure why, const std::string &message)
{
    sim->log("node " + std::to_string(i + 1) + " fails request " + std::to_string(request_id & 0xffffffff) +
             (why == RouteFailure::InDoubt ? " in doubt: " : ": ") + message);
    finish_call(*sim, *this, request_id, why == RouteFailure::InDoubt ? Outcome::Info : Outcome::Fail, 0);
}

/* ---- sessions and grants, as bgworker/sessions.cpp and src/session.cpp ---- */

int64_t wall_now(Sim &sim, const Node &node) { return kEpochUs + sim.now + node.clock_offset_us; }

uint64_t new_request_id(Node &node)
{
    return ((uint64_t)(node.i + 1) << 48) | ((node.incarnation & 0xffff) << 32) | ++node.counter;
}

/* The worker's propose_internal: a command of the node itself. */
uint64_t submit_internal(Sim &sim, Node &node, unsigned part, Command cmd)
{
    cmd.request_id = new_request_id(node);
    QueuedCommand qc;
    qc.request_id = cmd.request_id;
    encode_command(cmd, qc.encoded);
    qc.origin = node.i + 1;
    qc.queued_us = sim.now;
    qc.deadline_us = sim.now + kUnavailableUs;
    node.router->submit((int32_t)part, std::move(qc));
    return cmd.request_id;
}

/* This node cannot vouch for its sessions in `part` any more: flag them and
 * close them everywhere. */
void close_unvouched(Sim &sim, Node &node, unsigned part)
{
    for (ClientSession &cs : node.client_session) {
        if (cs.id == 0 || node.flagged.count(cs.id) || !cs.parts.count(part))
            continue;
        node.flagged.insert(cs.id);
        sim.cov.sessions_expired_here++;
        sim.log("node " + std::to_string(node.i + 1) + " expires session " + std::to_string(cs.id & 0xffff) +
                " (partition " + std::to_string(part) + " not renewed)");
        Command close;
        close.op = Op::SessionClose;
        close.epoch = node.epoch;
        close.session = cs.id;
        for (unsigned q : cs.parts)
            submit_internal(sim, node, q, close);
    }
}

void maintain_sessions(Sim &sim, Node &node)
{
    bool due = sim.now >= node.next_keep_alive || !node.epoch_announced;
    for (unsigned p = 0; p < sim.parts; p++) {
        std::string ids;
        bool has = false;
        for (const ClientSession &cs : node.client_session)
            if (cs.id != 0 && !node.flagged.count(cs.id) && cs.parts.count(p)) {
                put_le64(ids, cs.id);
                has = true;
            }
        bool had = node.had_sessions[p] != 0;
        if (!(due ? (has || had || !node.epoch_announced) : (has && !had)))
            continue;
        Command ka;
        ka.op = Op::SessionKeepAlive;
        ka.arg1 = (int64_t)(node.i + 1);
        ka.epoch = node.epoch;
        ka.ttl_us = kSessionTimeoutUs;
        ka.arg2 = (int64_t)(node.session_seq & 0xffffffffffffULL);
        ka.value = ids;
        node.keep_alives[submit_internal(sim, node, p, ka)] = p;
        node.had_sessions[p] = has ? 1 : 0;
    }
    if (due) {
        node.next_keep_alive = sim.now + kSessionTimeoutUs / 5;
        node.epoch_announced = true;
    }
    int64_t now = wall_now(sim, node);
    for (unsigned p = 0; p < sim.parts; p++)
        if (node.had_sessions[p] && node.vouched_until[p] < now)
            close_unvouched(sim, node, p);
}

/* A new leader renews the leases of the nodes it is connected to. */
void renew_leases_as_new_leader(Sim &sim, Node &node)
{
    for (unsigned p = 0; p < sim.parts; p++) {
        bool leads = node.leads((int32_t)p);
        if (leads && !node.was_leader[p]) {
            Command renew;
            renew.op = Op::LeasesRenew;
            for (unsigned j = 0; j < sim.n; j++)
                if (j == node.i || node.connected(j + 1))
                    put_le64(renew.value, j + 1);
            submit_internal(sim, node, p, renew);
        }
        node.was_leader[p] = leads ? 1 : 0;
    }
}

/* The lock as the most advanced replica of its partition has it. */
LockState lock_truth(Sim &sim, unsigned lock)
{
    Partition &part = *sim.partitions[lock % sim.parts];
    Replica *best = part.replicas[0].get();
    for (auto &r : part.replicas)
        if (r->st.load_meta().applied_index > best->st.load_meta().applied_index)
            best = r.get();
    std::optional<ObjectRow> row = best->st.object_get(kKindLock, "l" + std::to_string(lock));
    return row ? decode_lock(row->state) : LockState{};
}

void client_loses_session(Node &node, unsigned client)
{
    node.client_session[client] = ClientSession{};
    node.client_lock[client] = -1;
    node.client_token[client] = 0;
}

/* finish_turn's vet_grants and the backend's check as the call returns: a
 * grant goes out only while this node vouches for the session. */
void deliver_grants(Sim &sim, Node &node)
{
    int64_t now = wall_now(sim, node);
    for (const Node::PendingGrant &g : node.grants) {
        Call &c = sim.calls[g.call];
        if (c.outcome != Outcome::Pending)
            continue;
        bool flagged = node.flagged.count(c.session) > 0;
        unsigned lock = c.key - kLockKeyBase;
        /* the stale_grant plant answers every grant (src/planted_bugs.h) */
        if (!kPlantStaleGrant && !node.gate.may_deliver(c.session, node.vouched_until[g.part], now, flagged)) {
            sim.cov.grants_refused++;
            if (!node.gate.closed_in_log(c.session) && !flagged)
                close_unvouched(sim, node, g.part);
            unsigned client = c.client;
            finish_call(sim, node, c.request_id, Outcome::Fail, 0);
            client_loses_session(node, client);
            continue;
        }
        /* the grant goes out: it must still be the lock's latest */
        LockState truth = lock_truth(sim, lock);
        if (!sim.beyond_bound && (truth.token > g.token || sim.max_token_delivered[lock] > g.token))
            sim.problem("lock l" + std::to_string(lock) + ": node " + std::to_string(node.i + 1) +
                        " delivered token " + std::to_string(g.token) + " to session " +
                        std::to_string(c.session & 0xffff) + " after the lock was granted again (token " +
                        std::to_string(std::max(truth.token, sim.max_token_delivered[lock])) + ")");
        sim.max_token_delivered[lock] = std::max(sim.max_token_delivered[lock], g.token);
        sim.cov.grants_delivered++;
        unsigned client = c.client;
        finish_call(sim, node, c.request_id, Outcome::Ok, g.token);
        node.client_lock[client] = (int)lock;
        node.client_token[client] = g.token;
    }
    node.grants.clear();
    node.gate.turn_done();
}

/* ---- the FSM adapters, as the worker's ---- */

size_t state_hash(Replica &r)
{
    std::string s = dump(r.st);
    r.st.for_each_request([&](const RequestRecord &rec) {
        s += "req " + std::to_string(rec.request_id) + " " + std::to_string(rec.code) + " " +
             std::to_string(rec.value) + "\n";
    });
    return std::hash<std::string>()(s);
}

/* What a call learns from the entry that carried it, on its own node. */
void answer(Sim &sim, Replica &r, const CommandResult &res)
{
    Node &node = *sim.nodes[r.node];
    if (node.router)
        node.router->applied(res.request_id);
    auto ka = node.keep_alives.find(res.request_id);
    if (ka != node.keep_alives.end()) { /* on_internal_result */
        if (res.code == ResultCode::Ok && res.value > 0)
            node.vouched_until[ka->second] =
                std::max(node.vouched_until[ka->second], res.value - kVouchMarginUs);
        node.keep_alives.erase(ka);
        return;
    }
    auto it = node.in_flight.find(res.request_id);
    if (it == node.in_flight.end())
        return;
    Call &c = sim.calls[it->second];
    if (c.lock_call) {
        if (res.code == ResultCode::SessionExpired) {
            unsigned client = c.client;
            finish_call(sim, node, res.request_id, Outcome::Fail, 0);
            client_loses_session(node, client);
        } else if (!c.release && res.code == ResultCode::Ok && res.value > 0) {
            node.grants.push_back(Node::PendingGrant{it->second, r.part, res.value});
        } else {
            unsigned client = c.client;
            finish_call(sim, node, res.request_id, Outcome::Ok, res.value);
            if (c.release) {
                node.client_lock[client] = -1;
                node.client_token[client] = 0;
            }
        }
        return;
    }
    std::string key = "k" + std::to_string(c.key);
    int64_t value = res.value;
    switch (c.kind) {
    case chaos::LKind::CounterGet: /* a barrier: read the replica once it is applied */
        value = r.st.counter_get(key).value_or(0);
        break;
    case chaos::LKind::MapGet: {
        std::optional<MapRow> row = r.st.map_get(kEntryMap, "m", key);
        value = row ? strtoll(row->value.c_str() + 1, nullptr, 10) : -1;
        break;
    }
    default:
        break;
    }
    bool ok = res.code == ResultCode::Ok || (c.kind == chaos::LKind::CounterCas && res.code == ResultCode::Null);
    if (!ok) {
        sim.problem("node " + std::to_string(r.node + 1) + ": call on " + key + " answered code " +
                    std::to_string((int)res.code));
        finish_call(sim, node, res.request_id, Outcome::Fail, 0);
        return;
    }
    finish_call(sim, node, res.request_id, Outcome::Ok, value);
}

/* Applies one committed entry; false if it failed (the replica halts). */
bool apply_entry(Sim &sim, Replica &r, uint64_t index, const std::string &data)
{
    Partition &part = *sim.partitions[r.part];
    std::string where = "node " + std::to_string(r.node + 1) + " partition " + std::to_string(r.part) +
                        " entry " + std::to_string(index);
    size_t h = std::hash<std::string>()(data);
    auto eh = part.entry_hash.emplace(index, h);
    if (!eh.second && eh.first->second != h)
        sim.problem(where + ": different bytes than another replica applied there");

    /* which commands are copies of an id an earlier entry (or this one) had */
    std::vector<uint64_t> ids;
    std::vector<bool> barrier;
    try {
        EntryReader reader(data.data(), data.size());
        Command cmd;
        while (reader.next(cmd)) {
            ids.push_back(cmd.request_id);
            barrier.push_back(cmd.op == Op::Barrier);
        }
    } catch (const std::exception &e) {
        sim.problem(where + ": undecodable: " + e.what());
        return true;
    }

    MemoryStorage saved;
    bool injected = r.fail_next_applies > 0;
    if (injected) {
        saved = r.st; /* the worker's subtransaction */
        r.fail_next_applies--;
        r.st.fail_writes = true;
    }
    r.results.clear();
    bool malformed = false;
    uint64_t dups_before = r.sm.duplicates_answered();
    std::vector<uint64_t> closed;
    r.sm.set_closed_sink(&closed);
    try {
        r.sm.apply(index, data.data(), data.size(), r.results, &malformed);
        r.sm.set_closed_sink(nullptr);
        if (injected)
            throw StorageRefused("injected storage failure");
    } catch (const std::exception &e) {
        r.sm.set_closed_sink(nullptr);
        r.st = saved;
        r.st.fail_writes = false;
        r.sm.forget_caches();
        if (!injected)
            sim.problem(where + " failed to apply (the partition would halt and retry it for good): " +
                        e.what());
        return false;
    }
    r.st.fail_writes = false;
    if (malformed)
        sim.problem(where + ": malformed");
    /* sessions the log closed: no grant to them goes out this turn, and
     * this node's own are flagged (apply_entry in the worker) */
    Node &self = *sim.nodes[r.node];
    for (uint64_t session : closed) {
        self.gate.session_closed(session);
        if ((uint32_t)(session >> 48) == r.node + 1 && !self.flagged.count(session)) {
            self.flagged.insert(session);
            sim.cov.sessions_closed_by_log++;
        }
    }

    /* at most once: a copy is answered with the first outcome, never run */
    uint64_t copies = 0;
    std::set<uint64_t> here;
    size_t ri = 0;
    for (size_t k = 0; k < ids.size(); k++) {
        if (barrier[k] || ids[k] == 0) {
            ri++;
            continue;
        }
        auto first = part.first_index.find(ids[k]);
        bool copy = !here.insert(ids[k]).second || (first != part.first_index.end() && first->second < index);
        if (ri >= r.results.size())
            break;
        const CommandResult &res = r.results[ri++];
        if (copy) {
            copies++;
            auto out = part.first_out.find(ids[k]);
            if (out != part.first_out.end() &&
                (out->second.first != (int)res.code || out->second.second != res.value))
                sim.problem(where + ": a copy of request " + std::to_string(ids[k]) +
                            " got a different outcome than the first (applied twice)");
        } else {
            part.first_index.emplace(ids[k], index);
            part.first_out.emplace(ids[k], std::make_pair((int)res.code, res.value));
        }
    }
    if (r.sm.duplicates_answered() - dups_before != copies)
        sim.problem(where + ": " + std::to_string(copies) + " copies of earlier requests but " +
                    std::to_string(r.sm.duplicates_answered() - dups_before) +
                    " answered from the request log (one was executed twice)");
    sim.cov.copies_answered += copies;

    if (index % 4 == 0) {
        size_t s = state_hash(r);
        auto sh = part.state_hash.emplace(index, s);
        if (!sh.second && sh.first->second != s)
            sim.problem(where + ": state differs from another replica's at the same index");
    }
    for (const CommandResult &res : r.results)
        answer(sim, r, res);
    return true;
}

void halt(Sim &sim, Replica &r, uint64_t index, const std::string &data)
{
    r.halted = true;
    r.restart_at = sim.now + 200000 + (int64_t)sim.below(800) * 1000;
    r.replay.emplace_back(index, data);
    sim.cov.halts++;
    /* the group is closed: this replica takes no part until it restarts */
    raft_fixture_kill(&sim.partitions[r.part]->f, r.node);
    Node &node = *sim.nodes[r.node];
    if (node.router)
        node.router->fail_all((int32_t)r.part, "partition halted");
    sim.log("node " + std::to_string(r.node + 1) + " partition " + std::to_string(r.part) + " halted at " +
            std::to_string(index));
}

int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    Replica &r = *static_cast<Replica *>(fsm->data);
    Sim &sim = *r.sim;
    *result = nullptr;
    uint64_t index = raft_last_applied(sim.raft(r.part, r.node)) + 1;
    std::string data(static_cast<const char *>(buf->base), buf->len);
    if (r.halted) {
        r.replay.emplace_back(index, data);
        return 0;
    }
    if (!apply_entry(sim, r, index, data))
        halt(sim, r, index, data);
    return 0;
}

int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    Replica &r = *static_cast<Replica *>(fsm->data);
    if (r.halted)
        return RAFT_BUSY; /* as the worker: no snapshot may cover unapplied entries */
    std::string s = r.sm.snapshot();
    auto *b = static_cast<raft_buffer *>(raft_malloc(sizeof(raft_buffer)));
    b->len = s.size();
    b->base = raft_malloc(s.size());
    memcpy(b->base, s.data(), s.size());
    *bufs = b;
    *n_bufs = 1;
    r.sim->cov.snapshots++;
    return 0;
}

int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    Replica &r = *static_cast<Replica *>(fsm->data);
    try {
        if (r.sm.restore(buf->base, buf->len))
            r.sim->cov.restores++;
        r.sim->log("node " + std::to_string(r.node + 1) + " partition " + std::to_string(r.part) +
                   " restored a snapshot at " + std::to_string(r.st.load_meta().applied_index));
        Node &node = *r.sim->nodes[r.node];
        if (node.router)
            node.router->restored((int32_t)r.part, [&](uint64_t id) {
                std::vector<RequestRecord> recs = r.st.request_lookup_many({id});
                if (recs.empty() || recs[0].code == (int)ResultCode::Pending)
                    return false;
                r.sim->cov.answered_after_restore++;
                answer(*r.sim, r, CommandResult{id, (ResultCode)recs[0].code, recs[0].value});
                return true;
            });
    } catch (const std::exception &e) {
        r.sim->problem("node " + std::to_string(r.node + 1) + " restore threw: " + e.what());
    }
    raft_free(buf->base);
    return 0;
}

/* Re-applies what a halted replica holds, from the failed entry on. */
void restart_halted(Sim &sim, Replica &r)
{
    while (!r.replay.empty()) {
        auto [index, data] = r.replay.front();
        if (!apply_entry(sim, r, index, data)) {
            r.restart_at = sim.now + 500000;
            sim.cov.halts++;
            return;
        }
        r.replay.erase(r.replay.begin());
    }
    r.halted = false;
    sim.log("node " + std::to_string(r.node + 1) + " partition " + std::to_string(r.part) + " restarted");
}

/* ---- links: raft's (fixture saturation) and the routers' (pipes) ---- */

/* Raft messages a → b are dropped while a or b is down or a → b is cut. */
void apply_raft_links(Sim &sim)
{
    for (unsigned p = 0; p < sim.parts; p++) {
        raft_fixture &f = sim.partitions[p]->f;
        for (unsigned a = 0; a < sim.n; a++)
            for (unsigned b = 0; b < sim.n; b++) {
                if (a == b)
                    continue;
                bool drop = sim.down(a) || sim.down(b) || sim.blocked[a][b] > 0 ||
                            sim.partitions[p]->replicas[a]->halted || sim.partitions[p]->replicas[b]->halted;
                if (drop)
                    raft_fixture_saturate(&f, a, b);
                else
                    raft_fixture_desaturate(&f, a, b);
            }
    }
}

void reset_conn(Sim &sim, unsigned a, unsigned b)
{
    Conn &c = sim.conn(a, b);
    if (!c.up)
        return;
    c.up = false;
    c.generation++;
    sim.pipes[a][b].frames.clear();
    sim.pipes[b][a].frames.clear();
    sim.cov.resets++;
}

/* Every turn: connections that are impaired for longer than the liveness
 * timeout are reset; healthy ones that were reset reconnect. */
void maintain_conns(Sim &sim)
{
    bool liveness = !kPlantPoisonedEntry; /* the outage build had no liveness checks */
    for (unsigned a = 0; a < sim.n; a++)
        for (unsigned b = a + 1; b < sim.n; b++) {
            Conn &c = sim.conns[a][b];
            bool crashed = sim.nodes[a]->crashed || sim.nodes[b]->crashed;
            bool impaired = crashed || sim.down(a) || sim.down(b) || sim.blocked[a][b] || sim.blocked[b][a];
            if (!impaired) {
                c.impaired_since = -1;
                if (!c.up) {
                    c.up = true;
                    c.generation++;
                }
                continue;
            }
            if (c.impaired_since < 0)
                c.impaired_since = sim.now;
            if (crashed || (liveness && sim.now - c.impaired_since >= kLivenessUs))
                reset_conn(sim, a, b);
        }
}

void deliver_frames(Sim &sim)
{
    for (unsigned a = 0; a < sim.n; a++)
        for (unsigned b = 0; b < sim.n; b++) {
            if (a == b || sim.down(a) || sim.down(b) || sim.blocked[a][b] || !sim.conn(a, b).up)
                continue;
            Pipe &pipe = sim.pipes[a][b];
            while (!pipe.frames.empty() && pipe.frames.front().at <= sim.now) {
                Frame fr = std::move(pipe.frames.front());
                pipe.frames.pop_front();
                Node &to = *sim.nodes[b];
                if (fr.type == FrameType::Forward)
                    to.router->on_forward(a + 1, fr.data.data(), fr.data.size());
                else
                    to.router->on_forward_reply(a + 1, fr.data.data(), fr.data.size());
            }
        }
}

/* ---- node lifecycle ---- */

void crash(Sim &sim, Node &node)
{
    node.crashed = true;
    for (auto &kv : node.in_flight) { /* its callers lost their connection */
        Call &c = sim.calls[kv.second];
        c.outcome = Outcome::Info;
        c.complete = sim.now;
    }
    node.in_flight.clear();
    std::fill(node.client_call.begin(), node.client_call.end(), -1);
    node.router.reset();
    /* its sessions die with it (the next incarnation's epoch closes them) */
    for (unsigned k = 0; k < node.client_session.size(); k++)
        client_loses_session(node, k);
    node.flagged.clear();
    std::fill(node.vouched_until.begin(), node.vouched_until.end(), 0);
    std::fill(node.had_sessions.begin(), node.had_sessions.end(), 0);
    std::fill(node.was_leader.begin(), node.was_leader.end(), 0);
    node.keep_alives.clear();
    node.grants.clear();
    node.gate = GrantGate();
    node.epoch_announced = false;
    for (unsigned p = 0; p < sim.parts; p++)
        raft_fixture_kill(&sim.partitions[p]->f, node.i);
}

void restart(Sim &sim, Node &node)
{
    node.crashed = false;
    node.incarnation++;
    /* node_epoch_us: when its shared memory was created (kept increasing
     * here; a restart after a big backward step is not modelled) */
    node.epoch = std::max(node.epoch + 1, wall_now(sim, node));
    node.router = std::make_unique<RequestRouter>(node, sim.parts);
    for (unsigned p = 0; p < sim.parts; p++)
        if (!sim.partitions[p]->replicas[node.i]->halted)
            raft_fixture_revive(&sim.partitions[p]->f, node.i);
    std::fill(node.client_next.begin(), node.client_next.end(), sim.now + 100000);
}

void pause_node(Sim &sim, Node &node)
{
    node.paused = true;
    for (unsigned p = 0; p < sim.parts; p++)
        raft_fixture_kill(&sim.partitions[p]->f, node.i);
}

void resume_node(Sim &sim, Node &node)
{
    node.paused = false;
    for (unsigned p = 0; p < sim.parts; p++)
        if (!sim.partitions[p]->replicas[node.i]->halted)
            raft_fixture_revive(&sim.partitions[p]->f, node.i);
}

/* ---- clients ---- */

/* lock_acquire (try) or, if the client holds a lock, lock_release — with
 * src/session.cpp's attach_session in front. */
void start_lock_call(Sim &sim, Node &node, unsigned client)
{
    bool release = node.client_lock[client] >= 0;
    unsigned lock = release ? (unsigned)node.client_lock[client] : (unsigned)sim.below(kLocks);
    unsigned part = lock % sim.parts;
    ClientSession &cs = node.client_session[client];
    int64_t now = wall_now(sim, node);
    bool expired = cs.id != 0 && node.flagged.count(cs.id) > 0;
    for (unsigned q : cs.parts)
        expired |= cs.id != 0 && node.vouched_until[q] < now;
    if (expired) { /* 55000 at once: the client learns it lost what it held */
        client_loses_session(node, client);
        node.client_next[client] = sim.now + (int64_t)sim.below(20) * 1000;
        return;
    }
    if (cs.id == 0)
        cs.id = ((uint64_t)(node.i + 1) << 48) | (++node.session_seq & 0xffffffffffffULL);
    if (!cs.parts.count(part)) {
        cs.parts.insert(part);
        node.vouched_until[part] = std::max(node.vouched_until[part], now + kSessionTimeoutUs * 7 / 8);
    }
    Command cmd;
    cmd.op = release ? Op::LockRelease : Op::LockAcquire;
    cmd.name = "l" + std::to_string(lock);
    cmd.arg1 = 0; /* try: no waiting */
    cmd.session = cs.id;
    cmd.epoch = node.epoch;
    cmd.request_id = new_request_id(node);
    Call c;
    c.node = node.i;
    c.client = client;
    c.key = kLockKeyBase + lock;
    c.lock_call = true;
    c.release = release;
    c.session = cs.id;
    c.invoke = sim.now;
    c.request_id = cmd.request_id;
    sim.calls.push_back(c);
    node.in_flight[cmd.request_id] = sim.calls.size() - 1;
    node.client_call[client] = (long)sim.calls.size() - 1;
    QueuedCommand qc;
    qc.request_id = cmd.request_id;
    encode_command(cmd, qc.encoded);
    qc.origin = node.i + 1;
    qc.queued_us = sim.now;
    qc.deadline_us = sim.now + kUnavailableUs;
    node.router->submit((int32_t)part, std::move(qc));
}

void start_call(Sim &sim, Node &node, unsigned client)
{
    if (node.client_lock[client] >= 0 || sim.chance(20)) {
        start_lock_call(sim, node, client);
        return;
    }
    Call c;
    c.node = node.i;
    c.client = client;
    c.key = (unsigned)sim.below(kKeys);
    c.invoke = sim.now;
    std::string key = "k" + std::to_string(c.key);
    Command cmd;
    bool counter = c.key % 2 == 0;
    uint64_t roll = sim.below(100);
    if (counter) {
        if (roll < 50) {
            c.kind = chaos::LKind::CounterIncr;
            c.a = 1;
            cmd = counter_cmd(Op::CounterIncr, key, 1);
        } else if (roll < 65) {
            c.kind = chaos::LKind::CounterCas;
            c.a = (int64_t)sim.below(8);
            c.b = (int64_t)sim.below(8);
            cmd = counter_cmd(Op::CounterCas, key, c.a, c.b);
        } else {
            c.kind = chaos::LKind::CounterGet;
            cmd = cmd_of(Op::Barrier);
        }
    } else if (roll < 60) {
        c.kind = chaos::LKind::MapPut;
        c.a = (int64_t)sim.next_value++;
        cmd = cmd_of(Op::MapPut, "m", key, "v" + std::to_string(c.a));
    } else {
        c.kind = chaos::LKind::MapGet;
        cmd = cmd_of(Op::Barrier);
    }
    uint32_t part = c.key % sim.parts;
    cmd.request_id = ((uint64_t)(node.i + 1) << 48) | ((node.incarnation & 0xffff) << 32) | ++node.counter;
    c.request_id = cmd.request_id;
    QueuedCommand qc;
    qc.request_id = cmd.request_id;
    encode_command(cmd, qc.encoded);
    qc.origin = node.i + 1;
    qc.queued_us = sim.now;
    qc.deadline_us = sim.now + kUnavailableUs;
    sim.calls.push_back(c);
    node.in_flight[cmd.request_id] = sim.calls.size() - 1;
    node.client_call[client] = (long)sim.calls.size() - 1;
    node.router->submit((int32_t)part, std::move(qc));
}

void run_clients(Sim &sim, Node &node)
{
    for (unsigned k = 0; k < node.client_call.size(); k++) {
        long ci = node.client_call[k];
        if (ci >= 0) {
            Call &c = sim.calls[(size_t)ci];
            if (sim.now - c.invoke >= kClientTimeoutUs) { /* statement_timeout: gives up */
                node.in_flight.erase(c.request_id);
                c.outcome = Outcome::Info;
                c.complete = sim.now;
                node.client_call[k] = -1;
                node.client_next[k] = sim.now;
            }
            continue;
        }
        if (sim.clients_on && sim.now >= node.client_next[k])
            start_call(sim, node, k);
    }
}

/* ---- one loop turn of a node's worker ---- */

void apply_cb(struct raft_apply *req, int status, void *)
{
    std::unique_ptr<Proposal> prop(static_cast<Proposal *>(req->data));
    Node &node = *prop->node;
    if (status != 0)
        node.sim->cov.proposals_lost++;
    /* a crashed incarnation's router is gone with its callers */
    if (node.crashed || node.incarnation != prop->incarnation || !node.router)
        return;
    node.router->proposal_done(prop->part, prop->commands, status == 0);
}

void turn(Sim &sim, Node &node)
{
    deliver_grants(sim, node); /* what the applies since the last turn granted */
    run_clients(sim, node);
    maintain_sessions(sim, node);
    renew_leases_as_new_leader(sim, node);
    ProposeFn propose = [&](int32_t part, const std::string &entry, std::vector<QueuedCommand> &commands,
                            std::string &why) {
        auto prop = std::make_unique<Proposal>();
        prop->node = &node;
        prop->incarnation = node.incarnation;
        prop->part = part;
        raft_buffer buf;
        buf.len = entry.size();
        buf.base = raft_malloc(buf.len);
        memcpy(buf.base, entry.data(), buf.len);
        prop->req.data = prop.get();
        int rv = raft_apply(sim.raft((unsigned)part, node.i), &prop->req, &buf, 1, apply_cb);
        if (rv != 0) {
            raft_free(buf.base);
            why = raft_strerror(rv);
            return rv == RAFT_NOTLEADER ? ProposeResult::NotLeader : ProposeResult::Refused;
        }
        prop->commands.swap(commands);
        prop.release(); /* freed by apply_cb */
        return ProposeResult::Proposed;
    };
    int64_t stamp = kEpochUs + sim.now + node.clock_offset_us;
    for (unsigned p = 0; p < sim.parts; p++) {
        Replica &r = *sim.partitions[p]->replicas[node.i];
        if (r.halted)
            node.router->fail_all((int32_t)p, "partition halted");
        else
            node.router->propose_or_forward((int32_t)p, stamp, propose);
    }
    node.router->resend_stalled();
    node.router->expire(sim.now);
}

/* ---- the nemesis ---- */

unsigned busiest_leader(Sim &sim)
{
    std::vector<unsigned> led(sim.n, 0);
    for (unsigned p = 0; p < sim.parts; p++)
        for (unsigned i = 0; i < sim.n; i++)
            led[i] += raft_state(sim.raft(p, i)) == RAFT_LEADER;
    return (unsigned)(std::max_element(led.begin(), led.end()) - led.begin());
}

void start_fault(Sim &sim)
{
    std::set<unsigned> hurt;
    for (const Sim::Active &a : sim.active)
        hurt.insert(a.nodes.begin(), a.nodes.end());
    unsigned minority = (sim.n - 1) / 2;
    if (hurt.size() >= minority || (!sim.overlap && !sim.active.empty()))
        return;
    Fault kind = (Fault)sim.below(kFaultKinds);
    unsigned i = (unsigned)sim.below(sim.n);
    if (kind == FLeaderCut)
        i = busiest_leader(sim);
    if (hurt.count(i))
        return;
    Sim::Active a;
    a.kind = kind;
    a.nodes.push_back(i);
    a.until = sim.now + (200 + (int64_t)sim.below(6000)) * 1000;
    a.reset_on_heal = sim.chance(30);
    Node &node = *sim.nodes[i];
    auto cut = [&](unsigned from, unsigned to) {
        sim.blocked[from][to]++;
        a.cuts.emplace_back(from, to);
    };
    switch (kind) {
    case FCrash:
        crash(sim, node);
        break;
    case FPause:
        pause_node(sim, node);
        break;
    case FIsolate:
    case FLeaderCut:
        for (unsigned j = 0; j < sim.n; j++)
            if (j != i) {
                cut(i, j);
                cut(j, i);
            }
        break;
    case FOneWayOut: /* i can hear, not send */
        for (unsigned j = 0; j < sim.n; j++)
            if (j != i)
                cut(i, j);
        break;
    case FOneWayIn: /* i can send, not hear */
        for (unsigned j = 0; j < sim.n; j++)
            if (j != i)
                cut(j, i);
        break;
    case FBridge: { /* i and j lose each other, both still reach the rest */
        unsigned j = (i + 1 + (unsigned)sim.below(sim.n - 1)) % sim.n;
        cut(i, j);
        cut(j, i);
        break;
    }
    case FDelay:
        sim.latency_ms[i] = 100 + (unsigned)sim.below(1400);
        break;
    case FDuplicate:
        sim.dup_pct[i] = 30 + (unsigned)sim.below(50);
        break;
    case FClockStep: {
        /* mostly within the drift bound (every node within ±margin/2 of
         * true time, so any two agree within the margin), sometimes far
         * beyond it: up to two minutes either way */
        if (sim.chance(80)) {
            node.clock_offset_us = (int64_t)sim.below(kVouchMarginUs) - kVouchMarginUs / 2;
        } else {
            int64_t ms = 1000 + (int64_t)sim.below(119000);
            node.clock_offset_us = (sim.chance(50) ? ms : -ms) * 1000;
            sim.beyond_bound = true;
        }
        a.until = sim.now;
        break;
    }
    case FStorage: {
        Replica &r = *sim.partitions[sim.below(sim.parts)]->replicas[i];
        r.fail_next_applies = 1 + (unsigned)sim.below(3);
        a.until = sim.now;
        break;
    }
    default:
        break;
    }
    sim.cov.faults[kind]++;
    sim.log(std::string("fault ") + kFaultNames[kind] + " on node " + std::to_string(i + 1) +
            (a.reset_on_heal ? " (reset on heal)" : ""));
    sim.active.push_back(a);
    apply_raft_links(sim);
}

void end_fault(Sim &sim, const Sim::Active &a)
{
    Node &node = *sim.nodes[a.nodes[0]];
    switch (a.kind) {
    case FCrash:
        restart(sim, node);
        break;
    case FPause:
        resume_node(sim, node);
        break;
    case FDelay:
        sim.latency_ms[node.i] = 2;
        break;
    case FDuplicate:
        sim.dup_pct[node.i] = 0;
        break;
    default:
        break;
    }
    for (auto &c : a.cuts) {
        sim.blocked[c.first][c.second]--;
        if (a.reset_on_heal)
            reset_conn(sim, c.first, c.second);
        else if (!sim.pipes[c.first][c.second].frames.empty())
            sim.cov.held_released++;
    }
    sim.log(std::string("healed ") + kFaultNames[a.kind] + " on node " + std::to_string(node.i + 1));
}

void nemesis(Sim &sim, bool start_new)
{
    for (size_t k = 0; k < sim.active.size();) {
        if (sim.active[k].until <= sim.now) {
            Sim::Active a = sim.active[k];
            sim.active.erase(sim.active.begin() + (long)k);
            end_fault(sim, a);
            apply_raft_links(sim);
        } else {
            k++;
        }
    }
    if (start_new && sim.chance(2)) /* about one fault per 250 ms of turns */
        start_fault(sim);
}

/* ---- time ---- */

/* Advances simulated time by one quantum: raft events up to it, then the
 * network, then one loop turn of every running node. */
void tick(Sim &sim, bool faults)
{
    sim.now += kQuantumUs;
    int64_t ms = sim.now / 1000;
    for (unsigned p = 0; p < sim.parts; p++) {
        raft_fixture &f = sim.partitions[p]->f;
        for (int guard = 0; guard < 10000 && (int64_t)raft_fixture_time(&f) < ms; guard++)
            raft_fixture_step(&f);
    }
    for (auto &pp : sim.partitions)
        for (auto &r : pp->replicas)
            if (r->halted && sim.now >= r->restart_at && !sim.down(r->node)) {
                restart_halted(sim, *r);
                if (!r->halted) {
                    raft_fixture_revive(&pp->f, r->node);
                    apply_raft_links(sim);
                }
            }
    nemesis(sim, faults);
    maintain_conns(sim);
    deliver_frames(sim);
    for (auto &node : sim.nodes)
        if (!sim.down(node->i))
            turn(sim, *node);
}

/* ---- setup, warm-up, the run, the checks ---- */

std::unique_ptr<Sim> make_sim(uint64_t seed, unsigned n, unsigned parts, bool overlap, bool trace)
{
    auto sim = std::make_unique<Sim>(seed, n, parts, overlap, trace);
    sim->pipes.assign(n, std::vector<Pipe>(n));
    sim->conns.assign(n, std::vector<Conn>(n));
    sim->blocked.assign(n, std::vector<int>(n, 0));
    sim->latency_ms.assign(n, 2);
    sim->dup_pct.assign(n, 0);
    for (unsigned i = 0; i < n; i++) {
        auto node = std::make_unique<Node>();
        node->sim = sim.get();
        node->i = i;
        node->router = std::make_unique<RequestRouter>(*node, parts);
        node->client_call.assign(2, -1);
        node->client_next.assign(2, 0);
        node->clock_offset_us = (int64_t)sim->below(kVouchMarginUs) - kVouchMarginUs / 2;
        node->epoch = kEpochUs + node->clock_offset_us;
        node->client_session.assign(2, ClientSession{});
        node->client_lock.assign(2, -1);
        node->client_token.assign(2, 0);
        node->vouched_until.assign(parts, 0);
        node->had_sessions.assign(parts, 0);
        node->was_leader.assign(parts, 0);
        sim->nodes.push_back(std::move(node));
    }
    for (unsigned p = 0; p < parts; p++) {
        auto part = std::make_unique<Partition>();
        raft_fixture_initialize(&part->f);
        for (unsigned i = 0; i < n; i++) {
            auto r = std::make_unique<Replica>();
            r->sim = sim.get();
            r->node = i;
            r->part = p;
            r->sm.set_request_log(true);
            r->fsm.version = 1;
            r->fsm.data = r.get();
            r->fsm.apply = fsm_apply;
            r->fsm.snapshot = fsm_snapshot;
            r->fsm.restore = fsm_restore;
            if (raft_fixture_grow(&part->f, &r->fsm) != 0)
                sim->problem("raft_fixture_grow failed");
            install_io_shim(&part->f.servers[i].io);
            part->replicas.push_back(std::move(r));
        }
        for (unsigned i = 0; i < n; i++) {
            struct raft *r = raft_fixture_get(&part->f, i);
            /* the worker's settings (RaftGroupConfig), except for far more
             * frequent snapshots */
            RaftGroupConfig worker;
            raft_set_heartbeat_timeout(r, worker.heartbeat_timeout_ms);
            raft_set_install_snapshot_timeout(r, worker.install_snapshot_timeout_ms);
            raft_set_pre_vote(r, true);
            raft_set_snapshot_threshold(r, 32);
            raft_set_snapshot_trailing(r, 8);
            raft_fixture_set_network_latency(&part->f, i, 2 + (unsigned)sim->below(10));
            raft_fixture_set_disk_latency(&part->f, i, 1 + (unsigned)sim->below(8));
        }
        /* well-spaced election timeouts (the fixture's are fixed per server),
         * shuffled per partition so leaders spread over the nodes */
        std::vector<unsigned> timeouts;
        for (unsigned i = 0; i < n; i++)
            timeouts.push_back(1000 + 200 * i + (unsigned)sim->below(50));
        std::shuffle(timeouts.begin(), timeouts.end(), sim->rng);
        for (unsigned i = 0; i < n; i++)
            raft_fixture_set_randomized_election_timeout(&part->f, i, timeouts[i]);
        struct raft_configuration conf;
        raft_fixture_configuration(&part->f, n, &conf);
        raft_fixture_bootstrap(&part->f, &conf);
        raft_configuration_close(&conf);
        raft_fixture_start(&part->f);
        sim->partitions.push_back(std::move(part));
    }
    return sim;
}

/* c-raft 0.15 corrupts a follower's log when a leader that never took a
 * snapshot probes it from index 1 after it compacted index 1 away (see
 * test_raft_fixture.cpp, warm_up): let every replica take a snapshot before
 * faults start.  Clients run meanwhile, fault-free. */
bool warm_up(Sim &sim)
{
    for (int k = 0; k < 6000; k++) { /* 30 s */
        bool all = true;
        for (unsigned p = 0; p < sim.parts; p++)
            for (unsigned i = 0; i < sim.n; i++)
                all &= raft_fixture_get(&sim.partitions[p]->f, i)->log.snapshot.last_index > 0;
        if (all)
            return true;
        tick(sim, false);
    }
    return false;
}

void heal_all(Sim &sim)
{
    while (!sim.active.empty()) {
        Sim::Active a = sim.active.back();
        sim.active.pop_back();
        end_fault(sim, a);
    }
    apply_raft_links(sim);
}

/* Each replica's Raft state, for a failure report. */
std::string describe_group(Sim &sim, unsigned p)
{
    std::string s;
    for (unsigned i = 0; i < sim.n; i++) {
        struct raft *r = sim.raft(p, i);
        raft_id leader = 0;
        const char *address = nullptr;
        raft_leader(r, &leader, &address);
        s += (i ? "; node " : "node ") + std::to_string(i + 1) + ": state " + std::to_string(raft_state(r)) +
             " term " + std::to_string(r->current_term) + " leader " + std::to_string(leader) + " last " +
             std::to_string(raft_last_index(r)) + " commit " + std::to_string(r->commit_index) + " applied " +
             std::to_string(raft_last_applied(r)) + (raft_fixture_alive(&sim.partitions[p]->f, i) ? "" : " dead") +
             (sim.partitions[p]->replicas[i]->halted ? " halted" : "");
        if (raft_state(r) == RAFT_LEADER)
            for (unsigned j = 0; j < sim.n; j++)
                if (j != i)
                    s += " [to " + std::to_string(j + 1) + ": progress " +
                         std::to_string(r->leader_state.progress[j].state) + " next " +
                         std::to_string(r->leader_state.progress[j].next_index) + " match " +
                         std::to_string(r->leader_state.progress[j].match_index) + " snapshot " +
                         std::to_string(r->leader_state.progress[j].snapshot_index) +
                         (raft_fixture_saturated(&sim.partitions[p]->f, i, j) ? " saturated" : "") +
                         (raft_fixture_saturated(&sim.partitions[p]->f, j, i) ? " back-saturated" : "") + "]";
    }
    for (unsigned a = 0; a < sim.n; a++)
        for (unsigned b = a + 1; b < sim.n; b++)
            s += "; link " + std::to_string(a + 1) + "-" + std::to_string(b + 1) +
                 (sim.conns[a][b].up ? " up" : " down") + " gen " + std::to_string(sim.conns[a][b].generation) +
                 (sim.blocked[a][b] || sim.blocked[b][a] ? " blocked" : "");
    return s;
}

/* After healing, every node must take a write within 10 s. */
void check_available(Sim &sim)
{
    for (auto &node : sim.nodes) {
        for (unsigned p = 0; p < sim.parts; p++) {
            /* a client that retries every 100 ms after an error */
            int64_t start = sim.now;
            size_t ci = 0;
            bool ok = false;
            while (!ok && sim.now - start < 10000000) {
                Command cmd = counter_cmd(Op::CounterIncr, "probe", 1);
                cmd.request_id =
                    ((uint64_t)(node->i + 1) << 48) | ((node->incarnation & 0xffff) << 32) | ++node->counter;
                Call c;
                c.node = node->i;
                c.key = 1000000; /* not a checked key */
                c.invoke = sim.now;
                c.request_id = cmd.request_id;
                sim.calls.push_back(c);
                ci = sim.calls.size() - 1;
                node->in_flight[cmd.request_id] = ci;
                QueuedCommand qc;
                qc.request_id = cmd.request_id;
                encode_command(cmd, qc.encoded);
                qc.origin = node->i + 1;
                qc.queued_us = sim.now;
                qc.deadline_us = sim.now + kUnavailableUs;
                node->router->submit((int32_t)p, std::move(qc));
                while (sim.calls[ci].outcome == Outcome::Pending && sim.now - start < 10000000)
                    tick(sim, false);
                ok = sim.calls[ci].outcome == Outcome::Ok;
                for (int k = 0; !ok && k < 20; k++)
                    tick(sim, false);
            }
            node->in_flight.erase(sim.calls[ci].request_id);
            node->client_call[0] = -1;
            if (!ok)
                sim.problem("node " + std::to_string(node->i + 1) + " took no write on partition " +
                            std::to_string(p) + " within 10 s of the heal (" +
                            (sim.calls[ci].outcome == Outcome::Pending ? "no answer" : "failed") + "; " +
                            describe_group(sim, p) + ")");
        }
    }
}

/* Every replica of a partition ends at the same state. */
void check_converged(Sim &sim)
{
    for (int k = 0; k < 4000; k++) { /* up to 20 s for the last applies */
        bool same = true;
        for (auto &part : sim.partitions) {
            uint64_t last = 0;
            for (unsigned i = 0; i < sim.n; i++)
                last = std::max<uint64_t>(last, raft_last_index(raft_fixture_get(&part->f, i)));
            for (unsigned i = 0; i < sim.n; i++)
                same &= raft_last_applied(raft_fixture_get(&part->f, i)) == last && !part->replicas[i]->halted;
        }
        if (same)
            break;
        tick(sim, false);
    }
    for (unsigned p = 0; p < sim.parts; p++) {
        Partition &part = *sim.partitions[p];
        std::string first = dump(part.replicas[0]->st);
        for (unsigned i = 1; i < sim.n; i++)
            if (dump(part.replicas[i]->st) != first || part.replicas[i]->st.load_meta().applied_index !=
                                                           part.replicas[0]->st.load_meta().applied_index)
                sim.problem("partition " + std::to_string(p) + ": node " + std::to_string(i + 1) +
                            " ends with another state (or applied index) than node 1");
    }
}

void check_histories(Sim &sim)
{
    for (unsigned key = 0; key < kKeys; key++) {
        std::vector<chaos::LOp> ops;
        for (const Call &c : sim.calls) {
            if (c.key != key || c.outcome == Outcome::Fail)
                continue;
            bool info = c.outcome != Outcome::Ok;
            bool read = c.kind == chaos::LKind::CounterGet || c.kind == chaos::LKind::MapGet;
            if (info && read)
                continue;
            chaos::LOp op;
            op.kind = c.kind;
            op.a = c.a;
            op.b = c.b;
            op.res = c.res;
            op.info = info;
            op.invoke = c.invoke;
            op.complete = info ? INT64_MAX : c.complete;
            if (c.kind == chaos::LKind::MapPut && info)
                op.res = -1;
            if (c.kind == chaos::LKind::CounterCas && info)
                op.res = -1;
            op.src = ops.size();
            ops.push_back(op);
        }
        chaos::LinResult r = chaos::check_linearizable(ops, key % 2 == 0, 20000000);
        if (r.verdict != chaos::LinVerdict::Ok && sim.trace)
            for (const Call &c : sim.calls)
                if (c.key == key)
                    fprintf(stderr, "k%u node %u id %llx kind=%d a=%lld b=%lld res=%lld invoke=%lld complete=%lld %s\n",
                            key, c.node + 1, (unsigned long long)c.request_id, (int)c.kind, (long long)c.a,
                            (long long)c.b, (long long)c.res, (long long)c.invoke / 1000,
                            (long long)c.complete / 1000,
                            c.outcome == Outcome::Ok ? "ok" : c.outcome == Outcome::Fail ? "FAIL" : "info");
        if (r.verdict == chaos::LinVerdict::Violation)
            sim.problem("key k" + std::to_string(key) + ": history not linearizable (" +
                        std::to_string(ops.size()) + " ops)");
        else if (r.verdict == chaos::LinVerdict::Budget)
            sim.problem("key k" + std::to_string(key) + ": linearizability undecided within budget");
    }
}

/* Runs one seed; returns its problems (empty: clean). */
std::vector<std::string> run_seed(uint64_t seed, Coverage &total, bool trace)
{
    unsigned n = env_u64("SIM_NODES", 3) == 5 ? 5 : 3;
    std::unique_ptr<Sim> sim = make_sim(seed, n, 2, getenv("SIM_OVERLAP") != nullptr, trace);
    if (!warm_up(*sim))
        sim->problem("warm-up: not every replica took a snapshot within 30 s");
    int64_t until = sim->now + (int64_t)env_u64("SIM_DURATION_MS", 20000) * 1000;
    while (sim->problems.empty() && sim->now < until)
        tick(*sim, true);
    heal_all(*sim);
    sim->clients_on = false;
    for (int k = 0; k < 4000; k++) { /* let the calls in flight finish (20 s) */
        bool idle = true;
        for (auto &node : sim->nodes)
            idle &= node->in_flight.empty();
        if (idle)
            break;
        tick(*sim, false);
    }
    if (sim->problems.empty())
        check_available(*sim);
    if (sim->problems.empty())
        check_converged(*sim);
    if (sim->problems.empty())
        check_histories(*sim);

    Coverage &c = sim->cov;
    c.runs = 1;
    for (const Call &call : sim->calls) {
        c.calls++;
        c.ok += call.outcome == Outcome::Ok;
        c.fail += call.outcome == Outcome::Fail;
        c.info += call.outcome == Outcome::Info || call.outcome == Outcome::Pending;
    }
    for (auto &node : sim->nodes)
        if (node->router)
            for (unsigned p = 0; p < sim->parts; p++) {
                c.resends += node->router->resends((int32_t)p);
                c.duplicates_dropped += node->router->duplicates_dropped((int32_t)p);
            }
    total.runs += c.runs;
    total.calls += c.calls;
    total.ok += c.ok;
    total.fail += c.fail;
    total.info += c.info;
    for (int k = 0; k < kFaultKinds; k++)
        total.faults[k] += c.faults[k];
    total.frames += c.frames;
    total.duplicated += c.duplicated;
    total.resets += c.resets;
    total.held_released += c.held_released;
    total.resends += c.resends;
    total.duplicates_dropped += c.duplicates_dropped;
    total.copies_answered += c.copies_answered;
    total.snapshots += c.snapshots;
    total.restores += c.restores;
    total.halts += c.halts;
    total.proposals_lost += c.proposals_lost;
    total.answered_after_restore += c.answered_after_restore;
    total.grants_delivered += c.grants_delivered;
    total.grants_refused += c.grants_refused;
    total.sessions_expired_here += c.sessions_expired_here;
    total.sessions_closed_by_log += c.sessions_closed_by_log;
    total.beyond_bound_runs += sim->beyond_bound ? 1 : 0;

    std::vector<std::string> problems = sim->problems;
    for (auto &part : sim->partitions)
        raft_fixture_close(&part->f); /* fails pending proposals: their callbacks free them */
    return problems;
}

void print_coverage(const char *what, const Coverage &c)
{
    printf("    %s: %llu seeds, %llu calls (%llu ok, %llu failed, %llu indeterminate)\n", what,
           (unsigned long long)c.runs, (unsigned long long)c.calls, (unsigned long long)c.ok,
           (unsigned long long)c.fail, (unsigned long long)c.info);
    printf("    faults:");
    for (int k = 0; k < kFaultKinds; k++)
        printf(" %s=%llu", kFaultNames[k], (unsigned long long)c.faults[k]);
    printf("\n    forwarding: %llu frames, %llu duplicated, %llu connection resets, %llu held links released "
           "in order, %llu resends, %llu copies dropped by leaders, %llu copies answered from the request log\n",
           (unsigned long long)c.frames, (unsigned long long)c.duplicated, (unsigned long long)c.resets,
           (unsigned long long)c.held_released, (unsigned long long)c.resends,
           (unsigned long long)c.duplicates_dropped, (unsigned long long)c.copies_answered);
    printf("    raft: %llu snapshots, %llu restores (%llu calls answered from a restored request log), "
           "%llu proposals lost with leadership, %llu halts\n",
           (unsigned long long)c.snapshots, (unsigned long long)c.restores,
           (unsigned long long)c.answered_after_restore, (unsigned long long)c.proposals_lost,
           (unsigned long long)c.halts);
    printf("    locks: %llu grants delivered, %llu refused by the grant gate, %llu sessions expired by their "
           "node, %llu closed by the log; %llu seeds stepped a clock beyond the drift bound (lock checks off "
           "from then)\n",
           (unsigned long long)c.grants_delivered, (unsigned long long)c.grants_refused,
           (unsigned long long)c.sessions_expired_here, (unsigned long long)c.sessions_closed_by_log,
           (unsigned long long)c.beyond_bound_runs);
}

/* Seeds that once failed: each a regression test of the fix it led to. */
const uint64_t kRegressionSeeds[] = {
    2,   /* a resent command expiring in the queue was answered "not applied" (57P03) */
    210, /* callers of forwards a snapshot covered waited for unavailable_timeout */
    63,  /* a grant delivered after its node had expired the session (stale grant) */
    230, /* the same, another schedule */
};

/* Runs the seeds; returns a report of the failing ones (empty: all clean). */
std::string run_seeds(const char *what, uint64_t first, uint64_t count, Coverage &cov, unsigned *failed)
{
    std::string report;
    std::vector<uint64_t> seeds;
    if (getenv("SIM_SEED")) {
        seeds.push_back(env_u64("SIM_SEED", 0));
    } else {
        for (uint64_t s : kRegressionSeeds)
            if (s)
                seeds.push_back(s);
        for (uint64_t k = 0; k < count; k++)
            seeds.push_back(first + k);
    }
    for (uint64_t seed : seeds) {
        std::vector<std::string> problems = run_seed(seed, cov, getenv("SIM_SEED") != nullptr);
        if (problems.empty())
            continue;
        (*failed)++;
        if (report.size() < 8000) {
            report += std::string(what) + " seed " + std::to_string(seed) + " (replay: SIM_SEED=" +
                      std::to_string(seed) + ")\n";
            for (const std::string &p : problems)
                report += "  " + p + "\n";
        }
    }
    return report;
}

} // namespace

/* The production build: every seed must run clean, and the faults must
 * really have happened. */
static void seeds_run_clean(void **)
{
    static char failure[16384];
    Coverage cov;
    unsigned failed = 0;
    {
        uint64_t count = env_u64("SIM_SEEDS", 300);
        std::string report = run_seeds("simulation", env_u64("SIM_FIRST", 1), count, cov, &failed);
        snprintf(failure, sizeof failure, "%s", report.c_str());
    }
    print_coverage("simulation", cov);
    if (failure[0])
        fail_msg("%u seeds failed:\n%s", failed, failure);
    if (getenv("SIM_SEED"))
        return;
    for (int k = 0; k < kFaultKinds; k++)
        assert_true(cov.faults[k] > 0);
    assert_true(cov.resends > 0);
    assert_true(cov.resets > 0);
    assert_true(cov.duplicated > 0);
    assert_true(cov.copies_answered > 0);
    assert_true(cov.restores > 0);
    assert_true(cov.halts > 0);
    assert_true(cov.info > 0);
    assert_true(cov.grants_delivered > 0);
    assert_true(cov.grants_refused > 0);
    assert_true(cov.sessions_expired_here > 0);
}

/* A build with a bug planted (src/planted_bugs.h): the simulation must find
 * it — poisoned_entry: a committed entry that cannot be applied;
 * stale_grant: a lock grant delivered after the lock went to someone else. */
static void catches_the_planted_bug(void **)
{
    const char *what = kPlantPoisonedEntry ? "poisoned entry" : "stale grant";
    const char *sign = kPlantPoisonedEntry ? "failed to apply" : "after the lock was granted again";
    static char found[512];
    {
        Coverage cov;
        uint64_t first = env_u64("SIM_FIRST", 1), count = env_u64("SIM_SEEDS", 300);
        for (uint64_t seed = first; seed < first + count && !found[0]; seed++)
            for (const std::string &p : run_seed(seed, cov, false))
                if (p.find(sign) != std::string::npos && !found[0])
                    snprintf(found, sizeof found, "seed %llu: %s", (unsigned long long)seed, p.c_str());
    }
    printf("    planted %s caught: %s\n", what, found[0] ? found : "NOT caught");
    assert_true(found[0] != 0);
}

int main(void)
{
    const struct CMUnitTest planted[] = {
        cmocka_unit_test(catches_the_planted_bug),
    };
    if (kPlantPoisonedEntry || kPlantStaleGrant)
        return cmocka_run_group_tests(planted, nullptr, nullptr);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(seeds_run_clean),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
