/*
 * sim.h — the deterministic simulation's world (test_simulation.cpp says
 * what it is for): nodes with the production RequestRouter, replicas with
 * the production StateMachine on raft_fixture clusters, the network between
 * routers, clients' calls, the nemesis' faults, and what was covered.
 */
#ifndef ATOMIX_SIM_H
#define ATOMIX_SIM_H

#include <cstdint>
#include <cstdlib>
#include <deque>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

extern "C" {
#include <raft.h>
#include <raft/fixture.h>
}

#include "grant_gate.h"
#include "lin.h"
#include "memory_storage.h"
#include "objects.h"
#include "read_index.h"
#include "request_router.h"

namespace sim {

using namespace atomix;

/* ---- knobs and constants ---- */

inline uint64_t env_u64(const char *name, uint64_t dflt)
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
inline const char *const kFaultNames[kFaultKinds] = {"crash",    "pause",  "isolate",   "one-way-out",
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

/* A client's session on its node (src/sql/session.cpp's state, in short). */
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

struct Node final : ReadIndexHost {
    Sim *sim = nullptr;
    unsigned i = 0; /* index; node id i + 1 */
    bool crashed = false, paused = false;
    uint64_t incarnation = 1, counter = 0;
    int64_t clock_offset_us = 0;
    std::unique_ptr<RequestRouter> router;
    std::unique_ptr<ReadIndex> reads; /* linearizable reads (read_index.h) */
    /* as RaftGroup tracks it: the first index of our term while leading,
     * after a barrier appended on election (0: not leading) */
    std::vector<uint64_t> term_start, leader_term;
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
    bool leader_read_state(int32_t partition, uint64_t *term, uint64_t *commit_index) override;
    uint64_t current_term(int32_t partition) override;
    std::vector<uint32_t> voters(int32_t partition) override;
    void read_ready(uint64_t request_id) override;
    uint32_t vote_promise_ms(int32_t partition, uint32_t leader, uint64_t term) override;
    bool lease_allowed(int32_t, uint64_t) override { return true; } /* no transfers here */
    int64_t lease_clock_us(int32_t partition) override;
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
    uint64_t resends = 0, duplicates_dropped = 0, copies_answered = 0, copies_refused = 0;
    uint64_t copies_finished = 0; /* of copies_answered: refused, their origin was done */
    uint64_t max_outcomes = 0, max_origins = 0; /* the largest origin table seen */
    uint64_t snapshots = 0, restores = 0, halts = 0, proposals_lost = 0, answered_after_restore = 0;
    uint64_t grants_delivered = 0, grants_refused = 0, sessions_expired_here = 0, sessions_closed_by_log = 0;
    uint64_t beyond_bound_runs = 0;
    uint64_t read_rounds = 0, reads_confirmed = 0, reads_failed = 0, reads_leased = 0;
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

/* ---- what each file defines ---- */

/* network.cpp: the routers' network, raft's links, finishing calls */
void finish_call(Sim &sim, Node &node, uint64_t request_id, Outcome outcome, int64_t res);
void apply_raft_links(Sim &sim);
void reset_conn(Sim &sim, unsigned a, unsigned b);
void maintain_conns(Sim &sim);
void deliver_frames(Sim &sim);

/* sessions.cpp: sessions and grants, as bgworker/sessions.cpp and src/sql/session.cpp */
int64_t wall_now(Sim &sim, const Node &node);
uint64_t new_request_id(Node &node);
uint64_t submit_internal(Sim &sim, Node &node, unsigned part, atomix::Command cmd);
void maintain_sessions(Sim &sim, Node &node);
void renew_leases_as_new_leader(Sim &sim, Node &node);
void client_loses_session(Node &node, unsigned client);
void deliver_grants(Sim &sim, Node &node);

/* replica.cpp: applying entries, the FSM adapters, halting */
void answer(Sim &sim, Replica &r, const atomix::CommandResult &res);
int64_t read_value(Replica &r, const Call &c);
int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result);
int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs);
int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf);
void restart_halted(Sim &sim, Replica &r);

/* clients.cpp: clients' calls and a node's loop turn */
size_t submit_call(Sim &sim, Node &node, unsigned part, Call c, const atomix::Command &cmd);
void run_clients(Sim &sim, Node &node);
void turn(Sim &sim, Node &node);
void start_node(Sim &sim, Node &node); /* a new incarnation's router and read index */

/* nemesis.cpp: faults, node lifecycle, time */
void crash(Sim &sim, Node &node);
void restart(Sim &sim, Node &node);
void end_fault(Sim &sim, const Sim::Active &a);
void tick(Sim &sim, bool faults);

/* run.cpp: one seed, start to checks */
std::vector<std::string> run_seed(uint64_t seed, Coverage &total, bool trace);
void print_coverage(const char *what, const Coverage &c);

} // namespace sim

#endif
