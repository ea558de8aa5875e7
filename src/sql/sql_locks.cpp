/*
 * sql_locks.cpp — locks, semaphores and session_id() of schema atomix.
 *
 * Acquires carry the backend's session (session.h) and wait inside the
 * partition, first come first served: the worker answers when a later
 * entry grants them or their timeout passes.  Cancel and statement_timeout
 * abandon the wait; the worker then removes the waiter (worker.h).
 */
extern "C" {
#include "postgres.h"
#include "utils/timestamp.h"
}

#include "client.h"
#include "clock.h"
#include "guc.h"
#include "objects.h"
#include "pg_bridge.h"
#include "read_path.h"
#include "routing.h"
#include "session.h"
#include "shmem.h"
#include "sql_args.h"
#include "sql_result.h"

using namespace atomix;

static int32_t partition_of(const std::string &name, char kind)
{
    return (int32_t)named_partition(name, kind, (uint32_t)atomix_partitions);
}

ATOMIX_SQL_FUNCTION(atomix_session_id)
{
    check_session_usable();
    uint64_t id = current_session_id();
    if (id == 0)
        PG_RETURN_NULL();
    PG_RETURN_INT64((int64)id);
}

/* The earliest of the vouching deadlines of the partitions the session
 * touched: past it the node no longer answers for anything the session
 * holds (docs/coordination.md, "When a token can be trusted"). */
ATOMIX_SQL_FUNCTION(atomix_session_valid_until)
{
    check_session_usable();
    uint64_t id = current_session_id();
    if (id == 0)
        PG_RETURN_NULL();
    int64_t until = session_valid_until_all();
    if (until == 0)
        PG_RETURN_NULL();
    PG_RETURN_TIMESTAMPTZ(until - kUnixToPgEpochUs);
}

/* ---- locks ---- */

static Datum acquire_lock(FunctionCallInfo fcinfo, bool wait)
{
    check_session_usable();
    Command cmd;
    cmd.op = Op::LockAcquire;
    cmd.name = name_arg(fcinfo, 0, "lock name");
    cmd.arg1 = wait ? 1 : 0;
    if (wait && timeout_arg(fcinfo, 1, &cmd.ttl_us))
        cmd.flags |= kFlagHasTtl;
    int32_t p = partition_of(cmd.name, kKindLock);
    attach_session(cmd, p, true);
    Reply r = submit_in_session(p, cmd);
    if (r.is_null)
        PG_RETURN_NULL();
    PG_RETURN_INT64(r.value);
}

ATOMIX_SQL_FUNCTION(atomix_lock_acquire) { return acquire_lock(fcinfo, true); }

ATOMIX_SQL_FUNCTION(atomix_lock_try_acquire) { return acquire_lock(fcinfo, false); }

ATOMIX_SQL_FUNCTION(atomix_lock_release)
{
    check_session_usable();
    Command cmd;
    cmd.op = Op::LockRelease;
    cmd.name = name_arg(fcinfo, 0, "lock name");
    int32_t p = partition_of(cmd.name, kKindLock);
    attach_session(cmd, p, false);
    if (cmd.session == 0)
        PG_RETURN_BOOL(false); /* no session: holds nothing */
    PG_RETURN_BOOL(submit_in_session(p, cmd).value != 0);
}

ATOMIX_SQL_FUNCTION(atomix_lock_holder)
{
    check_session_usable();
    std::string name = name_arg(fcinfo, 0, "lock name");
    int32_t p = partition_of(name, kKindLock);
    read_barrier(p);
    std::string blob;
    if (!read_object(p, kKindLock, name, &blob))
        PG_RETURN_NULL();
    LockState lock = decode_lock(blob);
    if (lock.holder == 0)
        PG_RETURN_NULL();
    Datum values[4] = {Int64GetDatum(lock.token), Int64GetDatum((int64)lock.holder),
                       Int32GetDatum((int32)session_node(lock.holder)),
                       TimestampTzGetDatum(lock.since_us - kUnixToPgEpochUs)};
    bool nulls[4] = {false, false, false, false};
    return composite_result(fcinfo, values, nulls);
}

/* ---- semaphores ---- */

static std::string semaphore_name(FunctionCallInfo fcinfo)
{
    return name_arg(fcinfo, 0, "semaphore name");
}

[[noreturn]] static void no_such_semaphore(const std::string &name)
{
    throw AtomixError(ERRCODE_UNDEFINED_OBJECT, "semaphore \"" + name + "\" does not exist",
                      "Create it first with atomix.semaphore_create(name, permits).");
}

ATOMIX_SQL_FUNCTION(atomix_semaphore_create)
{
    check_session_usable();
    Command cmd;
    cmd.op = Op::SemaphoreCreate;
    cmd.name = semaphore_name(fcinfo);
    cmd.arg1 = permits_arg(fcinfo, 1);
    PG_RETURN_BOOL(submit(partition_of(cmd.name, kKindSemaphore), cmd).value != 0);
}

ATOMIX_SQL_FUNCTION(atomix_semaphore_acquire)
{
    check_session_usable();
    Command cmd;
    cmd.op = Op::SemaphoreAcquire;
    cmd.name = semaphore_name(fcinfo);
    cmd.arg1 = permits_arg(fcinfo, 1);
    cmd.arg2 = 1; /* wait */
    if (timeout_arg(fcinfo, 2, &cmd.ttl_us))
        cmd.flags |= kFlagHasTtl;
    int32_t p = partition_of(cmd.name, kKindSemaphore);
    attach_session(cmd, p, true);
    Reply r = submit_in_session(p, cmd);
    if (r.code == REPLY_NOT_FOUND)
        no_such_semaphore(cmd.name);
    if (r.code == REPLY_INVALID)
        throw AtomixError(ERRCODE_INVALID_PARAMETER_VALUE,
                          "cannot acquire " + std::to_string(cmd.arg1) + " permits of semaphore \"" +
                              cmd.name + "\", which has " + std::to_string(r.value),
                          "Ask for at most as many permits as the semaphore was created with.");
    PG_RETURN_BOOL(r.value != 0);
}

ATOMIX_SQL_FUNCTION(atomix_semaphore_release)
{
    check_session_usable();
    Command cmd;
    cmd.op = Op::SemaphoreRelease;
    cmd.name = semaphore_name(fcinfo);
    cmd.arg1 = permits_arg(fcinfo, 1);
    int32_t p = partition_of(cmd.name, kKindSemaphore);
    attach_session(cmd, p, false);
    Reply r = cmd.session != 0 ? submit_in_session(p, cmd) : submit(p, cmd);
    if (r.code == REPLY_NOT_FOUND)
        no_such_semaphore(cmd.name);
    PG_RETURN_BOOL(r.value != 0);
}

ATOMIX_SQL_FUNCTION(atomix_semaphore_available)
{
    check_session_usable();
    std::string name = semaphore_name(fcinfo);
    int32_t p = partition_of(name, kKindSemaphore);
    read_barrier(p);
    std::string blob;
    if (!read_object(p, kKindSemaphore, name, &blob))
        PG_RETURN_NULL();
    PG_RETURN_INT32(decode_semaphore(blob).available);
}
