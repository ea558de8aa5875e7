/*
 * pg_storage.cpp — SPI statements over atomix.*_p<N> tables (see
 * pg_storage.h).  Every SPI call goes through pg_guard, so a Postgres error
 * surfaces as a C++ exception at the state machine's callback boundary.
 */
extern "C" {
#include "postgres.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
}

#include "clock.h"
#include "pg_bridge.h"
#include "pg_storage.h"

namespace atomix {


static TimestampTz to_timestamptz(int64_t unix_us) { return unix_us - kUnixToPgEpochUs; }
static int64_t to_unix_us(TimestampTz ts) { return ts + kUnixToPgEpochUs; }

struct StmtDef {
    const char *sql; /* %1$d is the partition number */
    int nargs;
    Oid types[6];
};

static const StmtDef kStmts[] = {
    /* META_GET */
    /* *: read by column name, so a schema from before atomix 0.5 (no origins
     * column; served only on one node, see Worker::wait_for_extension) reads too */
    {"SELECT * FROM atomix.partition_state WHERE partition_id = %1$d", 0, {}},
    /* META_PUT */
    {"UPDATE atomix.partition_state SET applied_index = $1, log_time = $2, origins = $3 "
     "WHERE partition_id = %1$d",
     3,
     {INT8OID, TIMESTAMPTZOID, BYTEAOID}},
    /* META_PUT_BEFORE_ORIGINS: a schema from before atomix 0.5 */
    {"UPDATE atomix.partition_state SET applied_index = $1, log_time = $2 WHERE partition_id = %1$d",
     2,
     {INT8OID, TIMESTAMPTZOID}},
    /* MAP_GET */
    {"SELECT value, version, expires_at FROM atomix.map_data_p%1$d "
     "WHERE kind = $3 AND map = $1 AND key = $2",
     3,
     {TEXTOID, TEXTOID, CHAROID}},
    /* MAP_PUT */
    {"INSERT INTO atomix.map_data_p%1$d (partition_id, kind, map, key, value, version, expires_at) "
     "VALUES (%1$d, $6, $1, $2, $3, $4, $5) ON CONFLICT (kind, map, key) DO UPDATE SET "
     "value = EXCLUDED.value, version = EXCLUDED.version, expires_at = EXCLUDED.expires_at",
     6,
     {TEXTOID, TEXTOID, BYTEAOID, INT8OID, TIMESTAMPTZOID, CHAROID}},
    /* MAP_REMOVE */
    {"DELETE FROM atomix.map_data_p%1$d WHERE kind = $3 AND map = $1 AND key = $2",
     3,
     {TEXTOID, TEXTOID, CHAROID}},
    /* MAP_CLEAR */
    {"DELETE FROM atomix.map_data_p%1$d WHERE kind = $2 AND map = $1", 2, {TEXTOID, CHAROID}},
    /* MAP_PURGE */
    {"DELETE FROM atomix.map_data_p%1$d WHERE expires_at <= $1 RETURNING kind, map, key",
     1,
     {TIMESTAMPTZOID}},
    /* MAP_NEXT_EXPIRY */
    {"SELECT min(expires_at) FROM atomix.map_data_p%1$d WHERE expires_at IS NOT NULL", 0, {}},
    /* COUNTER_GET */
    {"SELECT value FROM atomix.counter_data_p%1$d WHERE name = $1", 1, {TEXTOID}},
    /* COUNTER_PUT */
    {"INSERT INTO atomix.counter_data_p%1$d (partition_id, name, value) VALUES (%1$d, $1, $2) "
     "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
     2,
     {TEXTOID, INT8OID}},
    /* MAP_ALL */
    {"SELECT map, key, value, version, expires_at, kind FROM atomix.map_data_p%1$d "
     "ORDER BY kind, map, key",
     0,
     {}},
    /* COUNTER_ALL */
    {"SELECT name, value FROM atomix.counter_data_p%1$d ORDER BY name", 0, {}},
    /* CLEAR_MAP */
    {"DELETE FROM atomix.map_data_p%1$d", 0, {}},
    /* CLEAR_COUNTERS */
    {"DELETE FROM atomix.counter_data_p%1$d", 0, {}},
    /* OBJECT_GET */
    {"SELECT state, deadline FROM atomix.object_data_p%1$d WHERE kind = $1 AND name = $2",
     2,
     {CHAROID, TEXTOID}},
    /* OBJECT_PUT */
    {"INSERT INTO atomix.object_data_p%1$d (partition_id, kind, name, state, deadline) "
     "VALUES (%1$d, $1, $2, $3, $4) ON CONFLICT (kind, name) DO UPDATE SET "
     "state = EXCLUDED.state, deadline = EXCLUDED.deadline",
     4,
     {CHAROID, TEXTOID, BYTEAOID, INT8OID}},
    /* OBJECT_REMOVE */
    {"DELETE FROM atomix.object_data_p%1$d WHERE kind = $1 AND name = $2", 2, {CHAROID, TEXTOID}},
    /* OBJECTS_DUE: a fixed order (byte order of names), the same on every replica */
    {"SELECT kind, name FROM atomix.object_data_p%1$d WHERE deadline <= $1 "
     "ORDER BY deadline, kind, name COLLATE \"C\"",
     1,
     {INT8OID}},
    /* OBJECT_NEXT_DEADLINE */
    {"SELECT min(deadline) FROM atomix.object_data_p%1$d WHERE deadline IS NOT NULL", 0, {}},
    /* OBJECT_ALL */
    {"SELECT kind, name, state, deadline FROM atomix.object_data_p%1$d "
     "ORDER BY kind, name COLLATE \"C\"",
     0,
     {}},
    /* CLEAR_OBJECTS */
    {"DELETE FROM atomix.object_data_p%1$d", 0, {}},
    /* OBJECT_NAMES */
    {"SELECT name FROM atomix.object_data_p%1$d WHERE kind = $1 ORDER BY name COLLATE \"C\"",
     1,
     {CHAROID}},
};

static_assert(sizeof(kStmts) / sizeof(kStmts[0]) == 23, "one definition per statement");

SPIPlanPtr PgStorage::plan(Stmt stmt)
{
    if (plans_[stmt] == NULL) {
        const StmtDef &def = kStmts[stmt];
        SPIPlanPtr prepared = NULL;
        int32_t partition = partition_;
        pg_guard([&] {
            char *sql = psprintf(def.sql, (int)partition);
            prepared = SPI_prepare(sql, def.nargs, const_cast<Oid *>(def.types));
            if (prepared == NULL)
                elog(ERROR, "atomix: could not prepare \"%s\": %s", sql,
                     SPI_result_code_string(SPI_result));
            SPI_keepplan(prepared);
            pfree(sql);
        });
        plans_[stmt] = prepared;
    }
    return plans_[stmt];
}

/* Every statement runs as non-read-only SPI: that advances the command
 * counter and takes a fresh snapshot, so a read sees the writes applied
 * earlier in the same turn's transaction (two increments of one counter
 * packed in one turn must not both read the old value). */
uint64 PgStorage::exec(Stmt stmt, Datum *args, const char *nulls)
{
    SPIPlanPtr p = plan(stmt);
    uint64 processed = 0;
    pg_guard([&] {
        /* results are copied out right after each statement */
        SPI_freetuptable(SPI_tuptable);
        int rc = SPI_execute_plan(p, args, nulls, false, 0);
        if (rc < 0)
            elog(ERROR, "atomix: partition statement failed: %s", SPI_result_code_string(rc));
        processed = SPI_processed;
    });
    return processed;
}

static Datum text_datum(const std::string &s)
{
    Datum d = 0;
    pg_guard([&] { d = PointerGetDatum(cstring_to_text_with_len(s.data(), (int)s.size())); });
    return d;
}

/* Copies a text/bytea column of the current SPI result row. */
static std::string column_bytes(int row, int col)
{
    const char *data = NULL;
    size_t len = 0;
    pg_guard([&] {
        bool isnull;
        Datum d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, &isnull);
        struct varlena *v = PG_DETOAST_DATUM_PACKED(d);
        data = VARDATA_ANY(v);
        len = VARSIZE_ANY_EXHDR(v);
    });
    return std::string(data, len);
}

static std::optional<int64_t> column_int64(int row, int col, bool timestamp)
{
    bool isnull = true;
    Datum d = 0;
    pg_guard([&] { d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, &isnull); });
    if (isnull)
        return std::nullopt;
    int64_t v = DatumGetInt64(d);
    return timestamp ? to_unix_us(v) : v;
}

PartitionMeta PgStorage::load_meta()
{
    if (!meta_loaded_) {
        if (exec(META_GET, NULL, NULL) != 1)
            throw AtomixError(ERRCODE_DATA_CORRUPTED,
                              "atomix: partition " + std::to_string(partition_) +
                                  " has no row in atomix.partition_state");
        int index_col = 0, time_col = 0, origins_col = 0;
        pg_guard([&] {
            index_col = SPI_fnumber(SPI_tuptable->tupdesc, "applied_index");
            time_col = SPI_fnumber(SPI_tuptable->tupdesc, "log_time");
            origins_col = SPI_fnumber(SPI_tuptable->tupdesc, "origins");
        });
        meta_.applied_index = (uint64_t)column_int64(0, index_col, false).value_or(0);
        meta_.log_time_us = column_int64(0, time_col, true).value_or(0);
        has_origins_ = origins_col > 0;
        meta_.origins = has_origins_ ? column_bytes(0, origins_col) : std::string();
        meta_loaded_ = true;
    }
    return meta_;
}

void PgStorage::store_meta(const PartitionMeta &meta)
{
    meta_ = meta;
    meta_loaded_ = true;
    meta_dirty_ = true;
}

static Datum bytea_datum(const std::string &s);

/* One row per partition in atomix.partition_state, all written through one
 * writer. */
static TableWriter meta_writer("partition_state");

void PgStorage::flush_meta()
{
    if (!meta_dirty_)
        return;
    if (meta_writer.usable()) {
        /* every live column in order; a table from before atomix 0.5 has no
         * origins column and takes the first three */
        Datum row[4] = {Int32GetDatum(partition_), Int64GetDatum((int64)meta_.applied_index),
                        TimestampTzGetDatum(to_timestamptz(meta_.log_time_us)), bytea_datum(meta_.origins)};
        bool nulls[4] = {false, false, false, false};
        meta_writer.upsert(row, nulls);
        meta_dirty_ = false;
        return;
    }
    Datum args[3] = {Int64GetDatum((int64)meta_.applied_index),
                     TimestampTzGetDatum(to_timestamptz(meta_.log_time_us)), bytea_datum(meta_.origins)};
    exec(has_origins_ ? META_PUT : META_PUT_BEFORE_ORIGINS, args, NULL);
    meta_dirty_ = false;
}

static Datum bytea_datum(const std::string &s)
{
    Datum d = 0;
    pg_guard([&] {
        bytea *b = (bytea *)palloc(VARHDRSZ + s.size());
        SET_VARSIZE(b, VARHDRSZ + s.size());
        memcpy(VARDATA(b), s.data(), s.size());
        d = PointerGetDatum(b);
    });
    return d;
}

static char column_char(int row, int col)
{
    bool isnull = true;
    Datum d = 0;
    pg_guard([&] { d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, &isnull); });
    return isnull ? 0 : DatumGetChar(d);
}

std::optional<MapRow> PgStorage::map_get(char kind, const std::string &map, const std::string &key)
{
    Datum args[3] = {text_datum(map), text_datum(key), CharGetDatum(kind)};
    if (exec(MAP_GET, args, NULL) == 0)
        return std::nullopt;
    MapRow row;
    row.value = column_bytes(0, 1);
    row.version = column_int64(0, 2, false).value_or(0);
    row.expires_at_us = column_int64(0, 3, true);
    return row;
}

void PgStorage::map_put(char kind, const std::string &map, const std::string &key, const MapRow &row)
{
    if (map_writer_.usable()) {
        Datum cols[7] = {Int32GetDatum(partition_), CharGetDatum(kind), text_datum(map), text_datum(key),
                         bytea_datum(row.value), Int64GetDatum(row.version),
                         TimestampTzGetDatum(to_timestamptz(row.expires_at_us.value_or(0)))};
        bool nulls[7] = {false, false, false, false, false, false, !row.expires_at_us};
        map_writer_.upsert(cols, nulls);
        return;
    }
    Datum args[6] = {text_datum(map), text_datum(key), bytea_datum(row.value),
                     Int64GetDatum(row.version),
                     TimestampTzGetDatum(to_timestamptz(row.expires_at_us.value_or(0))),
                     CharGetDatum(kind)};
    char nulls[7] = "      ";
    nulls[4] = row.expires_at_us ? ' ' : 'n';
    exec(MAP_PUT, args, nulls);
}

bool PgStorage::map_remove(char kind, const std::string &map, const std::string &key)
{
    Datum args[3] = {text_datum(map), text_datum(key), CharGetDatum(kind)};
    return exec(MAP_REMOVE, args, NULL) > 0;
}

int64_t PgStorage::map_clear(char kind, const std::string &map)
{
    Datum args[2] = {text_datum(map), CharGetDatum(kind)};
    return (int64_t)exec(MAP_CLEAR, args, NULL);
}

std::vector<EntryKey> PgStorage::map_purge_expired(int64_t now_us)
{
    Datum args[1] = {TimestampTzGetDatum(to_timestamptz(now_us))};
    uint64 n = exec(MAP_PURGE, args, NULL);
    std::vector<EntryKey> out;
    for (uint64 i = 0; i < n; i++)
        out.push_back(EntryKey{column_char((int)i, 1), column_bytes((int)i, 2), column_bytes((int)i, 3)});
    return out;
}

std::optional<ObjectRow> PgStorage::object_get(char kind, const std::string &name)
{
    Datum args[2] = {CharGetDatum(kind), text_datum(name)};
    if (exec(OBJECT_GET, args, NULL) == 0)
        return std::nullopt;
    return ObjectRow{column_bytes(0, 1), column_int64(0, 2, false)};
}

void PgStorage::object_put(char kind, const std::string &name, const ObjectRow &row)
{
    if (object_writer_.usable()) {
        Datum cols[5] = {Int32GetDatum(partition_), CharGetDatum(kind), text_datum(name),
                         bytea_datum(row.state), Int64GetDatum(row.deadline_us.value_or(0))};
        bool nulls[5] = {false, false, false, false, !row.deadline_us};
        object_writer_.upsert(cols, nulls);
        return;
    }
    Datum args[4] = {CharGetDatum(kind), text_datum(name), bytea_datum(row.state),
                     Int64GetDatum(row.deadline_us.value_or(0))};
    char nulls[5] = "    ";
    nulls[3] = row.deadline_us ? ' ' : 'n';
    exec(OBJECT_PUT, args, nulls);
}

void PgStorage::object_remove(char kind, const std::string &name)
{
    Datum args[2] = {CharGetDatum(kind), text_datum(name)};
    exec(OBJECT_REMOVE, args, NULL);
}

std::vector<ObjectKey> PgStorage::objects_due(int64_t now_us)
{
    Datum args[1] = {Int64GetDatum(now_us)};
    uint64 n = exec(OBJECTS_DUE, args, NULL);
    std::vector<ObjectKey> out;
    for (uint64 i = 0; i < n; i++)
        out.push_back(ObjectKey{column_char((int)i, 1), column_bytes((int)i, 2)});
    return out;
}

std::optional<int64_t> PgStorage::object_next_deadline()
{
    exec(OBJECT_NEXT_DEADLINE, NULL, NULL);
    return column_int64(0, 1, false);
}

std::vector<std::string> PgStorage::object_names(char kind)
{
    Datum args[1] = {CharGetDatum(kind)};
    uint64 n = exec(OBJECT_NAMES, args, NULL);
    std::vector<std::string> out;
    for (uint64 i = 0; i < n; i++)
        out.push_back(column_bytes((int)i, 1));
    return out;
}

void PgStorage::for_each_object(const std::function<void(const ObjectKey &, const ObjectRow &)> &fn)
{
    uint64 n = exec(OBJECT_ALL, NULL, NULL);
    SPITupleTable *table = SPI_tuptable;
    for (uint64 i = 0; i < n; i++) {
        SPI_tuptable = table;
        ObjectKey k{column_char((int)i, 1), column_bytes((int)i, 2)};
        ObjectRow row{column_bytes((int)i, 3), column_int64((int)i, 4, false)};
        fn(k, row);
    }
}

std::optional<int64_t> PgStorage::map_next_expiry()
{
    exec(MAP_NEXT_EXPIRY, NULL, NULL);
    return column_int64(0, 1, true);
}

std::optional<int64_t> PgStorage::counter_get(const std::string &name)
{
    Datum args[1] = {text_datum(name)};
    if (exec(COUNTER_GET, args, NULL) == 0)
        return std::nullopt;
    return column_int64(0, 1, false);
}

void PgStorage::counter_put(const std::string &name, int64_t value)
{
    if (counter_writer_.usable()) {
        Datum cols[3] = {Int32GetDatum(partition_), text_datum(name), Int64GetDatum(value)};
        bool nulls[3] = {false, false, false};
        counter_writer_.upsert(cols, nulls);
        return;
    }
    Datum args[2] = {text_datum(name), Int64GetDatum(value)};
    exec(COUNTER_PUT, args, NULL);
}

void PgStorage::for_each_map_entry(const std::function<void(const MapEntry &)> &fn)
{
    uint64 n = exec(MAP_ALL, NULL, NULL);
    /* keep the result: fn must not run SPI statements of its own */
    SPITupleTable *table = SPI_tuptable;
    for (uint64 i = 0; i < n; i++) {
        SPI_tuptable = table;
        MapEntry e;
        e.kind = column_char((int)i, 6);
        e.map = column_bytes((int)i, 1);
        e.key = column_bytes((int)i, 2);
        e.row.value = column_bytes((int)i, 3);
        e.row.version = column_int64((int)i, 4, false).value_or(0);
        e.row.expires_at_us = column_int64((int)i, 5, true);
        fn(e);
    }
}

void PgStorage::for_each_counter(const std::function<void(const CounterRow &)> &fn)
{
    uint64 n = exec(COUNTER_ALL, NULL, NULL);
    SPITupleTable *table = SPI_tuptable;
    for (uint64 i = 0; i < n; i++) {
        SPI_tuptable = table;
        CounterRow c;
        c.name = column_bytes((int)i, 1);
        c.value = column_int64((int)i, 2, false).value_or(0);
        fn(c);
    }
}

void PgStorage::clear_all()
{
    exec(CLEAR_MAP, NULL, NULL);
    exec(CLEAR_COUNTERS, NULL, NULL);
    exec(CLEAR_OBJECTS, NULL, NULL);
}

} // namespace atomix
