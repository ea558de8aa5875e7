/*
 * apply_guard.cpp — a machine failure stops one partition, never the node.
 *
 * A committed entry whose apply raises (storage refused a write, out of
 * memory, a full disk, an injected fault), a snapshot that cannot be
 * installed, or a Raft log write that fails halts its partition alone on
 * this node:
 *   - the entry's subtransaction is rolled back (worker.cpp), so the tables
 *     and the applied index stay at the entry before;
 *   - c-raft already counts the entry as applied, so nothing more of that
 *     partition may be applied or snapshotted: its group is closed;
 *   - after a back-off (1 s, doubling to 60 s) the group is started again:
 *     c-raft reloads its log and the state machine re-applies from the
 *     failed entry (it skips what the tables already hold).  Once that
 *     entry applies, the partition serves again and the back-off resets;
 *   - meanwhile calls routed to it on this node fail at once with 57P03 and
 *     the reason, atomix.partitions shows it halted with its last error and
 *     next retry, and the other nodes elect a leader among themselves.
 * Every other partition keeps applying and serving throughout.
 *
 * Refusals a client caused (a limit, a CAS mismatch) are decided by the
 * state machine before any write and answered as the command's result:
 * they never halt anything.
 */
extern "C" {
#include "postgres.h"
}

#include <algorithm>
#include <sstream>

#include "clock.h"
#include "guc.h"
#include "shmem.h"
#include "thread_pool_work.h"
#include "worker.h"

namespace atomix {

void Worker::halt_partition(Partition &p, uint64_t index, const std::string &what,
                            const std::string &error)
{
    if (p.halted)
        return;
    p.halted = true;
    halts_pending_ = true;
    p.halted_at_us = mono_now_us();
    p.waited_for_truncate = false;
    if (p.group)
        p.group->quiesce();
    p.apply_failures++;
    if (p.failed_index == 0 || index < p.failed_index)
        p.failed_index = index;
    p.last_error = what + ": " + error;
    int64_t max_backoff = p.io_failure ? kIoBackoffMaxUs : kHaltBackoffMaxUs;
    p.backoff_us = p.backoff_us == 0 ? kHaltBackoffFirstUs : std::min(p.backoff_us * 2, max_backoff);
    p.restart_at_us = mono_now_us() + p.backoff_us;
    ereport(WARNING,
            (errmsg("atomix: partition %d halted on this node: %s failed at index %llu: %s", p.id,
                    what.c_str(), (unsigned long long)index, error.c_str()),
             errdetail("The other partitions keep serving; this one restarts its Raft group in "
                       "%lld ms and applies again from that entry.",
                       (long long)(p.backoff_us / 1000)),
             errhint("See atomix.partitions (status, last_error, retry_at).")));
}

/* A write of the partition's Raft log failed (raft_uv reported it): c-raft
 * 0.15 would keep such a leader in office and leave such a follower silent.
 * Halt the partition; its group is reopened from disk after a back-off. */
void Worker::on_io_error(Partition &p, int status, const std::string &message)
{
    if (p.halted)
        return;
    p.io_failure = true;
    halt_partition(p, p.group->last_index(), "a Raft log write",
                   std::string(raft_strerror(status)) + (message.empty() ? "" : ": " + message));
}

/* Calls routed to a halted partition on this node cannot be answered here
 * (a node answers from its own replica): fail them now, saying why, rather
 * than letting them wait out atomix.unavailable_timeout.  Those forwarded to
 * another leader may be applied there: 40003. */
void Worker::answer_queued_of_halted(Partition &p)
{
    std::string why = "atomix: partition " + std::to_string(p.id) +
                      " is halted on this node after a failure (" + p.last_error + ")";
    router_->fail_all(p.id, why);
    reads_->fail_all(p.id, why);
}

/* Creates and starts the partition's Raft group; false (with the reason
 * logged and the back-off grown) when it cannot start yet. */
bool Worker::start_group(Partition &p)
{
    /* The old group is closed but never released nor freed: raft_uv 0.15
     * may still have thread-pool work in flight after its close callback
     * (it already fires that callback more than once), and a failed
     * raft_init leaves libuv requests pointing into the group.  Freeing it
     * crashed the worker under full disks (test/chaos).  A retired group
     * costs some kB; halts are rare and backed off. */
    if (p.group) {
        p.retired_proposals += p.group->proposals();
        p.retired_raft_messages += p.group->messages_sent();
        p.retired_hibernations += p.group->hibernations();
        p.retired_log_writes += p.group->log_writes();
        retired_groups_.push_back(std::move(p.group));
    }
    p.group = std::make_unique<RaftGroup>(&loop_, p.raft_config, &p.fsm);
    try {
        make_partition_dir(p.raft_config.dir);
        p.group->start();
        log_trimmed_segments(p);
        return true;
    } catch (const std::exception &e) {
        p.last_error = std::string("restarting its Raft group: ") + e.what();
        p.backoff_us = std::min(p.backoff_us * 2, kHaltBackoffMaxUs);
        p.restart_at_us = mono_now_us() + p.backoff_us;
        ereport(WARNING, (errmsg("atomix: partition %d could not restart: %s; next try in %lld ms",
                                 p.id, e.what(), (long long)(p.backoff_us / 1000))));
        return false;
    }
}

void Worker::log_trimmed_segments(Partition &p)
{
    for (const std::string &name : p.group->trimmed_segments())
        ereport(LOG, (errmsg("atomix: partition %d: trimmed the zero tail of full open Raft log "
                             "segment %s so that raft_uv 0.15 can load it",
                             p.id, name.c_str())));
}

/* The partition's first start, when the worker starts.  A group that cannot
 * start — its log's disk is full (raft_uv's probe file, a segment or the
 * metadata cannot be written), a directory cannot be made — halts this
 * partition alone, as a failed restart does, instead of failing the worker:
 * the postmaster would restart the worker every second, and every other
 * partition on a disk that still has room would stop serving with it
 * (test/chaos, disk full then crash; TAP 117). */
void Worker::start_first_group(Partition &p)
{
    try {
        make_partition_dir(p.raft_config.dir);
        p.group->start();
        log_trimmed_segments(p);
        return;
    } catch (const std::exception &e) {
        p.halted = true;
        halts_pending_ = true;
        p.phase = GroupPhase::Stopped; /* its group never started: nothing to close */
        p.io_failure = true;
        p.halted_at_us = mono_now_us();
        p.apply_failures++;
        p.last_error = std::string("starting its Raft group: ") + e.what();
        p.backoff_us = kHaltBackoffFirstUs;
        p.restart_at_us = p.halted_at_us + p.backoff_us;
        ereport(WARNING,
                (errmsg("atomix: partition %d could not start on this node: %s", p.id, e.what()),
                 errdetail("The other partitions start and serve; this one tries again in %lld "
                           "ms, backing off to %lld s.",
                           (long long)(p.backoff_us / 1000), (long long)(kHaltBackoffMaxUs / 1000000)),
                 errhint("Free space where $PGDATA/atomix lives; see atomix.partitions "
                         "(status, last_error, retry_at).")));
    }
}

/* Once some log has been written: raft_uv must have queued thread-pool
 * work (a segment to write into is prepared there) through our
 * uv_queue_work, or truncate_in_doubt() sees nothing and a halt could close
 * a group under its running truncate (thread_pool_work.h).  The worker's
 * own start-up work is one. */
void Worker::check_thread_pool_count()
{
    uint64_t writes = 0;
    for (auto &ptr : partitions_)
        if (ptr->group)
            writes += ptr->group->log_writes();
    if (writes == 0)
        return;
    thread_pool_checked_ = true;
    if (thread_pool_work_queued(&loop_) > 1)
        return;
    ereport(WARNING,
            (errmsg("atomix: raft_uv's thread-pool work is not counted on this node"),
             errdetail("libraft did not call atomix's uv_queue_work (another library in this "
                       "server exports libuv's first).  A partition halted while its Raft log "
                       "is being truncated may then crash the raft worker when it restarts "
                       "its group."),
             errhint("Load no other library that links libuv before atomix "
                     "(shared_preload_libraries order).")));
}

/* Drives halted partitions through close → release → restart. */
void Worker::maintain_halted(int64_t mono_us)
{
    if (ticked_ && !thread_pool_checked_)
        check_thread_pool_count();
    if (!halts_pending_ && !ticked_)
        return; /* none halted since a walk found none; tick turns walk anyway */
    bool any_halted = false;
    for (auto &ptr : partitions_) {
        Partition &p = *ptr;
        if (!p.halted)
            continue;
        any_halted = true;
        answer_queued_of_halted(p);
        switch (p.phase) {
        case GroupPhase::Running:
            /* let raft_uv finish (or fail) what it has in flight first, for
             * at most 10 s (a disk that hangs for good) */
            if (p.group->io_busy() && mono_us - p.halted_at_us < 10 * 1000000LL)
                break;
            /* ...and never close it under a running truncate: raft_uv 0.15
             * would free the truncate under its thread (no time limit: a
             * truncate that never ends is a disk that never answers, and
             * closing would crash the worker) */
            if (p.group->truncate_in_doubt()) {
                if (!p.waited_for_truncate)
                    ereport(LOG, (errmsg("atomix: partition %d waits for raft_uv to finish "
                                         "truncating its Raft log before closing its group",
                                         p.id)));
                p.waited_for_truncate = true;
                break;
            }
            p.group->close();
            p.phase = GroupPhase::Closing;
            break;
        case GroupPhase::Closing:
            if (p.group->closed())
                p.phase = GroupPhase::Stopped; /* not released: see start_group */
            break;
        case GroupPhase::Stopped:
            if (mono_us < p.restart_at_us)
                break;
            p.halted = false; /* raft_start may already restore a snapshot */
            p.was_leader = false;
            p.tick_in_flight = false;
            if (start_group(p)) {
                p.phase = GroupPhase::Running;
                if (p.failed_index != 0)
                    ereport(LOG, (errmsg("atomix: partition %d restarted its Raft group; applying "
                                         "again from index %llu",
                                         p.id, (unsigned long long)p.failed_index)));
                else
                    ereport(LOG, (errmsg("atomix: partition %d started its Raft group", p.id)));
            } else {
                p.halted = true; /* stays Stopped; its group never started */
            }
            break;
        }
    }
    halts_pending_ = any_halted; /* one walk more after the last restart */
}

/* Parses the test-only settings after each reload and hands the network
 * holds to the transport. */
static std::vector<uint32_t> parse_ids(const char *list, const std::vector<uint32_t> &all)
{
    std::vector<uint32_t> out;
    if (!list)
        return out;
    std::stringstream in(list);
    std::string item;
    while (std::getline(in, item, ',')) {
        item.erase(std::remove(item.begin(), item.end(), ' '), item.end());
        if (item == "*")
            return all;
        if (!item.empty() && std::all_of(item.begin(), item.end(), ::isdigit))
            out.push_back((uint32_t)std::stoul(item));
    }
    std::sort(out.begin(), out.end());
    return out;
}

void Worker::apply_test_settings()
{
    /* every turn: compared in place, nothing allocated unless one changed */
    const char *now[] = {atomix_test_hold_outbound, atomix_test_hold_inbound, atomix_test_fail_apply};
    bool same = atomix_test_hold_release == test_hold_release_seen_;
    for (int i = 0; i < 3 && same; i++)
        same = test_settings_last_[i] == (now[i] ? now[i] : "");
    if (same)
        return;
    for (int i = 0; i < 3; i++)
        test_settings_last_[i] = now[i] ? now[i] : "";
    test_hold_release_seen_ = atomix_test_hold_release;

    std::vector<uint32_t> partitions;
    for (auto &p : partitions_)
        partitions.push_back((uint32_t)p->id);
    std::string fail = atomix_test_fail_apply ? atomix_test_fail_apply : "";
    test_fail_apply_all_ = fail.find('*') != std::string::npos;
    test_fail_apply_.clear();
    for (uint32_t id : parse_ids(fail.c_str(), partitions))
        test_fail_apply_.push_back((int32_t)id);

    if (!transport_)
        return;
    std::vector<uint32_t> peers;
    for (const NodeAddress &n : cluster_->nodes())
        if (n.id != cluster_->self().id)
            peers.push_back(n.id);
    TransportFaults faults;
    faults.hold_outbound = parse_ids(atomix_test_hold_outbound, peers);
    faults.hold_inbound = parse_ids(atomix_test_hold_inbound, peers);
    faults.reset_on_release = atomix_test_hold_release == ATOMIX_HOLD_RELEASE_RESET;
    transport_->set_faults(faults);
    if (!faults.hold_outbound.empty() || !faults.hold_inbound.empty())
        ereport(LOG, (errmsg("atomix: test hold in effect: outbound \"%s\", inbound \"%s\"",
                             atomix_test_hold_outbound, atomix_test_hold_inbound)));
}

} // namespace atomix
