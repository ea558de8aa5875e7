/*
 * reads.cpp — the worker's side of linearizable reads: what the read index
 * (replication/read_index.h) needs of this node, and serving the reads whose
 * index this replica has applied.
 *
 * A backend's read_barrier() arrives as a Barrier command; queue_requests
 * hands it to the read index instead of the log.  Once the turn that applied
 * its index has committed, the read is answered, and the backend reads the
 * partition tables under a fresh snapshot (src/sql/read_path.h).
 */
extern "C" {
#include "postgres.h"
}

#include "clock.h"
#include "guc.h"
#include "hibernation.h"
#include "shmem.h"
#include "worker.h"

namespace atomix {

bool Worker::leader_read_state(int32_t partition, uint64_t *term, uint64_t *commit_index)
{
    Partition &p = *partitions_[(size_t)partition];
    return !p.halted && p.group->read_index_state(term, commit_index);
}

/* A halted replica vouches for no term: it may be about to restart from its
 * log, and says no to every confirm until it runs again. */
uint64_t Worker::current_term(int32_t partition)
{
    Partition &p = *partitions_[(size_t)partition];
    if (p.halted || p.group->state() == RAFT_UNAVAILABLE)
        return 0;
    return p.group->term();
}

std::vector<uint32_t> Worker::voters(int32_t partition) { return cluster_->voters((uint32_t)partition); }

void Worker::read_ready(uint64_t request_id) { resolve(request_id, REPLY_OK, 0, std::string()); }

/* Read leases (read_index.h).  A halted replica promises nothing: it may
 * restart its group, which forgets its leader (RaftGroup::deliver withholds
 * votes for an election timeout after a start, for that reason). */
uint32_t Worker::vote_promise_ms(int32_t partition, uint32_t leader, uint64_t term)
{
    Partition &p = *partitions_[(size_t)partition];
    if (p.halted)
        return 0;
    uint64_t vouched = hibernation_ ? hibernation_->vouched_ms((uint32_t)partition) : 0;
    return (uint32_t)p.group->vote_promise_ms(leader, term, vouched, (uint64_t)(mono_now_us() / 1000));
}

bool Worker::lease_allowed(int32_t partition, uint64_t term)
{
    Partition &p = *partitions_[(size_t)partition];
    return atomix_read_lease && !p.halted && p.group->transfer_term() != term;
}

int64_t Worker::lease_clock_us(int32_t) { return boot_now_us(); }

/* After the turn's commit: c-raft's applied index is in the tables (entries
 * applied this turn are committed; barrier and configuration entries change
 * nothing).  A halted partition's c-raft has counted entries it did not
 * apply, so its reads wait for the restarted group. */
void Worker::reads_applied()
{
    if (!reads_)
        return;
    for (size_t i = 0; i < partitions_.size(); i++) {
        if (reads_->waiting((int32_t)i) == 0)
            continue; /* asked first: no pointer chase for partitions nobody reads */
        Partition *p = partitions_[i].get();
        if (!p->halted && p->group->started())
            reads_->applied(p->id, p->group->last_applied());
    }
    publish_applied_leases();
}

} // namespace atomix
