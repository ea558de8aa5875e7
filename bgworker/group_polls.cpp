/*
 * group_polls.cpp — which Raft groups a loop turn polls.
 *
 * RaftGroup::poll() notices a new leadership, advances and announces the
 * commit index and completes sends.  Everything it looks at changes only
 * through something that stirs the group (RaftGroupConfig::on_stir): a
 * peer's message, a send, a log write queued or completed, a tick, a wake,
 * a proposal, a transfer, a start.  So a busy turn polls only the groups
 * stirred since their last poll — with 256 partitions and one client, the
 * walk over every group in each turn was a tenth of the worker — and a tick
 * turn still polls every group, so a stir this file never heard of would
 * cost at most one tick of delay, never a decision.
 *
 * Leader balancing reads what the polls found (a new leadership is seen in
 * the turn its group is polled); transfers that only wait for time to pass
 * are started by the tick turns, which poll every group.
 */
#include "postgres.h"

#include "worker.h"

namespace atomix {

void Worker::group_stirred(uint32_t partition) { stirred_.push_back(partition); }

void Worker::poll_groups()
{
    polled_.clear();
    polling_.swap(stirred_); /* what the polls stir is for the next turn */
    stirred_.clear();
    size_t count = ticked_ ? partitions_.size() : polling_.size();
    for (size_t n = 0; n < count; n++) {
        uint32_t i = ticked_ ? (uint32_t)n : polling_[n];
        Partition &p = *partitions_[i];
        if (!ticked_ && !p.group->stirred())
            continue; /* polled already, or stirred by a retired group (apply_guard.cpp) */
        p.group->poll();
        polled_.push_back(i);
        if (p.group->is_leader())
            lower_tick_due(p); /* it may have just come to lead (due_ticks.cpp) */
    }
}

} // namespace atomix
