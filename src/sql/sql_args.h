/*
 * sql_args.h — validating SQL arguments before anything is proposed.
 *
 * Every check throws AtomixError with a SQLSTATE and a hint, so bad input is
 * refused in the backend and never reaches the Raft log.
 */
#ifndef ATOMIX_SQL_ARGS_H
#define ATOMIX_SQL_ARGS_H

extern "C" {
#include "postgres.h"
#include "fmgr.h"
}

#include <cstdint>
#include <string>

namespace atomix {

/* A primitive's name: not NULL, not empty, at most ATOMIX_MAX_NAME_BYTES. */
std::string name_arg(FunctionCallInfo fcinfo, int argno, const char *what);
/* A map key: not NULL, at most ATOMIX_MAX_KEY_BYTES (empty is allowed). */
std::string key_arg(FunctionCallInfo fcinfo, int argno, const char *what = "key");
/* A map value (text or bytea): not NULL, at most atomix.max_value_size. */
std::string value_arg(FunctionCallInfo fcinfo, int argno);
/* A bigint that must not be NULL. */
int64_t bigint_arg(FunctionCallInfo fcinfo, int argno, const char *what);
/* An optional ttl: NULL means none; otherwise positive, in microseconds. */
bool ttl_arg(FunctionCallInfo fcinfo, int argno, int64_t *ttl_us);
/* An optional wait timeout: NULL means wait forever (returns false);
 * otherwise >= 0 (0: try once), in microseconds. */
bool timeout_arg(FunctionCallInfo fcinfo, int argno, int64_t *timeout_us);
/* A semaphore permit count: not NULL, positive. */
int32_t permits_arg(FunctionCallInfo fcinfo, int argno);

} // namespace atomix

#endif
