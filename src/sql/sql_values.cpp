/*
 * sql_values.cpp — values and sets of schema atomix.
 *
 * Both are keyed entries in the same partition tables as maps (kind 'v' and
 * 's'): a value lives in the partition of its name, a set is spread over
 * all partitions by (set, element).
 */
extern "C" {
#include "postgres.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
}

#include "client.h"
#include "guc.h"
#include "objects.h"
#include "pg_bridge.h"
#include "read_path.h"
#include "routing.h"
#include "shmem.h"
#include "sql_args.h"
#include "sql_result.h"

using namespace atomix;

static int32_t value_partition(const std::string &name)
{
    return (int32_t)named_partition(name, kEntryValue, (uint32_t)atomix_partitions);
}

static int32_t element_partition(const std::string &set, const std::string &element)
{
    return (int32_t)set_partition(set, element, (uint32_t)atomix_partitions);
}

/* value_set(name, value, if_version, ttl) → version, NULL on mismatch */
ATOMIX_SQL_FUNCTION(atomix_value_set)
{
    check_session_usable();
    Command cmd;
    cmd.op = Op::ValueSet;
    cmd.name = name_arg(fcinfo, 0, "value name");
    cmd.value = value_arg(fcinfo, 1);
    if (!PG_ARGISNULL(2)) {
        cmd.flags |= kFlagHasIfVersion;
        cmd.if_version = PG_GETARG_INT64(2);
    }
    if (ttl_arg(fcinfo, 3, &cmd.ttl_us))
        cmd.flags |= kFlagHasTtl;
    Reply r = submit(value_partition(cmd.name), cmd);
    if (r.is_null)
        PG_RETURN_NULL();
    PG_RETURN_INT64(r.value);
}

static MapLookup lookup_value(FunctionCallInfo fcinfo)
{
    std::string name = name_arg(fcinfo, 0, "value name");
    int32_t p = value_partition(name);
    read_barrier(p);
    return read_map_entry(p, kEntryValue, name, std::string());
}

/* value_set takes text only, so this would mean the database encoding changed */
static const char *kEncodingHint = "The value was stored under another database encoding.";

ATOMIX_SQL_FUNCTION(atomix_value_get)
{
    check_session_usable();
    MapLookup found = lookup_value(fcinfo);
    if (!found.found)
        PG_RETURN_NULL();
    PG_RETURN_TEXT_P(stored_text(found.value, kEncodingHint));
}

ATOMIX_SQL_FUNCTION(atomix_value_get_entry)
{
    check_session_usable();
    MapLookup found = lookup_value(fcinfo);
    if (!found.found)
        PG_RETURN_NULL();
    return entry_result(fcinfo, PG_GETARG_DATUM(0), found, kEncodingHint);
}

ATOMIX_SQL_FUNCTION(atomix_value_delete)
{
    check_session_usable();
    Command cmd;
    cmd.op = Op::ValueDelete;
    cmd.name = name_arg(fcinfo, 0, "value name");
    if (!PG_ARGISNULL(1)) {
        cmd.flags |= kFlagHasIfVersion;
        cmd.if_version = PG_GETARG_INT64(1);
    }
    PG_RETURN_BOOL(submit(value_partition(cmd.name), cmd).value != 0);
}

/* ---- sets ---- */

static Command element_command(FunctionCallInfo fcinfo, Op op)
{
    Command cmd;
    cmd.op = op;
    cmd.name = name_arg(fcinfo, 0, "set name");
    if (PG_ARGISNULL(1))
        throw AtomixError(ERRCODE_NULL_VALUE_NOT_ALLOWED, "element must not be NULL",
                          "Pass a non-NULL element.");
    cmd.key = key_arg(fcinfo, 1, "element");
    return cmd;
}

ATOMIX_SQL_FUNCTION(atomix_set_add)
{
    check_session_usable();
    Command cmd = element_command(fcinfo, Op::SetAdd);
    if (ttl_arg(fcinfo, 2, &cmd.ttl_us))
        cmd.flags |= kFlagHasTtl;
    PG_RETURN_BOOL(submit(element_partition(cmd.name, cmd.key), cmd).value != 0);
}

ATOMIX_SQL_FUNCTION(atomix_set_remove)
{
    check_session_usable();
    Command cmd = element_command(fcinfo, Op::SetRemove);
    PG_RETURN_BOOL(submit(element_partition(cmd.name, cmd.key), cmd).value != 0);
}

ATOMIX_SQL_FUNCTION(atomix_set_contains)
{
    check_session_usable();
    Command cmd = element_command(fcinfo, Op::SetAdd);
    int32_t p = element_partition(cmd.name, cmd.key);
    read_barrier(p);
    PG_RETURN_BOOL(read_map_entry(p, kEntrySet, cmd.name, cmd.key).found);
}

ATOMIX_SQL_FUNCTION(atomix_set_members)
{
    check_session_usable();
    std::string set = name_arg(fcinfo, 0, "set name");
    read_barrier(ATOMIX_ALL_PARTITIONS);
    read_set_members(fcinfo, set);
    return (Datum)0;
}

ATOMIX_SQL_FUNCTION(atomix_set_size)
{
    check_session_usable();
    std::string set = name_arg(fcinfo, 0, "set name");
    read_barrier(ATOMIX_ALL_PARTITIONS);
    PG_RETURN_INT64(read_map_size(kEntrySet, set));
}
