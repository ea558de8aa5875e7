/*
 * nemesis.cpp — the faults (crash, pause, cuts, delays, duplicates, clock steps, storage
 * failures), node lifecycle, and simulated time.
 */
#include <algorithm>

#include "sim.h"

namespace sim {

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
    for (unsigned p = 0; p < sim.parts; p++)
    {
        sim.cov.read_rounds += node.reads->rounds((int32_t)p);
        sim.cov.reads_leased += node.reads->reads_leased((int32_t)p);
    }
    node.router.reset();
    node.reads.reset();
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
    start_node(sim, node);
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

} // namespace sim
