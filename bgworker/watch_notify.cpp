/*
 * watch_notify.cpp — turning applied changes into Postgres notifications
 * for atomix.watch() (docs/coordination.md).
 *
 * Every node's worker notifies its own listeners, inside the apply
 * transaction: Postgres delivers the notifications when that transaction
 * commits, in the order they were raised, so listeners see a partition's
 * changes in log order and only once they are in the tables.  Only names
 * someone asked to watch on this node are notified; the rest cost nothing.
 */
extern "C" {
#include "postgres.h"
#include "commands/async.h"
#include "lib/stringinfo.h"
#include "utils/json.h"
}

#include <algorithm>

#include "pg_bridge.h"
#include "shmem.h"
#include "watch.h"
#include "worker.h"

namespace atomix {

/* Which of the events name something watched on this node (one look at
 * the registrations for the whole batch). */
static std::vector<bool> watched(const std::vector<WatchEvent> &events)
{
    std::vector<bool> out(events.size(), false);
    LWLockAcquire(atomix_shared->lock, LW_SHARED);
    for (size_t k = 0; k < events.size() && (atomix_shared->nwatched > 0 || atomix_shared->watch_all); k++) {
        uint64_t hash = watch_hash(events[k].name);
        bool yes = atomix_shared->watch_all;
        for (int32 i = 0; !yes && i < atomix_shared->nwatched; i++)
            yes = atomix_shared->watched[i] == hash;
        out[k] = yes;
    }
    LWLockRelease(atomix_shared->lock);
    return out;
}

void Worker::notify_watchers()
{
    if (events_.empty())
        return;
    std::vector<bool> wanted = watched(events_);
    for (size_t k = 0; k < events_.size(); k++) {
        if (!wanted[k])
            continue;
        const WatchEvent &e = events_[k];
        std::string channel = watch_channel(e.name);
        pg_guard([&] {
            StringInfoData buf;
            initStringInfo(&buf);
            appendStringInfoString(&buf, "{\"kind\": ");
            escape_json(&buf, e.kind);
            appendStringInfoString(&buf, ", \"name\": ");
            escape_json(&buf, e.name.c_str());
            appendStringInfoString(&buf, ", \"key\": ");
            /* values and locks have no key; an election's is its leader */
            if (e.key.empty() && strcmp(e.kind, "map") != 0 && strcmp(e.kind, "set") != 0)
                appendStringInfoString(&buf, "null");
            else
                escape_json(&buf, e.key.c_str());
            appendStringInfo(&buf, ", \"event\": \"%s\", \"version\": %lld}", e.event,
                             (long long)e.version);
            Async_Notify(channel.c_str(), buf.data);
            pfree(buf.data);
        });
    }
    events_.clear();
}

} // namespace atomix
