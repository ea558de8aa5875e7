/*
 * sql_result.h — building SQL results shared by the map, value, lock and
 * election functions.
 */
#ifndef ATOMIX_SQL_RESULT_H
#define ATOMIX_SQL_RESULT_H

extern "C" {
#include "postgres.h"
#include "fmgr.h"
}

#include "read_path.h"

namespace atomix {

/* A stored value (bytes) as text, if it is valid in the database encoding;
 * otherwise 22021 with `hint`. */
text *stored_text(bytea *raw, const char *hint);

/* A row of the function's declared composite result type. */
Datum composite_result(FunctionCallInfo fcinfo, const Datum *values, const bool *nulls);

/* atomix.entry (key, value, version, expires_at) of a found entry. */
Datum entry_result(FunctionCallInfo fcinfo, Datum key, const MapLookup &found, const char *hint);

} // namespace atomix

#endif
