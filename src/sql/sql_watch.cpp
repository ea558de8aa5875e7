/*
 * sql_watch.cpp — atomix.watch(): the channel to LISTEN on for changes to a
 * named primitive.  It registers the name's hash in shared memory so the
 * raft worker notifies it (bgworker/watch_notify.cpp); unwatched names cost
 * nothing.  Registrations last until the server restarts.
 */
extern "C" {
#include "postgres.h"
#include "storage/lwlock.h"
#include "utils/builtins.h"
}

#include "client.h"
#include "pg_bridge.h"
#include "shmem.h"
#include "sql_args.h"
#include "watch.h"

using namespace atomix;

/* watch(primitive) → the channel to LISTEN on for it */
ATOMIX_SQL_FUNCTION(atomix_watch)
{
    check_session_usable();
    std::string name = name_arg(fcinfo, 0, "primitive name");
    uint64_t hash = watch_hash(name);
    LWLockAcquire(atomix_shared->lock, LW_EXCLUSIVE);
    bool known = atomix_shared->watch_all;
    for (int32 i = 0; !known && i < atomix_shared->nwatched; i++)
        known = atomix_shared->watched[i] == hash;
    if (!known) {
        if (atomix_shared->nwatched < ATOMIX_MAX_WATCHES)
            atomix_shared->watched[atomix_shared->nwatched++] = hash;
        else
            atomix_shared->watch_all = true; /* full: notify everything from now on */
    }
    LWLockRelease(atomix_shared->lock);
    std::string channel = watch_channel(name);
    PG_RETURN_TEXT_P(cstring_to_text_with_len(channel.data(), (int)channel.size()));
}
