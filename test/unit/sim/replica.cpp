/*
 * replica.cpp — one replica applying committed entries, as the worker's FSM adapters
 * do, with the checks every apply makes (same bytes, same state, at most
 * once), and halting a replica whose apply failed.
 */
#include <cstring>
#include <functional>

#include "sim.h"
#include "unit_helpers.h"

namespace sim {

using namespace unit;

/* ---- the FSM adapters, as the worker's ---- */

size_t state_hash(Replica &r)
{
    std::string s = dump(r.st) + "origins " + r.st.load_meta().origins;
    return std::hash<std::string>()(s);
}

/* What a read returns from this replica now (src/sql/read_path.cpp's part). */
int64_t read_value(Replica &r, const Call &c)
{
    std::string key = "k" + std::to_string(c.key);
    if (c.kind == chaos::LKind::CounterGet)
        return r.st.counter_get(key).value_or(0);
    std::optional<MapRow> row = r.st.map_get(kEntryMap, "m", key);
    return row ? strtoll(row->value.c_str() + 1, nullptr, 10) : -1;
}

/* What a call learns from the entry that carried it, on its own node. */
void answer(Sim &sim, Replica &r, const CommandResult &res)
{
    Node &node = *sim.nodes[r.node];
    if (node.router)
        node.router->applied(res.request_id);
    /* a late copy of a request this node is done with (bgworker/worker.cpp
     * drops it too): a waiting lock acquire keeps waiting */
    if (res.code == ResultCode::Finished) {
        auto waiting = node.in_flight.find(res.request_id);
        if (waiting != node.in_flight.end() && !sim.calls[waiting->second].lock_call)
            sim.problem("node " + std::to_string(r.node + 1) + ": request " +
                        std::to_string(res.request_id) + ", which its caller still waits for, was "
                        "refused as finished (the floor passed it)");
        if (res.code == ResultCode::Finished)
            return;
    }
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
    if (c.kind == chaos::LKind::CounterGet || c.kind == chaos::LKind::MapGet)
        value = read_value(r, c); /* a barrier: read the replica once it is applied */
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
    if (sim.trace && getenv("SIM_TRACE_APPLY"))
        sim.log(where + " applies bytes " + std::to_string(h % 100000) + " (term " +
                std::to_string(sim.raft(r.part, r.node)->current_term) + ")");
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
    uint64_t copies = 0, refused = 0;
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
            if (res.code == ResultCode::Finished)
                sim.cov.copies_finished++;
            auto out = part.first_out.find(ids[k]);
            /* Finished: refused, not run (its origin is done with it) */
            if (out != part.first_out.end() && res.code != ResultCode::Finished &&
                (out->second.first != (int)res.code || out->second.second != res.value))
                sim.problem(where + ": a copy of request " + std::to_string(ids[k]) +
                            " got a different outcome than the first (applied twice)");
        } else {
            /* the first copy to reach the log, after its origin gave up on
             * it (it timed out and was answered "in doubt"): refused */
            if (res.code == ResultCode::Finished)
                refused++;
            part.first_index.emplace(ids[k], index);
            part.first_out.emplace(ids[k], std::make_pair((int)res.code, res.value));
        }
    }
    if (r.sm.duplicates_answered() - dups_before != copies + refused)
        sim.problem(where + ": " + std::to_string(copies) + " copies of earlier requests and " +
                    std::to_string(refused) + " refused as finished, but " +
                    std::to_string(r.sm.duplicates_answered() - dups_before) +
                    " answered without running (one was executed twice)");
    sim.cov.copies_answered += copies;
    sim.cov.copies_refused += refused;

    if (index % 16 == 0) { /* the origin table stays small: what is in flight */
        RequestOrigins t = RequestOrigins::decode(r.st.load_meta().origins);
        for (const RequestOrigin &o : t.origins())
            sim.cov.max_outcomes = std::max<uint64_t>(sim.cov.max_outcomes, o.outcomes.size());
        sim.cov.max_origins = std::max<uint64_t>(sim.cov.max_origins, t.origins().size());
    }
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
                std::optional<RecordedOutcome> out = r.sm.recorded_outcome(id);
                if (!out || out->code == (int)ResultCode::Pending)
                    return false;
                r.sim->cov.answered_after_restore++;
                answer(*r.sim, r, CommandResult{id, (ResultCode)out->code, out->value});
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

} // namespace sim
