/*
 * sessions.cpp — sessions and grants on a simulated node, as bgworker/sessions.cpp and
 * src/sql/session.cpp keep them: keep-alives, vouching, a new leader's lease
 * renewal, node-side expiry, and the production GrantGate vetting grants.
 */
#include <algorithm>

#include "le_bytes.h"
#include "planted_bugs.h"
#include "sim.h"

namespace sim {

/* ---- sessions and grants, as bgworker/sessions.cpp and src/sql/session.cpp ---- */

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
        /* the stale_grant plant answers every grant (src/core/planted_bugs.h) */
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

} // namespace sim
