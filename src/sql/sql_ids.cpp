/*
 * sql_ids.cpp — atomix.next_id(): cluster-wide unique ids, cheap enough for
 * every inserted row.
 *
 * Each node reserves a block of atomix.id_block_size ids through Raft and
 * hands them out from shared memory (like a sequence's CACHE).  Ids are
 * unique cluster-wide and strictly increasing on each node: a block that
 * comes back lower than one another backend installed meanwhile is used for
 * this one call only (the calls were concurrent) and the rest is dropped.
 */
extern "C" {
#include "postgres.h"
#include "storage/lwlock.h"
}

#include <cstring>

#include "client.h"
#include "guc.h"
#include "objects.h"
#include "pg_bridge.h"
#include "routing.h"
#include "shmem.h"
#include "sql_args.h"

using namespace atomix;

/* With id_lock held: the block of `name`, or nullptr. */
static AtomixIdBlock *find_block(const std::string &name)
{
    for (AtomixIdBlock &b : atomix_shared->id_blocks)
        if (b.name[0] != '\0' && name == b.name)
            return &b;
    return nullptr;
}

/* With id_lock held: the least recently used block, for `name`. */
static AtomixIdBlock *claim_block(const std::string &name)
{
    AtomixIdBlock *victim = &atomix_shared->id_blocks[0];
    for (AtomixIdBlock &b : atomix_shared->id_blocks) {
        if (b.name[0] == '\0') {
            victim = &b;
            break;
        }
        if (b.used < victim->used)
            victim = &b;
    }
    memset(victim, 0, sizeof(*victim));
    memcpy(victim->name, name.data(), name.size());
    return victim;
}

static bool take_cached(const std::string &name, int64_t *id)
{
    bool got = false;
    LWLockAcquire(atomix_shared->id_lock, LW_EXCLUSIVE);
    AtomixIdBlock *b = find_block(name);
    if (b && b->next < b->end) {
        *id = b->next++;
        b->used = ++atomix_shared->id_clock;
        got = true;
    }
    LWLockRelease(atomix_shared->id_lock);
    return got;
}

ATOMIX_SQL_FUNCTION(atomix_next_id)
{
    check_session_usable();
    std::string name = name_arg(fcinfo, 0, "id generator name");
    int64_t id;
    if (take_cached(name, &id))
        PG_RETURN_INT64(id);

    Command cmd;
    cmd.op = Op::IdReserve;
    cmd.name = name;
    cmd.arg1 = atomix_id_block_size;
    Reply r = submit((int32_t)named_partition(name, kKindIdGenerator, (uint32_t)atomix_partitions), cmd);
    int64_t first = r.value;
    int64_t end = first + cmd.arg1;

    LWLockAcquire(atomix_shared->id_lock, LW_EXCLUSIVE);
    AtomixIdBlock *b = find_block(name);
    if (!b)
        b = claim_block(name);
    if (first >= b->end) {
        b->next = first + 1;
        b->end = end;
    }
    b->used = ++atomix_shared->id_clock;
    LWLockRelease(atomix_shared->id_lock);
    PG_RETURN_INT64(first);
}
