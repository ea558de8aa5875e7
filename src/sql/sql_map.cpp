/*
 * sql_map.cpp — the map functions of schema atomix.
 *
 * Writes become one command routed to the partition of (map, key); map_clear
 * goes to every partition (each clears its share atomically; the call is not
 * atomic across partitions).  Reads pass the read barrier, then read the
 * local tables (read_path.h).
 */
extern "C" {
#include "postgres.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
}

#include "client.h"
#include "guc.h"
#include "pg_bridge.h"
#include "read_path.h"
#include "routing.h"
#include "shmem.h"
#include "objects.h"
#include "sql_args.h"
#include "sql_result.h"

using namespace atomix;

static int32_t partition_of(const std::string &map, const std::string &key)
{
    return (int32_t)map_partition(map, key, (uint32_t)atomix_partitions);
}

static Datum reply_bigint(FunctionCallInfo fcinfo, const Reply &r)
{
    if (r.is_null)
        PG_RETURN_NULL();
    PG_RETURN_INT64(r.value);
}

/* (map, key, value, ttl[, if_version]) → the command writing that entry */
static Command map_write(FunctionCallInfo fcinfo, Op op)
{
    Command cmd;
    cmd.op = op;
    cmd.name = name_arg(fcinfo, 0, "map name");
    cmd.key = key_arg(fcinfo, 1);
    cmd.value = value_arg(fcinfo, 2);
    if (ttl_arg(fcinfo, 3, &cmd.ttl_us))
        cmd.flags |= kFlagHasTtl;
    if (PG_NARGS() > 4 && !PG_ARGISNULL(4)) {
        cmd.flags |= kFlagHasIfVersion;
        cmd.if_version = PG_GETARG_INT64(4);
    }
    return cmd;
}

/* map_put(map, key, value text|bytea, ttl interval, if_version bigint) */
ATOMIX_SQL_FUNCTION(atomix_map_put)
{
    check_session_usable();
    Command cmd = map_write(fcinfo, Op::MapPut);
    return reply_bigint(fcinfo, submit(partition_of(cmd.name, cmd.key), cmd));
}

/* map_insert(map, key, value text|bytea, ttl interval) */
ATOMIX_SQL_FUNCTION(atomix_map_insert)
{
    check_session_usable();
    Command cmd = map_write(fcinfo, Op::MapInsert);
    return reply_bigint(fcinfo, submit(partition_of(cmd.name, cmd.key), cmd));
}

/* map_remove(map, key, if_version bigint) */
ATOMIX_SQL_FUNCTION(atomix_map_remove)
{
    check_session_usable();
    Command cmd;
    cmd.op = Op::MapRemove;
    cmd.name = name_arg(fcinfo, 0, "map name");
    cmd.key = key_arg(fcinfo, 1);
    if (!PG_ARGISNULL(2)) {
        cmd.flags |= kFlagHasIfVersion;
        cmd.if_version = PG_GETARG_INT64(2);
    }
    Reply r = submit(partition_of(cmd.name, cmd.key), cmd);
    PG_RETURN_BOOL(r.value != 0);
}

ATOMIX_SQL_FUNCTION(atomix_map_clear)
{
    check_session_usable();
    Command cmd;
    cmd.op = Op::MapClear;
    cmd.name = name_arg(fcinfo, 0, "map name");
    PG_RETURN_INT64(submit(ATOMIX_ALL_PARTITIONS, cmd).value);
}

static MapLookup lookup(FunctionCallInfo fcinfo)
{
    std::string map = name_arg(fcinfo, 0, "map name");
    std::string key = key_arg(fcinfo, 1);
    int32_t partition = partition_of(map, key);
    read_barrier(partition);
    return read_map_entry(partition, kEntryMap, map, key);
}

static const char *kBinaryHint = "It was stored as bytea; read it with atomix.map_get_bytea().";

ATOMIX_SQL_FUNCTION(atomix_map_get)
{
    check_session_usable();
    MapLookup found = lookup(fcinfo);
    if (!found.found)
        PG_RETURN_NULL();
    PG_RETURN_TEXT_P(stored_text(found.value, kBinaryHint));
}

ATOMIX_SQL_FUNCTION(atomix_map_get_bytea)
{
    check_session_usable();
    MapLookup found = lookup(fcinfo);
    if (!found.found)
        PG_RETURN_NULL();
    PG_RETURN_BYTEA_P(found.value);
}

/* map_get_entry(map, key) → atomix.entry (key, value, version, expires_at) */
ATOMIX_SQL_FUNCTION(atomix_map_get_entry)
{
    check_session_usable();
    MapLookup found = lookup(fcinfo);
    if (!found.found)
        PG_RETURN_NULL();
    return entry_result(fcinfo, PG_GETARG_DATUM(1), found, kBinaryHint);
}

ATOMIX_SQL_FUNCTION(atomix_map_entries)
{
    check_session_usable();
    std::string map = name_arg(fcinfo, 0, "map name");
    read_barrier(ATOMIX_ALL_PARTITIONS);
    read_map_entries(fcinfo, map, true);
    return (Datum)0;
}

ATOMIX_SQL_FUNCTION(atomix_map_size)
{
    check_session_usable();
    std::string map = name_arg(fcinfo, 0, "map name");
    read_barrier(ATOMIX_ALL_PARTITIONS);
    PG_RETURN_INT64(read_map_size(kEntryMap, map));
}
