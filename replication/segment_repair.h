/*
 * segment_repair.h — makes raft_uv 0.15 able to load a log it wrote itself.
 *
 * raft_uv preallocates each open segment (open-N) at the segment size and
 * writes batches into it until the next batch does not fit.  Batches are
 * multiples of 8 bytes, so a full segment can end with exactly 8 zero bytes.
 * If the node stops before raft_uv closed that segment (renamed it to
 * first-last), its next start loads it as an open segment, reads the 8-byte
 * checksum preamble of a "next batch" in those zeros, fails to read the entry
 * count, and its error path frees memory twice: the raft worker aborts
 * ("double free or corruption") at every start, for good (test/chaos, seed
 * 4177: a node crashed under write load and never came back).
 *
 * Before a group starts, trim_full_open_segments() cuts such trailing zeros
 * — fewer than a batch preamble (16 bytes) after the last whole batch — off
 * every open segment.  raft_uv then sees the last batch end at the end of
 * the file, exactly as for a segment filled to the last byte.  Nothing but
 * zero bytes that cannot hold a batch is removed, whatever the file holds.
 *
 * Postgres-free; tested in test/unit/test_segment_repair.cpp against
 * raft_uv's own loader.
 */
#ifndef ATOMIX_SEGMENT_REPAIR_H
#define ATOMIX_SEGMENT_REPAIR_H

#include <string>
#include <vector>

namespace atomix {

/* Trims the open segments of the raft_uv log in `dir` that raft_uv 0.15
 * cannot load; returns their names.  Throws std::runtime_error when a file
 * cannot be read or trimmed. */
std::vector<std::string> trim_full_open_segments(const std::string &dir);

/* Where the trailing zeros to cut start in one open segment's content, or
 * `len` when nothing needs cutting (exposed for the unit test). */
size_t open_segment_trim_point(const unsigned char *data, size_t len);

} // namespace atomix

#endif
