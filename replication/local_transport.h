/*
 * local_transport.h — the raft_uv transport of a node that has no peers.
 *
 * A one-node cluster never sends Raft messages, so this transport listens
 * nowhere and refuses every outgoing connection.  The multi-node transport
 * (one TCP port per node multiplexing every partition) replaces it; both
 * sit behind the same raft_uv_transport interface.
 */
#ifndef ATOMIX_LOCAL_TRANSPORT_H
#define ATOMIX_LOCAL_TRANSPORT_H

#include "raft_include.h"

namespace atomix {

void local_transport_init(struct raft_uv_transport *t, uv_loop_t *loop);

} // namespace atomix

#endif
