/*
 * due_ticks.cpp — leaders propose a tick entry when a deadline of their
 * partition is due (an entry's ttl, a waiter's timeout, a node lease).
 *
 * Finding the due partitions walked every partition in every turn, and the
 * wait for the next one walked them again (next_timeout_ms): with 256
 * partitions and one client, a few percent of the worker for deadlines that
 * are seconds away.  The worker now keeps next_tick_due_us_, a time no later
 * than the earliest deadline of a partition that may propose a tick, and
 * walks only once that time has come:
 *   - a partition's deadline is learned or moved only by applying to it, and
 *     the turn's commit (finish_turn) lowers the bound to each touched
 *     partition's deadline;
 *   - a partition becomes able to propose when its group comes to lead (a
 *     polled group that leads lowers it: a group that won an election was
 *     stirred, so polled), when its tick entry is done (proposal_done) or
 *     when its group restarts (started groups are stirred, so polled);
 *   - a walk sets the bound to the earliest deadline it saw among those
 *     that may propose, and tick turns always walk.
 * A bound that is too early costs one walk; one that is too late would
 * delay a deadline — by at most one tick period, since every tick turn
 * walks.
 */
#include "postgres.h"

#include "worker.h"

namespace atomix {

void Worker::lower_tick_due(Partition &p)
{
    std::optional<int64_t> expiry;
    if (p.sm.cached_next_deadline(&expiry) && expiry)
        next_tick_due_us_ = std::min(next_tick_due_us_, *expiry);
}

void Worker::propose_ticks(int64_t now_us)
{
    if (now_us < next_tick_due_us_ && !ticked_)
        return;
    int64_t next = INT64_MAX;
    for (auto &p : partitions_) {
        std::optional<int64_t> expiry;
        if (p->halted || p->tick_in_flight || !p->sm.cached_next_deadline(&expiry) || !expiry ||
            !p->group->is_leader())
            continue;
        if (*expiry > now_us) {
            next = std::min(next, *expiry);
            continue;
        }
        std::string entry;
        EntryHeader header;
        header.stamp_us = now_us;
        encode_entry_header(header, entry);
        auto *proposal = new Proposal{p.get(), {}, true};
        if (p->group->propose(entry, proposal_cb, proposal) == 0) {
            p->tick_in_flight = true; /* proposal_done lowers the bound again */
        } else {
            delete proposal;
            next = std::min(next, *expiry); /* due, and tried again next turn */
        }
    }
    next_tick_due_us_ = next;
}

} // namespace atomix
