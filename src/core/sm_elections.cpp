/*
 * sm_elections.cpp — leader elections in the partition state machine.
 *
 * Candidates stand in line; the first one leads.  The term grows by one
 * each time the leader changes to another candidate, so it works as a
 * fencing token for whatever the leader does.  A candidate id belongs to
 * the session that entered it and leaves when that session closes.
 */
#include <algorithm>

#include "state_machine.h"

#include "core_only.h" /* last: nothing above brought in Postgres */

namespace atomix {

static const std::string *leader_of(const ElectionState &e)
{
    return e.candidates.empty() ? nullptr : &e.candidates.front().id;
}

/* Bumps the term if the leader changed, tells watchers, and stores. */
void StateMachine::store_election(const std::string &name, const ElectionState &before,
                                  ElectionState &after, const Context &ctx)
{
    (void)ctx;
    const std::string *was = leader_of(before);
    const std::string *now = leader_of(after);
    bool leader_changed = now && (!was || *was != *now);
    if (leader_changed)
        after.term++;
    storage_.object_put(kKindElection, name, ObjectRow{encode_election(after), std::nullopt});
    if (leader_changed || (was && !now))
        emit("election", name, now ? *now : std::string(), "leader", after.term);
    else
        emit("election", name, std::string(), "candidates", after.term);
}

static bool session_stands(const ElectionState &e, uint64_t session)
{
    return std::any_of(e.candidates.begin(), e.candidates.end(),
                       [&](const Candidate &c) { return c.session == session; });
}

CommandResult StateMachine::election_change(const Command &cmd, const Context &ctx)
{
    CommandResult r;
    r.request_id = cmd.request_id;
    /* Opening the session first: it may close the node's previous life,
     * whose candidates then leave this election before we read it. */
    if (cmd.op == Op::ElectionEnter) {
        r.code = open_session(cmd, ctx);
        if (r.code != ResultCode::Ok)
            return r;
    }
    std::optional<ObjectRow> row = storage_.object_get(kKindElection, cmd.name);
    ElectionState before = row ? decode_election(row->state) : ElectionState{};
    ElectionState after = before;
    auto it = std::find_if(after.candidates.begin(), after.candidates.end(),
                           [&](const Candidate &c) { return c.id == cmd.key; });
    bool present = it != after.candidates.end();
    r.value = before.term;

    switch (cmd.op) {
    case Op::ElectionEnter: {
        if (present) {
            if (it->session != cmd.session)
                r.code = ResultCode::Conflict;
            return r; /* entering again changes nothing */
        }
        after.candidates.push_back(Candidate{cmd.key, cmd.session});
        add_session_ref(cmd.session, kKindElection, cmd.name);
        break;
    }
    case Op::ElectionWithdraw:
    case Op::ElectionEvict: {
        if (!present)
            return r;
        uint64_t owner = it->session;
        if (cmd.op == Op::ElectionWithdraw && owner != cmd.session) {
            r.code = ResultCode::NotOwner;
            return r;
        }
        after.candidates.erase(it);
        if (!session_stands(after, owner))
            drop_session_ref(owner, kKindElection, cmd.name);
        break;
    }
    case Op::ElectionAnoint: {
        if (!present || it == after.candidates.begin())
            return r;
        Candidate c = *it;
        after.candidates.erase(it);
        after.candidates.insert(after.candidates.begin(), c);
        break;
    }
    case Op::ElectionPromote: {
        /* next in line, behind the leader */
        if (!present || it - after.candidates.begin() <= 1)
            return r;
        Candidate c = *it;
        after.candidates.erase(it);
        after.candidates.insert(after.candidates.begin() + 1, c);
        break;
    }
    default:
        return r;
    }
    store_election(cmd.name, before, after, ctx);
    r.value = after.term;
    return r;
}

void StateMachine::election_leave_session(const std::string &name, uint64_t session,
                                          const Context &ctx)
{
    std::optional<ObjectRow> row = storage_.object_get(kKindElection, name);
    if (!row)
        return;
    ElectionState before = decode_election(row->state);
    ElectionState after = before;
    after.candidates.erase(std::remove_if(after.candidates.begin(), after.candidates.end(),
                                          [&](const Candidate &c) { return c.session == session; }),
                           after.candidates.end());
    if (after.candidates.size() != before.candidates.size())
        store_election(name, before, after, ctx);
}

} // namespace atomix
