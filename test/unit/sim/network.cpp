/*
 * network.cpp — the simulated network between routers (per-pair FIFO pipes, connections
 * with generations that reset like the node transport's), raft's links in
 * the fixtures, and the RouterHost of a simulated node.
 */
#include <algorithm>

#include "planted_bugs.h"
#include "sim.h"

namespace sim {

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

/* ---- ReadIndexHost of a simulated node ---- */

bool Node::leader_read_state(int32_t partition, uint64_t *term, uint64_t *commit_index)
{
    struct raft *r = sim->raft((unsigned)partition, i);
    if (!leads(partition) || term_start[(size_t)partition] == 0 ||
        leader_term[(size_t)partition] != r->current_term || r->commit_index < term_start[(size_t)partition])
        return false;
    *term = r->current_term;
    *commit_index = r->commit_index;
    return true;
}

uint64_t Node::current_term(int32_t partition)
{
    if (sim->partitions[(size_t)partition]->replicas[i]->halted)
        return 0;
    return sim->raft((unsigned)partition, i)->current_term;
}

std::vector<uint32_t> Node::voters(int32_t partition)
{
    std::vector<uint32_t> v;
    struct raft *r = sim->raft((unsigned)partition, i);
    for (unsigned k = 0; k < r->configuration.n; k++)
        if (r->configuration.servers[k].role == RAFT_VOTER)
            v.push_back((uint32_t)r->configuration.servers[k].id);
    return v;
}

/* Read leases: the follower side as RaftGroup::vote_promise_ms computes it
 * (no hibernation here), on the partition fixture's clock — which is also
 * the leader's lease clock, so the leases the simulation grants are exactly
 * as long as c-raft's timers allow, less the 10% drift margin. */
uint32_t Node::vote_promise_ms(int32_t partition, uint32_t leader, uint64_t term)
{
    if (sim->partitions[(size_t)partition]->replicas[i]->halted)
        return 0;
    struct raft *r = sim->raft((unsigned)partition, i);
    if (r->state != RAFT_FOLLOWER || r->current_term != term || r->follower_state.current_leader.id != leader)
        return 0;
    uint64_t now = raft_fixture_time(&sim->partitions[(size_t)partition]->f);
    uint64_t ends = r->election_timer_start + r->election_timeout;
    return ends > now + 1 ? (uint32_t)std::min<uint64_t>(ends - now - 1, r->election_timeout) : 0;
}

int64_t Node::lease_clock_us(int32_t partition)
{
    return (int64_t)raft_fixture_time(&sim->partitions[(size_t)partition]->f) * 1000;
}

void Node::read_ready(uint64_t request_id)
{
    auto it = in_flight.find(request_id);
    if (it == in_flight.end())
        return;
    const Call &c = sim->calls[it->second];
    Replica &r = *sim->partitions[c.key % sim->parts]->replicas[i];
    sim->cov.reads_confirmed++;
    finish_call(*sim, *this, request_id, Outcome::Ok, read_value(r, c));
}

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
    if (why == RouteFailure::NotApplied && in_flight.count(request_id) &&
        (sim->calls[in_flight[request_id]].kind == chaos::LKind::MapGet ||
         sim->calls[in_flight[request_id]].kind == chaos::LKind::CounterGet))
        sim->cov.reads_failed++;
    finish_call(*sim, *this, request_id, why == RouteFailure::InDoubt ? Outcome::Info : Outcome::Fail, 0);
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
                if (fr.type == FrameType::Forward) {
                    to.router->on_forward(a + 1, fr.data.data(), fr.data.size());
                } else if (fr.type == FrameType::ForwardReply) {
                    to.router->on_forward_reply(a + 1, fr.data.data(), fr.data.size());
                } else {
                    to.reads->on_frame(a + 1, fr.type, fr.data.data(), fr.data.size());
                    to.reads->flush();
                }
            }
        }
}

} // namespace sim
