/*
 * client.h — the backend side of a request: checks that atomix can serve
 * this session, hands one encoded command to the raft worker through the
 * backend's shared-memory slot, and sleeps on its latch until the reply.
 */
#ifndef ATOMIX_CLIENT_H
#define ATOMIX_CLIENT_H

#include <cstdint>
#include <string>

#include "codec.h"

namespace atomix {

struct Reply {
    bool is_null = false;
    int64_t value = 0;
    /* REPLY_OK or REPLY_NULL, or one the caller explains itself:
     * REPLY_NOT_FOUND, REPLY_INVALID, REPLY_CONFLICT, REPLY_NOT_OWNER */
    int code = 0;
};

/* Throws AtomixError unless atomix was preloaded and this session is in
 * atomix.database. */
void check_session_usable();

/* Proposes cmd to `partition` (or ATOMIX_ALL_PARTITIONS, once per partition,
 * values summed) and waits for it to be committed and applied.  Throws
 * AtomixError/PgError on failure, including cancel and statement_timeout. */
Reply submit(int32_t partition, const Command &cmd);

/* Waits until everything committed in `partition` (or all partitions) before
 * this call is applied locally: the linearizable read barrier.  Does nothing
 * under atomix.read_consistency = sequential. */
void read_barrier(int32_t partition);

} // namespace atomix

#endif
