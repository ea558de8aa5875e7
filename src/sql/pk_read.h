/*
 * pk_read.h — a backend reads one row of a partition table by its primary
 * key without SQL.
 *
 * map_get, counter_get and the coordination getters read one row by its
 * whole primary key.  Through SPI each such read re-checked its cached plan,
 * locked and opened the table and its indexes through the executor, and
 * built and tore down an executor state: more than the index probe itself.
 * Here the table and its primary key index are opened directly and probed
 * once, under the same latest snapshot the SQL read used (read_path.h), with
 * the same checks: the caller must hold SELECT on the leaf table (42501
 * otherwise), and the locks are kept to the end of the caller's
 * transaction.  A table with row-level security enabled is left to SQL
 * (pk_read returns false), since only the planner applies policies.
 */
#ifndef ATOMIX_PK_READ_H
#define ATOMIX_PK_READ_H

extern "C" {
#include "postgres.h"
#include "access/tupdesc.h"
}

#include <type_traits>

namespace atomix {

/* One primary key column: its name and the value to match. */
struct PkColumn {
    const char *name;
    Datum value;
};

using PkRowFn = void (*)(void *take, TupleDesc desc, const Datum *values, const bool *nulls);
bool pk_read_impl(const char *table, const PkColumn *key, int nkeys, PkRowFn fn, void *take);

/* Looks up the row of atomix.<table> whose primary key columns equal
 * `key` (every column of the key, any order).  Calls take(desc, values,
 * nulls) with the row's values (tts_values/tts_isnull, by attribute number
 * - 1) if there is one.  Returns false, having read nothing, when the table
 * must be read with SQL (row-level security); raises ERROR as SQL would (no
 * table, no privilege).  Must run inside pg_guard, in a transaction; like
 * pg_guard it passes `take` on as a pointer, so nothing with a destructor
 * lives in the frames an error jumps over (pg_bridge.h). */
template <typename Take> inline bool pk_read(const char *table, const PkColumn *key, int nkeys, Take &&take)
{
    using T = std::remove_reference_t<Take>;
    return pk_read_impl(
        table, key, nkeys,
        [](void *t, TupleDesc desc, const Datum *values, const bool *nulls) {
            (*static_cast<T *>(t))(desc, values, nulls);
        },
        static_cast<void *>(&take));
}

} // namespace atomix

#endif
