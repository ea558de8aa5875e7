/*
 * open_files.cpp — making room for raft_uv's file descriptors.
 *
 * Every partition's Raft group holds several descriptors open for good
 * (its open log segments, the one being prepared, an eventfd for its writer,
 * the log directory).  Postgres counts only its own files against
 * max_files_per_process; raft_uv's come on top.  With the default soft
 * limit of 1024 a worker serving 256 partitions ran out of descriptors: log
 * writes failed with "too many open files", and those partitions halted and
 * never came back (found measuring an idle 256-partition cluster).  So the
 * worker raises its own soft limit toward the hard one, and says so when even
 * the hard limit is too low.
 */
extern "C" {
#include "postgres.h"
}

#include <sys/resource.h>

#include <algorithm>

#include "worker.h"

namespace atomix {

/* Descriptors one Raft group may hold (raft_uv: up to three open segments,
 * the writer's eventfd, the directory, a snapshot being written), with
 * room to spare, and what the rest of the worker needs. */
constexpr rlim_t kFilesPerPartition = 8;
constexpr rlim_t kFilesBesidesPartitions = 256;

static rlim_t open_files_needed(int partitions)
{
    return kFilesBesidesPartitions + kFilesPerPartition * (rlim_t)partitions;
}

void raise_open_files_limit(int partitions)
{
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0)
        return;
    rlim_t needed = open_files_needed(partitions);
    if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < needed) {
        rlim_t want = lim.rlim_max == RLIM_INFINITY ? needed : std::min(lim.rlim_max, needed);
        struct rlimit raised = lim;
        raised.rlim_cur = want;
        if (want > lim.rlim_cur && setrlimit(RLIMIT_NOFILE, &raised) == 0) {
            ereport(LOG, (errmsg("atomix: raised the raft worker's open files limit from %llu to %llu "
                                 "for %d partitions",
                                 (unsigned long long)lim.rlim_cur, (unsigned long long)want, partitions)));
            lim = raised;
        }
    }
    if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < needed)
        ereport(WARNING,
                (errmsg("atomix: %d partitions need about %llu open files, but the raft worker may open "
                        "only %llu",
                        partitions, (unsigned long long)needed, (unsigned long long)lim.rlim_cur),
                 errdetail("Raft log writes fail with \"too many open files\" once it runs out, and "
                           "the partitions they belong to halt."),
                 errhint("Raise the server's open files limit (ulimit -n, or LimitNOFILE= for a systemd "
                         "service) to at least %llu and restart, or use fewer partitions.",
                         (unsigned long long)needed)));
}

} // namespace atomix
