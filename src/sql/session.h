/*
 * session.h — the calling backend's atomix session (docs/coordination.md).
 *
 * A backend gets a session the first time it needs one (a lock, candidacy
 * or permit).  Its slot in shared memory records the session and the
 * partitions it touched; the raft worker renews those in batches and closes
 * them when the backend exits (an exit callback queues the close).
 */
#ifndef ATOMIX_SESSION_H
#define ATOMIX_SESSION_H

#include <cstdint>

#include "client.h"
#include "codec.h"

namespace atomix {

/* Fills cmd.session and cmd.epoch with this backend's session, opening one
 * if `open` (otherwise leaves 0 when there is none), and records that it
 * touches `partition`.  Throws "session expired" if the worker could not
 * vouch for the session. */
void attach_session(Command &cmd, int32_t partition, bool open);

/* The session's id, or 0 before it has one. */
uint64_t current_session_id();

/* Submits a session-bearing command; on "session expired" (from the state
 * machine) or a wait that ended in doubt, drops the session so that what it
 * may hold is released, then throws. */
Reply submit_in_session(int32_t partition, const Command &cmd);

/* Until when this node vouches for its sessions in `partition` (Unix µs):
 * a grant is safe to act on only before then (docs/coordination.md). */
int64_t session_vouched_until(int32_t partition);

/* The earliest vouching deadline over the partitions this backend's
 * session touched (Unix µs); 0 without a live session. */
int64_t session_valid_until_all();

/* Throws the "session expired" error (after dropping the session). */
[[noreturn]] void raise_session_expired(const char *why);

} // namespace atomix

#endif
