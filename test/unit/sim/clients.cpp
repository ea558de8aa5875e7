/*
 * clients.cpp — clients' calls (counters, map entries, locks) and one loop turn of a
 * node's worker.
 */
#include <cstring>

#include "sim.h"
#include "unit_helpers.h"

namespace sim {

using namespace unit;

/* ---- clients ---- */

/* A caller's command: recorded as call `c` (answered through in_flight)
 * and queued like the worker queues a backend's request.  Returns the
 * call's index. */
size_t submit_call(Sim &sim, Node &node, unsigned part, Call c, const Command &cmd)
{
    c.invoke = sim.now;
    c.request_id = submit_internal(sim, node, part, cmd);
    sim.calls.push_back(c);
    node.in_flight[c.request_id] = sim.calls.size() - 1;
    return sim.calls.size() - 1;
}

/* lock_acquire (try) or, if the client holds a lock, lock_release — with
 * src/sql/session.cpp's attach_session in front. */
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
    Call c;
    c.node = node.i;
    c.client = client;
    c.key = kLockKeyBase + lock;
    c.lock_call = true;
    c.release = release;
    c.session = cs.id;
    node.client_call[client] = (long)submit_call(sim, node, part, c, cmd);
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
        }
    } else if (roll < 60) {
        c.kind = chaos::LKind::MapPut;
        c.a = (int64_t)sim.next_value++;
        cmd = cmd_of(Op::MapPut, "m", key, "v" + std::to_string(c.a));
    } else {
        c.kind = chaos::LKind::MapGet;
    }
    uint32_t part = c.key % sim.parts;
    if (c.kind == chaos::LKind::CounterGet || c.kind == chaos::LKind::MapGet) {
        /* a linearizable read: a read index, then the local replica */
        c.invoke = sim.now;
        c.request_id = new_request_id(node);
        sim.calls.push_back(c);
        node.in_flight[c.request_id] = sim.calls.size() - 1;
        node.reads->submit((int32_t)part, c.request_id, sim.now + kUnavailableUs);
        node.client_call[client] = (long)(sim.calls.size() - 1);
        return;
    }
    node.client_call[client] = (long)submit_call(sim, node, part, c, cmd);
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

void start_node(Sim &sim, Node &node)
{
    node.router = std::make_unique<RequestRouter>(node, sim.parts);
    node.reads = std::make_unique<ReadIndex>(node, sim.parts);
    node.term_start.assign(sim.parts, 0);
    node.leader_term.assign(sim.parts, 0);
}

/* RaftGroup::poll's bookkeeping of a new term: everything from the next
 * index on is of our term.  (The worker appends a barrier there; here the
 * lease renewal every new leader proposes in this turn is that entry.) */
static void note_terms(Sim &sim, Node &node)
{
    for (unsigned p = 0; p < sim.parts; p++) {
        struct raft *r = sim.raft(p, node.i);
        if (raft_state(r) != RAFT_LEADER) {
            node.term_start[p] = 0;
        } else if (node.term_start[p] == 0 || node.leader_term[p] != r->current_term) {
            node.term_start[p] = raft_last_index(r) + 1;
            node.leader_term[p] = r->current_term;
        }
    }
}

/* Reads whose index this node's replica has applied run now. */
static void serve_reads(Sim &sim, Node &node)
{
    for (unsigned p = 0; p < sim.parts; p++)
        if (!sim.partitions[p]->replicas[node.i]->halted && node.reads->waiting((int32_t)p) > 0)
            node.reads->applied((int32_t)p, raft_last_applied(sim.raft(p, node.i)));
}

void turn(Sim &sim, Node &node)
{
    deliver_grants(sim, node); /* what the applies since the last turn granted */
    serve_reads(sim, node);
    run_clients(sim, node);
    note_terms(sim, node);
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
    for (unsigned p = 0; p < sim.parts; p++)
        if (sim.partitions[p]->replicas[node.i]->halted)
            node.reads->fail_all((int32_t)p, "partition halted");
    node.reads->pump(sim.now);
}

} // namespace sim
