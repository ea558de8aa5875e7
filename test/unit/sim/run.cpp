/*
 * run.cpp — one seed from setup to the final checks (availability, convergence,
 * linearizability), and the coverage report.
 */
#include <algorithm>
#include <climits>

#include "fixture_support.h"
#include "planted_bugs.h"
#include "raft_group.h"
#include "sim.h"
#include "unit_helpers.h"

namespace sim {

using namespace unit;

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
        start_node(*sim, *node);
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
            r->sm.set_track_origins(true);
            r->fsm.version = 1;
            r->fsm.data = r.get();
            r->fsm.apply = fsm_apply;
            r->fsm.snapshot = fsm_snapshot;
            r->fsm.restore = fsm_restore;
            if (raft_fixture_grow(&part->f, &r->fsm) != 0)
                sim->problem("raft_fixture_grow failed");
            install_io_shim(&part->f.servers[i].io);
            install_vouch_shim(&part->f.servers[i].io); /* as RaftGroup runs c-raft */
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
                Call c;
                c.node = node->i;
                c.key = 1000000; /* not a checked key */
                ci = submit_call(sim, *node, p, c, counter_cmd(Op::CounterIncr, "probe", 1));
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
                c.read_rounds += node->reads->rounds((int32_t)p);
                c.reads_leased += node->reads->reads_leased((int32_t)p);
            }
    total.runs += c.runs;
    total.calls += c.calls;
    total.ok += c.ok;
    total.fail += c.fail;
    total.read_rounds += c.read_rounds;
    total.reads_leased += c.reads_leased;
    total.reads_confirmed += c.reads_confirmed;
    total.reads_failed += c.reads_failed;
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
    total.copies_refused += c.copies_refused;
    total.copies_finished += c.copies_finished;
    total.max_outcomes = std::max(total.max_outcomes, c.max_outcomes);
    total.max_origins = std::max(total.max_origins, c.max_origins);
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
           "in order, %llu resends, %llu copies dropped by leaders, %llu copies answered without running (%llu of them "
           "refused as finished), %llu first copies refused as finished; at most %llu origins and %llu outcomes of one "
           "origin remembered by a partition\n",
           (unsigned long long)c.frames, (unsigned long long)c.duplicated, (unsigned long long)c.resets,
           (unsigned long long)c.held_released, (unsigned long long)c.resends,
           (unsigned long long)c.duplicates_dropped, (unsigned long long)c.copies_answered,
           (unsigned long long)c.copies_finished, (unsigned long long)c.copies_refused,
           (unsigned long long)c.max_origins, (unsigned long long)c.max_outcomes);
    printf("    raft: %llu snapshots, %llu restores (%llu calls answered from restored outcomes), "
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
    printf("    reads: %llu served by read index in %llu confirmation rounds (%llu confirmed by a "
           "leader's lease without one), %llu refused (no confirmed index in time)\n",
           (unsigned long long)c.reads_confirmed, (unsigned long long)c.read_rounds,
           (unsigned long long)c.reads_leased, (unsigned long long)c.reads_failed);
}

} // namespace sim
