/*
 * session_registry.cpp — reading and flagging sessions in the request slots
 * (see session_registry.h).  Everything happens under atomix_shared->lock.
 */
extern "C" {
#include "postgres.h"
#include "storage/lwlock.h"
}

#include <cstring>

#include "session_registry.h"
#include "shmem.h"

namespace atomix {

static std::vector<int32_t> partitions_of(const uint32 *words)
{
    std::vector<int32_t> out;
    for (int32_t p = 0; p < ATOMIX_MAX_PARTITIONS; p++)
        if (words[p / 32] & (1u << (p % 32)))
            out.push_back(p);
    return out;
}

int64_t node_epoch_us() { return atomix_shared->epoch_us; }

bool sessions_changed()
{
    LWLockAcquire(atomix_shared->lock, LW_EXCLUSIVE);
    bool changed = atomix_shared->sessions_changed;
    atomix_shared->sessions_changed = false;
    LWLockRelease(atomix_shared->lock);
    return changed;
}

void scan_sessions(int32_t partitions, SessionSnapshot &out)
{
    out.by_partition.assign((size_t)partitions, {});
    LWLockAcquire(atomix_shared->lock, LW_SHARED);
    out.max_seq = atomix_shared->session_seq;
    for (uint32 i = 0; i < atomix_shared->nslots; i++) {
        const AtomixSessionInfo &s = atomix_shared->slots[i].session;
        if (s.id == 0 || s.expired)
            continue;
        for (int32_t p = 0; p < partitions; p++)
            if (s.partitions[p / 32] & (1u << (p % 32)))
                out.by_partition[(size_t)p].push_back(s.id);
    }
    LWLockRelease(atomix_shared->lock);
}

std::vector<ClosedSessionInfo> take_closed_sessions()
{
    std::vector<ClosedSessionInfo> out;
    LWLockAcquire(atomix_shared->lock, LW_EXCLUSIVE);
    while (atomix_shared->closed_count > 0) {
        const AtomixClosedSession &c = atomix_shared->closed[atomix_shared->closed_head];
        out.push_back(ClosedSessionInfo{c.id, partitions_of(c.partitions)});
        atomix_shared->closed_head = (atomix_shared->closed_head + 1) % ATOMIX_CLOSED_RING;
        atomix_shared->closed_count--;
    }
    LWLockRelease(atomix_shared->lock);
    return out;
}

std::vector<ClosedSessionInfo> expire_sessions_in(int32_t partition)
{
    std::vector<ClosedSessionInfo> out;
    LWLockAcquire(atomix_shared->lock, LW_EXCLUSIVE);
    for (uint32 i = 0; i < atomix_shared->nslots; i++) {
        AtomixSessionInfo &s = atomix_shared->slots[i].session;
        if (s.id == 0 || s.expired || !(s.partitions[partition / 32] & (1u << (partition % 32))))
            continue;
        s.expired = true;
        out.push_back(ClosedSessionInfo{s.id, partitions_of(s.partitions)});
    }
    LWLockRelease(atomix_shared->lock);
    return out;
}

bool expire_session_id(uint64_t id)
{
    bool found = false;
    LWLockAcquire(atomix_shared->lock, LW_EXCLUSIVE);
    for (uint32 i = 0; i < atomix_shared->nslots; i++) {
        AtomixSessionInfo &s = atomix_shared->slots[i].session;
        if (s.id == id && !s.expired) {
            s.expired = true;
            found = true;
        }
    }
    LWLockRelease(atomix_shared->lock);
    return found;
}

bool session_flagged_expired(uint64_t id)
{
    bool expired = false;
    LWLockAcquire(atomix_shared->lock, LW_SHARED);
    for (uint32 i = 0; i < atomix_shared->nslots; i++) {
        const AtomixSessionInfo &s = atomix_shared->slots[i].session;
        if (s.id == id && s.expired)
            expired = true;
    }
    LWLockRelease(atomix_shared->lock);
    return expired;
}

int64_t lease_valid_until(int32_t partition)
{
    LWLockAcquire(atomix_shared->lock, LW_SHARED);
    int64_t v = atomix_shared->lease_valid_until_us[partition];
    LWLockRelease(atomix_shared->lock);
    return v;
}

void extend_lease(int32_t partition, int64_t until_us)
{
    LWLockAcquire(atomix_shared->lock, LW_EXCLUSIVE);
    if (atomix_shared->lease_valid_until_us[partition] < until_us)
        atomix_shared->lease_valid_until_us[partition] = until_us;
    LWLockRelease(atomix_shared->lock);
}

} // namespace atomix
