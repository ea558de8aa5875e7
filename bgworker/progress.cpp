/*
 * progress.cpp — progress, not just heartbeats.
 *
 * A Raft group can look healthy (a leader, heartbeats flowing, no election)
 * and still commit nothing: c-raft 0.15's commit rule can starve under load
 * (worked around in RaftGroup::advance_commit), a leader's log writes can
 * fail or hang (halted by apply_guard.cpp), a leader can be cut off one way.
 * Every loop turn, each partition with work waiting here — commands queued,
 * in a proposal, or forwarded to its leader — must apply something within
 * kStallAfterUs (three election timeouts).  If it does not, the partition is
 * "stalled" on this node:
 *   - a WARNING gives its state: role, term, leader, commit / applied / last
 *     index, each peer's link and last contact, what is waiting, the last
 *     failure; atomix.partitions shows status 'stalled';
 *   - this node's callers that have waited a whole period get a clear error
 *     then instead of a silent statement timeout: 57P03 for requests never
 *     proposed, 40003 (may or may not be applied) for those already sent;
 *   - if this node leads it, it steps down: leadership goes to the connected
 *     voter that has the most of the log, or, with none, the group restarts
 *     (apply_guard.cpp), so a leader that cannot make progress gets out of
 *     the way instead of holding its followers with heartbeats;
 *   - a Raft log write that has not finished after kStallAfterUs (a disk
 *     that hangs rather than fails) halts the partition like a failed one:
 *     its group restarts and raft_uv is reopened from disk;
 *   - once something is applied again, a LOG line says so.
 */
extern "C" {
#include "postgres.h"
}

#include <algorithm>
#include <cstdint>

#include "clock.h"
#include "shmem.h"
#include "worker.h"

namespace atomix {

/* This node's callers that have waited a whole stall period on a stalled
 * partition get a clear answer (later arrivals get theirs at the next check,
 * or from atomix.unavailable_timeout, whichever comes first). */
void Worker::fail_waiting_of_stalled(Partition &p)
{
    int64_t waited_since = mono_now_us() - kStallAfterUs;
    std::string why = "atomix: partition " + std::to_string(p.id) +
                      " makes no progress (nothing applied for " +
                      std::to_string(kStallAfterUs / 1000000) + " s); see atomix.partitions";
    router_->fail_waiting_since(p.id, waited_since, why,
                                [this](uint64_t id) { return in_flight_.count(id) > 0; });
    /* proposals in flight here are answered by the leader stepping down
     * (their callbacks retry or fail them) */
}

std::string Worker::describe_replica(Partition &p)
{
    RaftGroup &g = *p.group;
    static const char *roles[] = {"unavailable", "follower", "candidate", "leader"};
    int role = g.state();
    std::string s = std::string("role ") + (role >= 0 && role <= 3 ? roles[role] : "?") +
                    ", term " + std::to_string(g.term()) + ", leader " +
                    (g.leader_id() ? "node " + std::to_string(g.leader_id()) : "none") +
                    ", commit " + std::to_string(g.commit_index()) + ", applied " +
                    std::to_string(std::max<uint64_t>(g.last_applied(), p.storage.cached_applied_index())) +
                    ", last " + std::to_string(g.last_index());
    int64_t now = unix_now_us();
    for (const NodeAddress &n : cluster_->nodes()) {
        if (n.id == cluster_->self().id)
            continue;
        bool up = transport_ && transport_->connected(n.id);
        int64_t contact = transport_ ? transport_->last_contact_us(n.id) : 0;
        s += "; node " + std::to_string(n.id) + (up ? " connected" : " not connected");
        if (contact)
            s += ", heard " + std::to_string((now - contact) / 1000) + " ms ago";
        if (g.is_leader())
            s += ", match " + std::to_string(g.match_index(n.id));
    }
    if (!p.last_error.empty())
        s += "; last failure: " + p.last_error;
    return s;
}

void Worker::watch_progress(int64_t mono_us)
{
    /* a watchdog counting seconds: every 50 ms is plenty (it walks every
     * partition; at 256 of them every turn was 5% of the worker) */
    if (last_watch_us_ != 0 && mono_us - last_watch_us_ < kWatchEveryUs)
        return;
    /* This worker itself did not run for a while (it was paused, or one
     * turn took long): the partitions had no chance to progress.  Measure
     * again from now. */
    bool we_stalled = last_watch_us_ != 0 && mono_us - last_watch_us_ > kStallAfterUs / 3;
    last_watch_us_ = mono_us;
    if (we_stalled) {
        resumed_at_us_ = mono_us;
        for (auto &p : partitions_)
            p->progress_at_us = mono_us;
    }
    /* a log write is timed from when this process last ran on, too: its
     * thread pool was stopped with it */
    uint64_t running_ms = resumed_at_us_ ? (uint64_t)((mono_us - resumed_at_us_) / 1000) : UINT64_MAX;
    for (auto &ptr : partitions_) {
        Partition &p = *ptr;
        uint64_t hung_ms = p.halted ? 0 : std::min(p.group->oldest_append_ms(), running_ms);
        if (hung_ms * 1000 > (uint64_t)kStallAfterUs) {
            p.io_failure = true;
            halt_partition(p, p.group->last_index(), "a Raft log write",
                           "not finished after " + std::to_string(hung_ms) + " ms");
        }
        uint64_t applied = std::max<uint64_t>(p.group->last_applied(), p.storage.cached_applied_index());
        size_t waiting = router_->waiting(p.id);
        if (p.halted || waiting == 0 || applied != p.progress_index) {
            if (p.stalled && applied != p.progress_index)
                ereport(LOG, (errmsg("atomix: partition %d makes progress again (applied index %llu)",
                                     p.id, (unsigned long long)applied)));
            if (waiting == 0 || applied != p.progress_index || p.halted)
                p.stalled = false;
            p.progress_index = applied;
            p.progress_at_us = mono_us;
            continue;
        }
        if (mono_us - p.progress_at_us < kStallAfterUs)
            continue;
        /* stalled: say so (once per episode), and get out of the way */
        bool leading = p.group->is_leader();
        if (!p.stalled) {
            p.stalls++;
            ereport(WARNING,
                    (errmsg("atomix: partition %d makes no progress: %zu requests wait and nothing "
                            "was applied for %lld ms",
                            p.id, waiting, (long long)((mono_us - p.progress_at_us) / 1000)),
                     errdetail("%s", describe_replica(p).c_str()),
                     errhint(leading ? "This node leads it and steps down." :
                                       "Its leader is expected to step down; requests fail after "
                                       "atomix.unavailable_timeout.")));
        }
        p.stalled = true;
        p.progress_at_us = mono_us; /* check again one period later */
        fail_waiting_of_stalled(p);
        if (!leading)
            continue;
        uint32_t best = 0;
        uint64_t best_match = 0;
        for (uint32_t id : cluster_->voters((uint32_t)p.id))
            if (id != cluster_->self().id && transport_ && transport_->connected(id) &&
                p.group->match_index(id) >= best_match) {
                best = id;
                best_match = p.group->match_index(id);
            }
        if (best && p.group->transfer_leadership(best)) {
            ereport(LOG, (errmsg("atomix: partition %d: handing leadership to node %u", p.id, best)));
            continue;
        }
        halt_partition(p, applied + 1, "making progress as leader",
                       "no connected voter to hand leadership to");
    }
}

} // namespace atomix
