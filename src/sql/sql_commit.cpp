/*
 * sql_commit.cpp — atomix.map_commit(): all-or-nothing writes to keys of
 * one partition.
 */
extern "C" {
#include "postgres.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/snapmgr.h"
}

#include <vector>

#include "client.h"
#include "guc.h"
#include "size_limits.h"
#include "objects.h"
#include "pg_bridge.h"
#include "routing.h"
#include "shmem.h"
#include "sql_args.h"

using namespace atomix;

/* One row per element of ops, in order; shape errors come from Postgres
 * itself (jsonb_to_record), ours are checked below. */
static const char *kOpsQuery =
    "SELECT jsonb_typeof(e), x.op, x.key, x.value, x.if_version, "
    "       extract(epoch FROM x.ttl) * 1000000, "
    "       (SELECT string_agg(k, ', ') FROM jsonb_object_keys(CASE WHEN jsonb_typeof(e) = "
    "'object' THEN e ELSE '{}' END) k WHERE k NOT IN ('op', 'key', 'value', 'if_version', "
    "'ttl')) "
    "FROM jsonb_array_elements($1) WITH ORDINALITY AS a(e, n) "
    "LEFT JOIN LATERAL jsonb_to_record(CASE WHEN jsonb_typeof(e) = 'object' THEN e END) "
    "  AS x(op text, key text, value text, if_version bigint, ttl interval) ON true "
    "ORDER BY n";

struct RawOp {
    std::string type;
    bool op_null = true, key_null = true, value_null = true, if_null = true, ttl_null = true;
    std::string op, key, value, unknown;
    int64_t if_version = 0;
    double ttl_us = 0;
};

/* One row as the query returned it, copied out of SPI into the caller's
 * memory: plain data, so that no C++ object lives where a Postgres error
 * can longjmp (the conversion to RawOp happens after the guard). */
struct OpRow {
    text *columns[5]; /* type, op, key, value, unknown fields; NULL when SQL NULL */
    bool if_null, ttl_null;
    int64 if_version;
    double ttl_us;
};

static std::string as_string(const text *t)
{
    return t ? std::string(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)) : std::string();
}

static void read_ops_rows(Datum ops, std::vector<RawOp> &out);

static std::vector<RawOp> read_ops(Datum ops)
{
    std::vector<RawOp> out;
    bool is_array = false;
    pg_guard([&] {
        Jsonb *jb = DatumGetJsonbP(ops);
        is_array = JB_ROOT_IS_ARRAY(jb) && !JB_ROOT_IS_SCALAR(jb);
    });
    if (!is_array)
        throw AtomixError(ERRCODE_INVALID_PARAMETER_VALUE, "ops must be a JSON array",
                          "Pass [{\"op\": \"put\", \"key\": ..., \"value\": ...}, "
                          "{\"op\": \"remove\", \"key\": ...}].");
    try {
        read_ops_rows(ops, out);
    } catch (const PgError &e) {
        /* a field of the wrong type: say which shape is expected */
        throw AtomixError(e.edata()->sqlerrcode, std::string("ops: ") + e.edata()->message,
                          "Each op is {\"op\": \"put\"|\"remove\", \"key\": text, \"value\": text, "
                          "\"if_version\": bigint, \"ttl\": interval text such as \"10s\"}.");
    }
    return out;
}

static void read_ops_rows(Datum ops, std::vector<RawOp> &out)
{
    static const int kTextColumns[5] = {1, 2, 3, 4, 7};
    OpRow *rows = NULL;
    uint64 n = 0;
    MemoryContext caller = CurrentMemoryContext;
    pg_guard([&] {
        SPI_connect();
        Oid types[1] = {JSONBOID};
        Datum args[1] = {ops};
        SPI_execute_with_args(kOpsQuery, 1, types, args, NULL, true, 0);
        n = SPI_processed;
        rows = (OpRow *)MemoryContextAllocZero(caller, sizeof(OpRow) * (n > 0 ? n : 1));
        for (uint64 i = 0; i < n; i++) {
            HeapTuple t = SPI_tuptable->vals[i];
            TupleDesc d = SPI_tuptable->tupdesc;
            bool isnull;
            for (int c = 0; c < 5; c++) {
                Datum v = SPI_getbinval(t, d, kTextColumns[c], &isnull);
                if (!isnull) {
                    MemoryContext spi = MemoryContextSwitchTo(caller);
                    rows[i].columns[c] = DatumGetTextPCopy(v);
                    MemoryContextSwitchTo(spi);
                }
            }
            Datum iv = SPI_getbinval(t, d, 5, &rows[i].if_null);
            if (!rows[i].if_null)
                rows[i].if_version = DatumGetInt64(iv);
            Datum tv = SPI_getbinval(t, d, 6, &rows[i].ttl_null);
            if (!rows[i].ttl_null)
                rows[i].ttl_us = DatumGetFloat8(DirectFunctionCall1(numeric_float8, tv));
        }
        SPI_finish();
    });
    for (uint64 i = 0; i < n; i++) {
        const OpRow &row = rows[i];
        RawOp r;
        r.type = as_string(row.columns[0]);
        r.op_null = row.columns[1] == NULL;
        r.op = as_string(row.columns[1]);
        r.key_null = row.columns[2] == NULL;
        r.key = as_string(row.columns[2]);
        r.value_null = row.columns[3] == NULL;
        r.value = as_string(row.columns[3]);
        r.unknown = as_string(row.columns[4]);
        r.if_null = row.if_null;
        r.if_version = row.if_version;
        r.ttl_null = row.ttl_null;
        r.ttl_us = row.ttl_us;
        out.push_back(std::move(r));
    }
}

[[noreturn]] static void bad_op(size_t i, const std::string &what)
{
    throw AtomixError(ERRCODE_INVALID_PARAMETER_VALUE,
                      "ops[" + std::to_string(i) + "]: " + what,
                      "Each op is {\"op\": \"put\", \"key\": k, \"value\": v[, \"if_version\": n]"
                      "[, \"ttl\": \"10s\"]} or {\"op\": \"remove\", \"key\": k[, \"if_version\": n]}.");
}

/* map_commit(map, ops jsonb) → the commit's version, NULL if an if_version
 * did not match (nothing applied) */
ATOMIX_SQL_FUNCTION(atomix_map_commit)
{
    check_session_usable();
    std::string map = name_arg(fcinfo, 0, "map name");
    if (PG_ARGISNULL(1))
        throw AtomixError(ERRCODE_NULL_VALUE_NOT_ALLOWED, "ops must not be NULL",
                          "Pass a JSON array of operations.");
    std::vector<RawOp> raw = read_ops(PG_GETARG_DATUM(1));
    if (raw.empty())
        throw AtomixError(ERRCODE_INVALID_PARAMETER_VALUE, "ops must not be empty",
                          "Pass at least one operation.");

    std::vector<MapCommitOp> ops;
    int32_t partition = -1;
    std::string first_key;
    size_t total = 0;
    for (size_t i = 0; i < raw.size(); i++) {
        const RawOp &r = raw[i];
        if (r.type != "object")
            bad_op(i, "must be a JSON object, not " + r.type);
        if (!r.unknown.empty())
            bad_op(i, "unknown field(s) " + r.unknown);
        if (r.op_null || (r.op != "put" && r.op != "remove"))
            bad_op(i, "\"op\" must be \"put\" or \"remove\"");
        if (r.key_null)
            bad_op(i, "\"key\" is missing");
        if (r.key.size() > ATOMIX_MAX_KEY_BYTES)
            throw AtomixError(ERRCODE_NAME_TOO_LONG,
                              "ops[" + std::to_string(i) + "]: key is too long (" +
                                  std::to_string(r.key.size()) + " bytes)",
                              "Map keys are limited to " + std::to_string(ATOMIX_MAX_KEY_BYTES) +
                                  " bytes.");
        MapCommitOp op;
        op.remove = r.op == "remove";
        op.key = r.key;
        if (!op.remove) {
            if (r.value_null)
                bad_op(i, "a put needs a non-null \"value\"");
            if (r.value.size() > (size_t)atomix_max_value_size)
                throw AtomixError(ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                                  "ops[" + std::to_string(i) + "]: value is too large",
                                  "atomix.max_value_size is " +
                                      std::to_string(atomix_max_value_size) + " bytes.");
            op.value = r.value;
            if (!r.ttl_null) {
                if (r.ttl_us <= 0)
                    bad_op(i, "\"ttl\" must be greater than zero");
                op.ttl_us = r.ttl_us > 4.0e18 ? (int64_t)4e18 : (int64_t)r.ttl_us;
            }
        } else if (!r.value_null || !r.ttl_null) {
            bad_op(i, "a remove takes no \"value\" or \"ttl\"");
        }
        op.has_if_version = !r.if_null;
        op.if_version = r.if_version;
        total += op.key.size() + op.value.size() + 32;

        int32_t p = (int32_t)map_partition(map, op.key, (uint32_t)atomix_partitions);
        if (partition < 0) {
            partition = p;
            first_key = op.key;
        } else if (p != partition) {
            throw AtomixError(ERRCODE_FEATURE_NOT_SUPPORTED,
                              "keys \"" + first_key + "\" and \"" + op.key +
                                  "\" live in different partitions",
                              "map_commit is atomic within one partition.  Give related keys the "
                              "same hash tag, e.g. \"{order-17}:lines\" and \"{order-17}:total\".");
        }
        ops.push_back(std::move(op));
    }
    if (total > (size_t)atomix_max_value_size + 64 * 1024)
        throw AtomixError(ERRCODE_PROGRAM_LIMIT_EXCEEDED, "ops are too large in total",
                          "Keep one commit under atomix.max_value_size.");

    Command cmd;
    cmd.op = Op::MapCommit;
    cmd.name = map;
    encode_commit_ops(ops, cmd.value);
    Reply r = submit(partition, cmd);
    if (r.is_null)
        PG_RETURN_NULL();
    PG_RETURN_INT64(r.value);
}
