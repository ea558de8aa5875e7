/*
 * core_only.h — the last include of every .cpp file in src/core/: fails the
 * compilation if anything included before it brought in a Postgres header.
 *
 * src/core/ is the Postgres-free core (codec, routing, the state machine,
 * object formats, the in-memory storage, ...): the unit tests and the
 * simulation build it with no server at all.  Two rules keep it that way:
 *   - the build compiles the core's .cpp files, and each of its headers on
 *     its own, without Postgres' include directories (top-level Makefile,
 *     "The Postgres-free core"): `#include "postgres.h"` is "No such file";
 *   - this header, included after everything else in those compilations,
 *     catches a Postgres header reached some other way (a full path, an
 *     include directory added by hand) by the macros Postgres defines: any
 *     use of its headers starts with postgres.h or postgres_fe.h, which
 *     include c.h, which includes pg_config.h.
 *
 * Core headers themselves do not include it: the SQL front end, the worker
 * and the FDW include them after postgres.h.
 */
/* No include guard: each inclusion checks what came before it. */
#if defined(POSTGRES_H) || defined(POSTGRES_FE_H) || defined(C_H) || defined(PG_VERSION_NUM)
#error "a Postgres header was included in src/core/, which must stay Postgres-free (see src/core/core_only.h)"
#endif
