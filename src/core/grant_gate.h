/*
 * grant_gate.h — the node-side rule for answers that grant something bound
 * to a session (a lock token, semaphore permits, an election candidacy or
 * leadership): never say "you hold it" once the session may be gone.
 *
 * The cluster expires a node's sessions on log time when the node stops
 * renewing them; the node vouches for them only until the lease deadline
 * its last acknowledged keep-alive reported, minus a margin for clock skew
 * (bgworker/sessions.cpp).  A grant can reach the node late — after a pause
 * of the node or of its raft worker, a long apply backlog, a clock step, a
 * partition that heals — when the session has already expired or been
 * closed further down the very backlog being applied.  So at the moment a
 * grant is about to be answered:
 *   - if the applied log closed that session in this turn, or
 *   - if this node itself has flagged the session expired (it stopped
 *     vouching for another partition the session touched, or the log closed
 *     it in an earlier turn: the close it proposed everywhere may already
 *     have released this very grant on the leader), or
 *   - if the node cannot vouch for the session's partition right now
 *     (now > vouched-until),
 * the answer becomes "session expired" (55000), and the session is closed
 * everywhere, which releases what was granted.  Grants delivered before
 * remain the holder's until its next call tells it (docs/coordination.md).
 *
 * Pure C++ with injected time, unit-tested (test/unit/test_grant_gate.cpp).
 */
#ifndef ATOMIX_GRANT_GATE_H
#define ATOMIX_GRANT_GATE_H

#include <cstdint>
#include <unordered_set>

#include "codec.h"

namespace atomix {

/* Whether a successful result of `op` (with `value`) grants something that
 * belongs to the caller's session. */
inline bool grants_to_session(Op op, int64_t value)
{
    switch (op) {
    case Op::LockAcquire:
    case Op::ElectionEnter:
    case Op::ElectionAnoint:
    case Op::ElectionPromote:
        return true;
    case Op::SemaphoreAcquire:
        return value != 0; /* false: nothing was granted */
    default:
        return false;
    }
}

class GrantGate {
  public:
    /* The applied log closed this session (expiry, close, a newer life). */
    void session_closed(uint64_t session) { closed_.insert(session); }
    /* A loop turn's answers went out: closes seen so far no longer matter
     * here; later grants see the shared flag the close set (flagged_expired
     * below). */
    void turn_done() { closed_.clear(); }

    bool closed_in_log(uint64_t session) const { return closed_.count(session) > 0; }

    /* May a grant to `session` be answered now?  vouched_until_us: until
     * when this node vouches for the session's partition (wall clock);
     * flagged_expired: this node's shared flag for the session is set. */
    bool may_deliver(uint64_t session, int64_t vouched_until_us, int64_t now_us, bool flagged_expired) const
    {
        if (flagged_expired || closed_.count(session) > 0)
            return false;
        return now_us <= vouched_until_us;
    }

  private:
    std::unordered_set<uint64_t> closed_;
};

} // namespace atomix

#endif
