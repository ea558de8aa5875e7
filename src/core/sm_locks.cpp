/*
 * sm_locks.cpp — locks and semaphores in the partition state machine.
 *
 * Waiters queue in the object's row, first come first served.  A waiting
 * acquire answers Pending; the apply that later grants it (a release, a
 * closed session, a cancelled waiter ahead) or times it out (a deadline on
 * log time) settles the same request id, on every replica alike, and the
 * node whose backend waits wakes it.
 *
 * A lock's token is the version of the command that granted it, bumped past
 * the previous token when several grants share one entry: tokens strictly
 * increase per lock for as long as the partition lives.
 */
#include <algorithm>
#include <limits>

#include "state_machine.h"

#include "core_only.h" /* last: nothing above brought in Postgres */

namespace atomix {

static std::optional<int64_t> earliest_deadline(const std::vector<Waiter> &waiters)
{
    std::optional<int64_t> best;
    for (const Waiter &w : waiters)
        if (w.deadline_us != 0 && (!best || w.deadline_us < *best))
            best = w.deadline_us;
    return best;
}

static bool waits(const std::vector<Waiter> &waiters, uint64_t session)
{
    return std::any_of(waiters.begin(), waiters.end(),
                       [&](const Waiter &w) { return w.session == session; });
}

/* Takes the waiters `pred` selects out of the line (the rest keep their
 * order) and returns them. */
template <typename Pred> static std::vector<Waiter> take_waiters(std::vector<Waiter> &line, Pred pred)
{
    std::vector<Waiter> taken, kept;
    for (const Waiter &w : line)
        (pred(w) ? taken : kept).push_back(w);
    line = std::move(kept);
    return taken;
}

static auto due_by(int64_t now_us)
{
    return [now_us](const Waiter &w) { return w.deadline_us != 0 && w.deadline_us <= now_us; };
}

static auto of_session(uint64_t session)
{
    return [session](const Waiter &w) { return w.session == session; };
}

static bool holds_permits(const SemaphoreState &sem, uint64_t session)
{
    return std::any_of(sem.holders.begin(), sem.holders.end(),
                       [&](const SemaphoreHolder &h) { return h.session == session; });
}

static int64_t wait_deadline(const Command &cmd, const int64_t now_us)
{
    if (!cmd.has_ttl())
        return 0;
    int64_t limit = std::numeric_limits<int64_t>::max() - now_us;
    return now_us + std::min(cmd.ttl_us, limit);
}

/* ---- locks ---- */

void StateMachine::store_lock(const std::string &name, const LockState &lock, const Context &ctx)
{
    /* A free lock nobody waits for is forgotten, unless a token was bumped
     * past this command's version (a later grant in this entry could then
     * repeat it). */
    if (lock.holder == 0 && lock.waiters.empty() && lock.token < ctx.version()) {
        storage_.object_remove(kKindLock, name);
        return;
    }
    std::optional<int64_t> deadline = earliest_deadline(lock.waiters);
    if (deadline)
        note_deadline(*deadline);
    storage_.object_put(kKindLock, name, ObjectRow{encode_lock(lock), deadline});
}

/* Gives a free lock to the first waiter, if any. */
void StateMachine::grant_lock(const std::string &name, LockState &lock, const Context &ctx)
{
    for (const Waiter &w : take_waiters(lock.waiters, [&](const Waiter &x) { return closing(x.session); }))
        settle(w.request_id, ResultCode::SessionExpired, 0);
    if (lock.holder != 0 || lock.waiters.empty())
        return;
    Waiter w = lock.waiters.front();
    lock.waiters.erase(lock.waiters.begin());
    lock.holder = w.session;
    lock.token = std::max(ctx.version(), lock.token + 1);
    lock.since_us = ctx.now_us;
    lock.grant_request = w.request_id;
    settle(w.request_id, ResultCode::Ok, lock.token);
    emit("lock", name, std::string(), "acquired", lock.token);
}

void StateMachine::release_lock(const std::string &name, LockState &lock, const Context &ctx)
{
    uint64_t holder = lock.holder;
    lock.holder = 0;
    lock.grant_request = 0;
    emit("lock", name, std::string(), "released", lock.token);
    if (!waits(lock.waiters, holder))
        drop_session_ref(holder, kKindLock, name);
    grant_lock(name, lock, ctx);
}

CommandResult StateMachine::lock_acquire(const Command &cmd, const Context &ctx)
{
    CommandResult r;
    r.request_id = cmd.request_id;
    r.code = open_session(cmd, ctx);
    if (r.code != ResultCode::Ok)
        return r;
    std::optional<ObjectRow> row = storage_.object_get(kKindLock, cmd.name);
    LockState lock = row ? decode_lock(row->state) : LockState{};
    if (lock.holder == cmd.session) {
        r.value = lock.token; /* not reentrant: the holder gets its token back */
        return r;
    }
    if (lock.holder == 0 && lock.waiters.empty()) {
        lock.holder = cmd.session;
        lock.token = std::max(ctx.version(), lock.token + 1);
        lock.since_us = ctx.now_us;
        lock.grant_request = cmd.request_id;
        add_session_ref(cmd.session, kKindLock, cmd.name);
        store_lock(cmd.name, lock, ctx);
        emit("lock", cmd.name, std::string(), "acquired", lock.token);
        r.value = lock.token;
        return r;
    }
    if (cmd.arg1 == 0 || (cmd.has_ttl() && cmd.ttl_us <= 0)) {
        r.code = ResultCode::Null; /* try-acquire, or no time to wait */
        return r;
    }
    lock.waiters.push_back(Waiter{cmd.request_id, cmd.session, wait_deadline(cmd, ctx.now_us), 1});
    add_session_ref(cmd.session, kKindLock, cmd.name);
    store_lock(cmd.name, lock, ctx);
    r.code = ResultCode::Pending;
    return r;
}

CommandResult StateMachine::lock_release(const Command &cmd, const Context &ctx)
{
    CommandResult r;
    r.request_id = cmd.request_id;
    std::optional<ObjectRow> row = storage_.object_get(kKindLock, cmd.name);
    if (!row || cmd.session == 0)
        return r; /* value 0: not held by this session */
    LockState lock = decode_lock(row->state);
    if (lock.holder != cmd.session)
        return r;
    release_lock(cmd.name, lock, ctx);
    store_lock(cmd.name, lock, ctx);
    r.value = 1;
    return r;
}

void StateMachine::timeout_lock(const std::string &name, const Context &ctx)
{
    std::optional<ObjectRow> row = storage_.object_get(kKindLock, name);
    if (!row)
        return;
    LockState lock = decode_lock(row->state);
    for (const Waiter &w : take_waiters(lock.waiters, due_by(ctx.now_us))) {
        settle(w.request_id, ResultCode::Null, 0);
        if (lock.holder != w.session && !waits(lock.waiters, w.session))
            drop_session_ref(w.session, kKindLock, name);
    }
    store_lock(name, lock, ctx);
}

/* A closing session lets go of the lock and leaves its queue. */
void StateMachine::lock_leave_session(const std::string &name, uint64_t session,
                                      const Context &ctx, ResultCode waiters_get)
{
    std::optional<ObjectRow> row = storage_.object_get(kKindLock, name);
    if (!row)
        return;
    LockState lock = decode_lock(row->state);
    for (const Waiter &w : take_waiters(lock.waiters, of_session(session)))
        settle(w.request_id, waiters_get, 0);
    if (lock.holder == session) {
        lock.holder = 0;
        lock.grant_request = 0;
        emit("lock", name, std::string(), "released", lock.token);
        grant_lock(name, lock, ctx);
    }
    store_lock(name, lock, ctx);
}

/* A backend stopped waiting (cancel, statement_timeout): remove its waiter,
 * or give back what was granted to that very request meanwhile. */
CommandResult StateMachine::wait_cancel(const Command &cmd, const Context &ctx)
{
    CommandResult r;
    r.request_id = cmd.request_id;
    uint64_t waiting = static_cast<uint64_t>(cmd.arg1);
    char kind = cmd.key.empty() ? 0 : cmd.key[0];
    std::optional<ObjectRow> row = storage_.object_get(kind, cmd.name);
    bool found = false;
    if (!row) {
        remember_cancel(waiting, kind, ctx);
        return r;
    }
    auto is_it = [&](const Waiter &w) { return w.request_id == waiting && w.session == cmd.session; };
    if (kind == kKindLock) {
        LockState lock = decode_lock(row->state);
        auto it = std::find_if(lock.waiters.begin(), lock.waiters.end(), is_it);
        if (it != lock.waiters.end()) {
            lock.waiters.erase(it);
            if (lock.holder != cmd.session && !waits(lock.waiters, cmd.session))
                drop_session_ref(cmd.session, kKindLock, cmd.name);
            found = true;
        } else if (lock.holder == cmd.session && lock.grant_request == waiting) {
            release_lock(cmd.name, lock, ctx);
            found = true;
        }
        store_lock(cmd.name, lock, ctx);
    } else if (kind == kKindSemaphore) {
        SemaphoreState sem = decode_semaphore(row->state);
        auto it = std::find_if(sem.waiters.begin(), sem.waiters.end(), is_it);
        if (it != sem.waiters.end()) {
            sem.waiters.erase(it);
            found = true;
        } else {
            /* granted meanwhile: give the permits it got back */
            for (SemaphoreHolder &h : sem.holders)
                if (h.session == cmd.session && h.last_request == waiting && h.last_permits > 0) {
                    int32_t n = std::min(h.permits, h.last_permits);
                    h.permits -= n;
                    h.last_permits = 0;
                    sem.available += n;
                    found = true;
                }
            sem.holders.erase(std::remove_if(sem.holders.begin(), sem.holders.end(),
                                             [](const SemaphoreHolder &h) { return h.permits == 0; }),
                              sem.holders.end());
        }
        if (!holds_permits(sem, cmd.session) && !waits(sem.waiters, cmd.session))
            drop_session_ref(cmd.session, kKindSemaphore, cmd.name);
        grant_permits(cmd.name, sem);
        store_semaphore(cmd.name, sem);
    }
    if (!found)
        remember_cancel(waiting, kind, ctx);
    r.value = found ? 1 : 0;
    return r;
}

/* The acquire being cancelled has not arrived (yet): on a cluster a leader
 * change can reorder them.  Answer it now, as "not granted", under its own
 * request id: when it arrives it is a request already applied, and apply()
 * answers it from this record instead of queueing it. */
void StateMachine::remember_cancel(uint64_t waiting, char kind, const Context &ctx)
{
    if (!track_origins_ || waiting == 0)
        return;
    ResultCode code = kind == kKindLock ? ResultCode::Null : ResultCode::Ok;
    record_outcome(waiting, code, 0, ctx.now_us);
}

/* ---- semaphores ---- */

void StateMachine::store_semaphore(const std::string &name, const SemaphoreState &sem)
{
    std::optional<int64_t> deadline = earliest_deadline(sem.waiters);
    if (deadline)
        note_deadline(*deadline);
    storage_.object_put(kKindSemaphore, name, ObjectRow{encode_semaphore(sem), deadline});
}

static SemaphoreHolder &holder_of(SemaphoreState &sem, uint64_t session)
{
    for (SemaphoreHolder &h : sem.holders)
        if (h.session == session)
            return h;
    sem.holders.push_back(SemaphoreHolder{session, 0, 0, 0});
    return sem.holders.back();
}

/* Serves the line from its head while permits last: a large request at the
 * head is not overtaken by smaller ones behind it. */
void StateMachine::grant_permits(const std::string &name, SemaphoreState &sem)
{
    (void)name;
    for (const Waiter &w : take_waiters(sem.waiters, [&](const Waiter &x) { return closing(x.session); }))
        settle(w.request_id, ResultCode::SessionExpired, 0);
    while (!sem.waiters.empty() && sem.waiters.front().permits <= sem.available) {
        Waiter w = sem.waiters.front();
        sem.waiters.erase(sem.waiters.begin());
        sem.available -= w.permits;
        SemaphoreHolder &h = holder_of(sem, w.session);
        h.permits += w.permits;
        h.last_request = w.request_id;
        h.last_permits = w.permits;
        settle(w.request_id, ResultCode::Ok, 1);
    }
}

CommandResult StateMachine::semaphore_create(const Command &cmd)
{
    CommandResult r;
    r.request_id = cmd.request_id;
    if (storage_.object_get(kKindSemaphore, cmd.name))
        return r; /* value 0: exists, unchanged */
    SemaphoreState sem;
    sem.permits = static_cast<int32_t>(cmd.arg1);
    sem.available = sem.permits;
    store_semaphore(cmd.name, sem);
    r.value = 1;
    return r;
}

CommandResult StateMachine::semaphore_acquire(const Command &cmd, const Context &ctx)
{
    CommandResult r;
    r.request_id = cmd.request_id;
    std::optional<ObjectRow> row = storage_.object_get(kKindSemaphore, cmd.name);
    if (!row) {
        r.code = ResultCode::NotFound;
        return r;
    }
    SemaphoreState sem = decode_semaphore(row->state);
    int32_t want = static_cast<int32_t>(cmd.arg1);
    if (want <= 0 || want > sem.permits) {
        r.code = ResultCode::Invalid;
        r.value = sem.permits;
        return r;
    }
    r.code = open_session(cmd, ctx);
    if (r.code != ResultCode::Ok)
        return r;
    /* opening may have closed the node's previous life, which gave back its
     * permits and answered its waiters here: read the semaphore again */
    sem = decode_semaphore(storage_.object_get(kKindSemaphore, cmd.name)->state);
    if (sem.waiters.empty() && sem.available >= want) {
        sem.available -= want;
        SemaphoreHolder &h = holder_of(sem, cmd.session);
        h.permits += want;
        h.last_request = cmd.request_id;
        h.last_permits = want;
        add_session_ref(cmd.session, kKindSemaphore, cmd.name);
        store_semaphore(cmd.name, sem);
        r.value = 1;
        return r;
    }
    if (cmd.arg2 == 0 || (cmd.has_ttl() && cmd.ttl_us <= 0))
        return r; /* value 0: false */
    sem.waiters.push_back(Waiter{cmd.request_id, cmd.session, wait_deadline(cmd, ctx.now_us), want});
    add_session_ref(cmd.session, kKindSemaphore, cmd.name);
    store_semaphore(cmd.name, sem);
    r.code = ResultCode::Pending;
    return r;
}

CommandResult StateMachine::semaphore_release(const Command &cmd, const Context &ctx)
{
    (void)ctx;
    CommandResult r;
    r.request_id = cmd.request_id;
    std::optional<ObjectRow> row = storage_.object_get(kKindSemaphore, cmd.name);
    if (!row) {
        r.code = ResultCode::NotFound;
        return r;
    }
    SemaphoreState sem = decode_semaphore(row->state);
    int32_t n = static_cast<int32_t>(cmd.arg1);
    auto it = std::find_if(sem.holders.begin(), sem.holders.end(),
                           [&](const SemaphoreHolder &h) { return h.session == cmd.session; });
    if (cmd.session == 0 || n <= 0 || it == sem.holders.end() || it->permits < n)
        return r; /* value 0: holds fewer; nothing released */
    it->permits -= n;
    it->last_permits = 0;
    sem.available += n;
    if (it->permits == 0) {
        sem.holders.erase(it);
        if (!waits(sem.waiters, cmd.session))
            drop_session_ref(cmd.session, kKindSemaphore, cmd.name);
    }
    grant_permits(cmd.name, sem);
    store_semaphore(cmd.name, sem);
    r.value = 1;
    return r;
}

void StateMachine::timeout_semaphore(const std::string &name, const Context &ctx)
{
    std::optional<ObjectRow> row = storage_.object_get(kKindSemaphore, name);
    if (!row)
        return;
    SemaphoreState sem = decode_semaphore(row->state);
    for (const Waiter &w : take_waiters(sem.waiters, due_by(ctx.now_us))) {
        settle(w.request_id, ResultCode::Ok, 0); /* false */
        if (!holds_permits(sem, w.session) && !waits(sem.waiters, w.session))
            drop_session_ref(w.session, kKindSemaphore, name);
    }
    /* the head may have been a large request blocking smaller ones */
    grant_permits(name, sem);
    store_semaphore(name, sem);
}

void StateMachine::semaphore_leave_session(const std::string &name, uint64_t session,
                                           ResultCode waiters_get)
{
    std::optional<ObjectRow> row = storage_.object_get(kKindSemaphore, name);
    if (!row)
        return;
    SemaphoreState sem = decode_semaphore(row->state);
    for (const Waiter &w : take_waiters(sem.waiters, of_session(session)))
        settle(w.request_id, waiters_get, 0);
    for (const SemaphoreHolder &h : sem.holders)
        if (h.session == session)
            sem.available += h.permits;
    sem.holders.erase(std::remove_if(sem.holders.begin(), sem.holders.end(),
                                     [&](const SemaphoreHolder &h) { return h.session == session; }),
                      sem.holders.end());
    grant_permits(name, sem);
    store_semaphore(name, sem);
}

} // namespace atomix
