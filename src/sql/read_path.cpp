/*
 * read_path.cpp — reads of the local partition tables (see read_path.h).
 *
 * A row read by its whole primary key (map_get, counter_get, the
 * coordination getters) is one index probe without SQL (pk_read.h); the
 * rest, and those reads when a table has row-level security, are SPI
 * queries.  Prepared plans are kept per partition for the life of the
 * backend; the plan cache revalidates them if the tables are recreated.
 */
extern "C" {
#include "postgres.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
}

#include "read_path.h"
#include "pg_bridge.h"
#include "pk_read.h"

namespace atomix {

static constexpr int kMaxPlans = 256; /* atomix.partitions upper bound */
static SPIPlanPtr map_get_plans[kMaxPlans];
static SPIPlanPtr counter_get_plans[kMaxPlans];
static SPIPlanPtr object_get_plans[kMaxPlans];
static SPIPlanPtr map_size_plan;
static SPIPlanPtr map_entries_plan;
static SPIPlanPtr set_members_plan;

/* Must run inside SPI (called from within a pg_guard). */
static const Oid kTextTextChar[3] = {TEXTOID, TEXTOID, CHAROID};
static const Oid kTextChar[2] = {TEXTOID, CHAROID};

static SPIPlanPtr cached_plan(SPIPlanPtr *slot, const char *sql, int nargs,
                              const Oid *types = kTextTextChar)
{
    if (*slot == NULL) {
        SPIPlanPtr plan = SPI_prepare(sql, nargs, const_cast<Oid *>(types));
        if (plan == NULL)
            elog(ERROR, "atomix: SPI_prepare failed for \"%s\": %s", sql,
                 SPI_result_code_string(SPI_result));
        SPI_keepplan(plan);
        *slot = plan;
    }
    return *slot;
}

/* Runs a kept plan under the latest snapshot: atomix reads see what was
 * committed up to now, whatever the caller's isolation level. */
static int run_latest(SPIPlanPtr plan, Datum *args, long limit)
{
    Snapshot snap = GetLatestSnapshot();
    return SPI_execute_snapshot(plan, args, NULL, snap, InvalidSnapshot, true, false, limit);
}

static Datum text_arg(const std::string &s)
{
    return PointerGetDatum(cstring_to_text_with_len(s.data(), (int)s.size()));
}

/* The attribute index (0-based) of `name` in a partition table's row. */
static int column(TupleDesc desc, const char *name)
{
    for (int a = 0; a < desc->natts; a++)
        if (!TupleDescAttr(desc, a)->attisdropped && strcmp(NameStr(TupleDescAttr(desc, a)->attname), name) == 0)
            return a;
    elog(ERROR, "atomix: a partition table has no column %s", name);
    return -1; /* not reached */
}

MapLookup read_map_entry(int32_t partition, char kind, const std::string &map, const std::string &key)
{
    MapLookup out;
    MemoryContext caller = CurrentMemoryContext;
    bool direct = false;
    pg_guard([&] {
        char table[NAMEDATALEN];
        snprintf(table, sizeof(table), "map_data_p%d", (int)partition);
        PkColumn key_columns[3] = {
            {"kind", CharGetDatum(kind)}, {"map", text_arg(map)}, {"key", text_arg(key)}};
        direct = pk_read(table, key_columns, 3, [&](TupleDesc desc, const Datum *values, const bool *nulls) {
            MemoryContext old = MemoryContextSwitchTo(caller);
            out.value = DatumGetByteaPCopy(values[column(desc, "value")]);
            MemoryContextSwitchTo(old);
            out.version = DatumGetInt64(values[column(desc, "version")]);
            int expires = column(desc, "expires_at");
            out.has_expiry = !nulls[expires];
            out.expires_at = nulls[expires] ? 0 : DatumGetTimestampTz(values[expires]);
            out.found = true;
        });
    });
    if (direct)
        return out;
    pg_guard([&] {
        char sql[160];
        snprintf(sql, sizeof(sql),
                 "SELECT value, version, expires_at FROM atomix.map_data_p%d "
                 "WHERE map = $1 AND key = $2 AND kind = $3",
                 (int)partition);
        Datum args[3] = {text_arg(map), text_arg(key), CharGetDatum(kind)};
        SPI_connect();
        SPIPlanPtr plan = cached_plan(&map_get_plans[partition], sql, 3);
        run_latest(plan, args, 1);
        if (SPI_processed == 1) {
            HeapTuple tuple = SPI_tuptable->vals[0];
            TupleDesc desc = SPI_tuptable->tupdesc;
            bool isnull;
            Datum value = SPI_getbinval(tuple, desc, 1, &isnull);
            MemoryContext spi = MemoryContextSwitchTo(caller);
            out.value = DatumGetByteaPCopy(value);
            MemoryContextSwitchTo(spi);
            out.version = DatumGetInt64(SPI_getbinval(tuple, desc, 2, &isnull));
            Datum expires = SPI_getbinval(tuple, desc, 3, &isnull);
            out.has_expiry = !isnull;
            out.expires_at = isnull ? 0 : DatumGetTimestampTz(expires);
            out.found = true;
        }
        SPI_finish();
    });
    return out;
}

int64_t read_map_size(char kind, const std::string &map)
{
    int64_t count = 0;
    pg_guard([&] {
        Datum args[2] = {text_arg(map), CharGetDatum(kind)};
        SPI_connect();
        SPIPlanPtr plan = cached_plan(
            &map_size_plan, "SELECT count(*) FROM atomix.map_data WHERE map = $1 AND kind = $2", 2,
            kTextChar);
        run_latest(plan, args, 1);
        bool isnull;
        count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
                                            &isnull));
        SPI_finish();
    });
    return count;
}

bool read_counter(int32_t partition, const std::string &name, int64_t *value)
{
    bool found = false;
    bool direct = false;
    pg_guard([&] {
        char table[NAMEDATALEN];
        snprintf(table, sizeof(table), "counter_data_p%d", (int)partition);
        PkColumn key_columns[1] = {{"name", text_arg(name)}};
        direct = pk_read(table, key_columns, 1, [&](TupleDesc desc, const Datum *values, const bool *) {
            *value = DatumGetInt64(values[column(desc, "value")]);
            found = true;
        });
    });
    if (direct)
        return found;
    pg_guard([&] {
        char sql[128];
        snprintf(sql, sizeof(sql), "SELECT value FROM atomix.counter_data_p%d WHERE name = $1",
                 (int)partition);
        Datum args[1] = {text_arg(name)};
        SPI_connect();
        SPIPlanPtr plan = cached_plan(&counter_get_plans[partition], sql, 1);
        run_latest(plan, args, 1);
        if (SPI_processed == 1) {
            bool isnull;
            *value = DatumGetInt64(
                SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
            found = true;
        }
        SPI_finish();
    });
    return found;
}

void read_map_entries(FunctionCallInfo fcinfo, const std::string &map, bool as_text)
{
    pg_guard([&] {
        InitMaterializedSRF(fcinfo, 0);
        ReturnSetInfo *rsinfo = (ReturnSetInfo *)fcinfo->resultinfo;
        Datum args[1] = {text_arg(map)};
        SPI_connect();
        SPIPlanPtr plan = cached_plan(&map_entries_plan,
                                      "SELECT key, value, version, expires_at "
                                      "FROM atomix.map_data WHERE map = $1 AND kind = 'm' "
                                      "ORDER BY key",
                                      1);
        run_latest(plan, args, 0);
        for (uint64 i = 0; i < SPI_processed; i++) {
            HeapTuple tuple = SPI_tuptable->vals[i];
            TupleDesc desc = SPI_tuptable->tupdesc;
            Datum values[4];
            bool nulls[4];
            for (int c = 0; c < 4; c++)
                values[c] = SPI_getbinval(tuple, desc, c + 1, &nulls[c]);
            if (as_text) {
                bytea *raw = DatumGetByteaPP(values[1]);
                /* values are stored as bytes; as text they must be valid here */
                if (!pg_verify_mbstr(GetDatabaseEncoding(), VARDATA_ANY(raw),
                                     VARSIZE_ANY_EXHDR(raw), true))
                    ereport(ERROR,
                            (errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
                             errmsg("the value of key \"%s\" is not valid text in the database "
                                    "encoding",
                                    TextDatumGetCString(values[0])),
                             errhint("It was stored as bytea; read it with "
                                     "atomix.map_get_bytea().")));
            }
            tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
        }
        SPI_finish();
    });
}

void read_set_members(FunctionCallInfo fcinfo, const std::string &set)
{
    pg_guard([&] {
        InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
        ReturnSetInfo *rsinfo = (ReturnSetInfo *)fcinfo->resultinfo;
        Datum args[1] = {text_arg(set)};
        SPI_connect();
        SPIPlanPtr plan = cached_plan(&set_members_plan,
                                      "SELECT key FROM atomix.map_data WHERE map = $1 "
                                      "AND kind = 's' ORDER BY key",
                                      1);
        run_latest(plan, args, 0);
        for (uint64 i = 0; i < SPI_processed; i++) {
            Datum values[1];
            bool nulls[1];
            values[0] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &nulls[0]);
            tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
        }
        SPI_finish();
    });
}

bool read_object(int32_t partition, char kind, const std::string &name, std::string *state)
{
    bool found = false;
    bool direct = false;
    pg_guard([&] {
        char table[NAMEDATALEN];
        snprintf(table, sizeof(table), "object_data_p%d", (int)partition);
        PkColumn key_columns[2] = {{"kind", CharGetDatum(kind)}, {"name", text_arg(name)}};
        direct = pk_read(table, key_columns, 2, [&](TupleDesc desc, const Datum *values, const bool *) {
            bytea *b = DatumGetByteaPP(values[column(desc, "state")]);
            state->assign(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b));
            found = true;
        });
    });
    if (direct)
        return found;
    pg_guard([&] {
        char sql[128];
        snprintf(sql, sizeof(sql),
                 "SELECT state FROM atomix.object_data_p%d WHERE name = $1 AND kind = $2",
                 (int)partition);
        Datum args[2] = {text_arg(name), CharGetDatum(kind)};
        SPI_connect();
        SPIPlanPtr plan = cached_plan(&object_get_plans[partition], sql, 2, kTextChar);
        run_latest(plan, args, 1);
        if (SPI_processed == 1) {
            bool isnull;
            Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
            bytea *b = DatumGetByteaPP(d);
            state->assign(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b));
            found = true;
        }
        SPI_finish();
    });
    return found;
}

} // namespace atomix
