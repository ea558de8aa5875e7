/*
 * local_transport.cpp — see local_transport.h.
 */
#include "local_transport.h"

#include <cstring>

namespace atomix {

static int local_init(struct raft_uv_transport *, raft_id, const char *) { return 0; }

static int local_listen(struct raft_uv_transport *, raft_uv_accept_cb) { return 0; }

static int local_connect(struct raft_uv_transport *t, struct raft_uv_connect *, raft_id id,
                         const char *address, raft_uv_connect_cb)
{
    snprintf(t->errmsg, sizeof(t->errmsg), "node %llu at %s is not reachable: no peers",
             (unsigned long long)id, address);
    return RAFT_NOCONNECTION;
}

static void local_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    if (cb)
        cb(t);
}

void local_transport_init(struct raft_uv_transport *t)
{
    memset(t, 0, sizeof(*t));
    t->init = local_init;
    t->listen = local_listen;
    t->connect = local_connect;
    t->close = local_close;
}

} // namespace atomix
