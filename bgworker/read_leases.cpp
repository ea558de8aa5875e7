/*
 * read_leases.cpp — publishing this node's read leases to its backends.
 *
 * A leader holding a read lease (replication/read_index.h) answers its own
 * reads without a round; published in shared memory (AtomixReadLease), the
 * lease lets a backend skip the worker too and read the tables at once.
 * That is safe when the tables hold every write acknowledged anywhere:
 *   - a write acknowledged by this node was applied and committed here
 *     before its reply;
 *   - a write acknowledged by another node was committed there only after
 *     this leader's commit index, sent in some frame, reached it.  So the
 *     commit index is published before any bytes leave this node (the
 *     transport's before_write hook, and every flush), and a backend reads
 *     only once the applied index committed to the tables (published after
 *     the turn's commit) has reached it.
 * The lease itself is published only while this node leads in the lease's
 * term, may lease (atomix.read_lease, no transfer asked in the term) and
 * the partition is not halted.  A backend checks its end against
 * CLOCK_BOOTTIME, so a frozen worker's lease runs out by itself.
 */
extern "C" {
#include "postgres.h"
}

#include <algorithm>

#include "guc.h"
#include "shmem.h"
#include "worker.h"

namespace atomix {

/* At worker start: the last incarnation's leases say nothing now. */
void Worker::clear_read_leases()
{
    for (int p = 0; p < ATOMIX_MAX_PARTITIONS; p++)
        read_lease_write(&atomix_shared->read_leases[p], AtomixReadLeaseView{0, 0, 0});
    published_leases_.assign((size_t)atomix_partitions, AtomixReadLeaseView{0, 0, 0});
    leased_parts_.clear();
}

/* Before anything leaves this node: each leased partition's lease and the
 * commit index any frame about to go out may carry. */
void Worker::publish_read_leases()
{
    if (!reads_ || published_leases_.empty())
        return;
    for (int32_t p : reads_->take_new_leases())
        if (std::find(leased_parts_.begin(), leased_parts_.end(), p) == leased_parts_.end())
            leased_parts_.push_back(p);
    for (size_t k = 0; k < leased_parts_.size();) {
        int32_t p = leased_parts_[k];
        Partition &part = *partitions_[(size_t)p];
        AtomixReadLeaseView &v = published_leases_[(size_t)p];
        int64_t until = reads_->lease_until_us(p);
        uint64_t term = reads_->lease_term(p);
        if (part.halted || !part.group->is_leader() || part.group->term() != term ||
            !lease_allowed(p, term))
            until = 0;
        uint64_t commit = part.group->commit_index();
        if (until != v.until_boot_us || commit != v.commit_index) {
            v.until_boot_us = until;
            v.commit_index = commit;
            read_lease_write(&atomix_shared->read_leases[p], v);
        }
        if (until == 0) {
            leased_parts_[k] = leased_parts_.back();
            leased_parts_.pop_back();
        } else {
            k++;
        }
    }
}

/* After the turn's commit: what the tables now hold. */
void Worker::publish_applied_leases()
{
    for (int32_t p : leased_parts_) {
        Partition &part = *partitions_[(size_t)p];
        AtomixReadLeaseView &v = published_leases_[(size_t)p];
        if (part.halted || !part.group->started())
            continue;
        uint64_t applied = part.group->last_applied();
        if (applied != v.applied_index) {
            v.applied_index = applied;
            read_lease_write(&atomix_shared->read_leases[p], v);
        }
    }
}

/* Reads this node's backends served under a lease, per partition (stats). */
uint64_t Worker::reads_leased_locally(int32_t partition) const
{
    return pg_atomic_read_u64(&atomix_shared->read_leases[partition].reads);
}

} // namespace atomix
