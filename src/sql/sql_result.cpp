/*
 * sql_result.cpp — see sql_result.h.
 */
extern "C" {
#include "postgres.h"
#include "access/htup_details.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/timestamp.h"
}

#include "pg_bridge.h"
#include "sql_result.h"

namespace atomix {

text *stored_text(bytea *raw, const char *hint)
{
    bool valid = false;
    pg_guard([&] {
        valid = pg_verify_mbstr(GetDatabaseEncoding(), VARDATA_ANY(raw), VARSIZE_ANY_EXHDR(raw),
                                true);
    });
    if (!valid)
        throw AtomixError(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
                          "the value is not valid text in the database encoding", hint);
    return (text *)raw; /* same varlena layout */
}

Datum composite_result(FunctionCallInfo fcinfo, const Datum *values, const bool *nulls)
{
    Datum result = 0;
    pg_guard([&] {
        TupleDesc desc;
        if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
            elog(ERROR, "atomix: function must return a composite type");
        desc = BlessTupleDesc(desc);
        result = HeapTupleGetDatum(
            heap_form_tuple(desc, const_cast<Datum *>(values), const_cast<bool *>(nulls)));
    });
    return result;
}

Datum entry_result(FunctionCallInfo fcinfo, Datum key, const MapLookup &found, const char *hint)
{
    Datum values[4] = {key, PointerGetDatum(stored_text(found.value, hint)),
                       Int64GetDatum(found.version), TimestampTzGetDatum(found.expires_at)};
    bool nulls[4] = {false, false, false, !found.has_expiry};
    return composite_result(fcinfo, values, nulls);
}

} // namespace atomix
