/*
 * sql_args.cpp — argument checks shared by all SQL functions.
 */
extern "C" {
#include "postgres.h"
#include "datatype/timestamp.h"
#include "utils/timestamp.h"
}

#include <cstring>

#include "guc.h"
#include "size_limits.h"
#include "pg_bridge.h"
#include "sql_args.h"

namespace atomix {

static void require_not_null(FunctionCallInfo fcinfo, int argno, const char *what)
{
    if (PG_ARGISNULL(argno))
        throw AtomixError(ERRCODE_NULL_VALUE_NOT_ALLOWED, std::string(what) + " must not be NULL",
                          std::string("Pass a non-NULL ") + what + ".");
}

static std::string varlena_arg(FunctionCallInfo fcinfo, int argno)
{
    struct varlena *v = NULL;
    Datum d = PG_GETARG_DATUM(argno);
    pg_guard([&] { v = PG_DETOAST_DATUM_PACKED(d); });
    return std::string(VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v));
}

std::string name_arg(FunctionCallInfo fcinfo, int argno, const char *what)
{
    require_not_null(fcinfo, argno, what);
    std::string s = varlena_arg(fcinfo, argno);
    if (s.empty())
        throw AtomixError(ERRCODE_INVALID_PARAMETER_VALUE, std::string(what) + " must not be empty",
                          "Every atomix primitive needs a non-empty name.");
    if (s.size() > ATOMIX_MAX_NAME_BYTES)
        throw AtomixError(ERRCODE_NAME_TOO_LONG,
                          std::string(what) + " is too long (" + std::to_string(s.size()) +
                              " bytes)",
                          "Names are limited to " + std::to_string(ATOMIX_MAX_NAME_BYTES) +
                              " bytes.");
    return s;
}

std::string key_arg(FunctionCallInfo fcinfo, int argno, const char *what)
{
    require_not_null(fcinfo, argno, what);
    std::string s = varlena_arg(fcinfo, argno);
    if (s.size() > ATOMIX_MAX_KEY_BYTES)
        throw AtomixError(ERRCODE_NAME_TOO_LONG,
                          std::string(what) + " is too long (" + std::to_string(s.size()) + " bytes)",
                          std::string(strcmp(what, "key") == 0 ? "Map keys" : "Set elements") +
                              " are limited to " + std::to_string(ATOMIX_MAX_KEY_BYTES) + " bytes.");
    return s;
}

std::string value_arg(FunctionCallInfo fcinfo, int argno)
{
    require_not_null(fcinfo, argno, "value");
    std::string s = varlena_arg(fcinfo, argno);
    if (s.size() > (size_t)atomix_max_value_size)
        throw AtomixError(ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                          "value is too large (" + std::to_string(s.size()) + " bytes)",
                          "atomix.max_value_size is " + std::to_string(atomix_max_value_size) +
                              " bytes; a superuser can raise it (up to 64MB).");
    return s;
}

int64_t bigint_arg(FunctionCallInfo fcinfo, int argno, const char *what)
{
    require_not_null(fcinfo, argno, what);
    return PG_GETARG_INT64(argno);
}

bool ttl_arg(FunctionCallInfo fcinfo, int argno, int64_t *ttl_us)
{
    if (PG_NARGS() <= argno || PG_ARGISNULL(argno))
        return false;
    Interval *iv = PG_GETARG_INTERVAL_P(argno);
    /* Same month and day lengths as extract(epoch from interval). */
    __int128 us = (__int128)iv->time + (__int128)iv->day * USECS_PER_DAY +
                  (__int128)iv->month * DAYS_PER_MONTH * USECS_PER_DAY;
    if (us <= 0)
        throw AtomixError(ERRCODE_INVALID_PARAMETER_VALUE, "ttl must be greater than zero",
                          "Pass NULL for an entry that never expires.");
    if (us > (__int128)PG_INT64_MAX / 2)
        throw AtomixError(ERRCODE_INVALID_PARAMETER_VALUE, "ttl is out of range",
                          "Pass NULL for an entry that never expires.");
    *ttl_us = (int64_t)us;
    return true;
}

bool timeout_arg(FunctionCallInfo fcinfo, int argno, int64_t *timeout_us)
{
    if (PG_NARGS() <= argno || PG_ARGISNULL(argno))
        return false;
    Interval *iv = PG_GETARG_INTERVAL_P(argno);
    __int128 us = (__int128)iv->time + (__int128)iv->day * USECS_PER_DAY +
                  (__int128)iv->month * DAYS_PER_MONTH * USECS_PER_DAY;
    if (us < 0)
        throw AtomixError(ERRCODE_INVALID_PARAMETER_VALUE, "timeout must not be negative",
                          "Pass NULL to wait until granted, or 0 to try once without waiting.");
    *timeout_us = us > (__int128)PG_INT64_MAX / 2 ? PG_INT64_MAX / 2 : (int64_t)us;
    return true;
}

int32_t permits_arg(FunctionCallInfo fcinfo, int argno)
{
    require_not_null(fcinfo, argno, "permits");
    int32_t n = PG_GETARG_INT32(argno);
    if (n <= 0)
        throw AtomixError(ERRCODE_INVALID_PARAMETER_VALUE, "permits must be greater than zero",
                          "Pass a positive number of permits.");
    return n;
}

} // namespace atomix
