/*
 * sql_counter.cpp — the counter functions of schema atomix.
 *
 * A counter that was never set reads as 0, like an Atomix AtomicCounter.
 */
extern "C" {
#include "postgres.h"
#include "fmgr.h"
}

#include "client.h"
#include "guc.h"
#include "pg_bridge.h"
#include "read_path.h"
#include "routing.h"
#include "sql_args.h"

using namespace atomix;

static int32_t partition_of(const std::string &name)
{
    return (int32_t)counter_partition(name, (uint32_t)atomix_partitions);
}

ATOMIX_SQL_FUNCTION(atomix_counter_get)
{
    check_session_usable();
    std::string name = name_arg(fcinfo, 0, "counter name");
    int32_t partition = partition_of(name);
    read_barrier(partition);
    int64_t value = 0;
    (void)read_counter(partition, name, &value);
    PG_RETURN_INT64(value);
}

/* counter_set(name, value) → the previous value */
ATOMIX_SQL_FUNCTION(atomix_counter_set)
{
    check_session_usable();
    Command cmd;
    cmd.op = Op::CounterSet;
    cmd.name = name_arg(fcinfo, 0, "counter name");
    cmd.arg1 = bigint_arg(fcinfo, 1, "value");
    PG_RETURN_INT64(submit(partition_of(cmd.name), cmd).value);
}

/* counter_incr(name, delta) → the new value */
ATOMIX_SQL_FUNCTION(atomix_counter_incr)
{
    check_session_usable();
    Command cmd;
    cmd.op = Op::CounterIncr;
    cmd.name = name_arg(fcinfo, 0, "counter name");
    cmd.arg1 = bigint_arg(fcinfo, 1, "delta");
    PG_RETURN_INT64(submit(partition_of(cmd.name), cmd).value);
}

/* counter_cas(name, expected, new) → whether it was set */
ATOMIX_SQL_FUNCTION(atomix_counter_cas)
{
    check_session_usable();
    Command cmd;
    cmd.op = Op::CounterCas;
    cmd.name = name_arg(fcinfo, 0, "counter name");
    cmd.arg1 = bigint_arg(fcinfo, 1, "expected value");
    cmd.arg2 = bigint_arg(fcinfo, 2, "new value");
    PG_RETURN_BOOL(submit(partition_of(cmd.name), cmd).value != 0);
}
