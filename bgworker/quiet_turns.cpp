/*
 * quiet_turns.cpp — an idle worker's turns skip their walks over every
 * partition.
 *
 * Once every partition hibernates (replication/hibernation.h), what still
 * wakes the worker is its tick (twice a second) and its peers' digests (each
 * peer's, twice a second): about five turns a second.  Each turn used to walk
 * every partition a dozen times — queues, polls, read rounds, leader
 * balance, the watchdog, deadlines — to find nothing to do: at 256
 * partitions that was most of an idle worker's CPU.
 *
 * A turn is quiet when, at the end of the turn before it, the worker was
 * settled (settled() below) and nothing since could have unsettled it.
 * Everything that can bring work clears quiet_ before the walks run:
 *   - a backend's request or a status scan handing over a slot
 *     (queue_requests), a command the worker proposes itself
 *     (propose_internal: session closes, keep-alives, lock-wait cancels);
 *   - any frame from a peer except a digest (on_frame): Raft messages,
 *     forwards and their replies, read-index frames;
 *   - a group waking (group_woke: a message, a proposal, a transfer);
 *   - the tick (tick_groups): a tick turn is quiet only when every group
 *     slept through it with nothing new to decide and leader balance has no
 *     partition left to move (Worker::sleeps_through_tick, ticks.cpp);
 *     otherwise leader balance and the progress watchdog run on it.
 * A quiet turn still takes requests, maintains sessions, proposes due ticks
 * (an entry's ttl on a sleeping leader: at the earliest deadline settled()
 * saw, since no deadline moves while nothing is applied), runs libuv's callbacks (the
 * digests), flushes the transport and publishes the status when a scan asks
 * for it.  What it skips would have found nothing: no command is queued,
 * proposed or forwarded, no read waits, no group is awake to poll, no
 * partition is halted, nothing is in flight to answer.
 *
 * Nothing here changes a Raft decision or an answer; a wrong "settled"
 * would delay work until the next tick turn (at most kDigestEveryMs), which
 * the TAP suites, the simulation and test/chaos would show as timeouts.
 */
#include "worker.h"

#include "hibernation.h"

namespace atomix {

bool Worker::settled()
{
    if (!hibernation_ || !hibernation_->all_asleep() || woke_since_tick_)
        return false;
    if (!in_flight_.empty() || !ready_.empty() || !waits_.empty() || !grants_.empty() || txn_.active() ||
        !fatal_.empty())
        return false;
    int64_t deadline = INT64_MAX;
    for (const auto &p : partitions_) {
        if (p->halted || p->tick_in_flight || p->touched)
            return false;
        std::optional<int64_t> expiry;
        if (p->sm.cached_next_deadline(&expiry) && expiry && p->group->is_leader())
            deadline = std::min(deadline, *expiry);
    }
    if ((router_ && !router_->idle()) || (reads_ && !reads_->idle()))
        return false;
    /* the one walk a quiet turn keeps: a leader's due tick (an entry's
     * ttl, a lease) proposes an entry, which wakes its group */
    quiet_deadline_us_ = deadline;
    return true;
}

void Worker::unsettle() { quiet_ = false; }

} // namespace atomix
