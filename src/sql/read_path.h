/*
 * read_path.h — reading partition tables from a backend.
 *
 * Reads never go through Raft themselves: after the read barrier (client.h)
 * the backend reads its local partition tables with SPI under the latest
 * snapshot — not the caller's transaction snapshot, because atomix state is
 * not part of the caller's transaction (like nextval), and a REPEATABLE READ
 * snapshot would otherwise hide writes acknowledged after it was taken.
 */
#ifndef ATOMIX_READ_PATH_H
#define ATOMIX_READ_PATH_H

extern "C" {
#include "postgres.h"
#include "fmgr.h"
#include "utils/timestamp.h"
}

#include <cstdint>
#include <string>

namespace atomix {

/* Fetches the entry as a tuple of atomix.entry-compatible columns
 * (key text, value bytea, version bigint, expires_at timestamptz) into
 * palloc'd Datums; returns false when absent. */
struct MapLookup {
    bool found = false;
    bytea *value = nullptr; /* palloc'd in the caller's context */
    int64_t version = 0;
    bool has_expiry = false;
    TimestampTz expires_at = 0;
};

/* kind: kEntryMap, kEntryValue or kEntrySet (objects.h) */
MapLookup read_map_entry(int32_t partition, char kind, const std::string &map, const std::string &key);
int64_t read_map_size(char kind, const std::string &map);
bool read_counter(int32_t partition, const std::string &name, int64_t *value);

/* Materializes every live entry of `map` (ordered by key) into the SRF's
 * tuplestore; as_text decodes values as text in the database encoding. */
void read_map_entries(FunctionCallInfo fcinfo, const std::string &map, bool as_text);

/* Materializes the members of `set`, sorted. */
void read_set_members(FunctionCallInfo fcinfo, const std::string &set);

/* The state blob of a coordination object (objects.h); false when absent. */
bool read_object(int32_t partition, char kind, const std::string &name, std::string *state);

} // namespace atomix

#endif
