/*
 * local_transport.cpp — see local_transport.h.
 */
#include "local_transport.h"

#include <cstring>

namespace atomix {

struct LocalTransport {
    uv_loop_t *loop;
    uv_timer_t close_timer; /* defers the close callback to the next loop turn */
    raft_uv_transport_close_cb close_cb;
};

static int local_init(struct raft_uv_transport *, raft_id, const char *) { return 0; }

static int local_listen(struct raft_uv_transport *, raft_uv_accept_cb) { return 0; }

static int local_connect(struct raft_uv_transport *t, struct raft_uv_connect *, raft_id id,
                         const char *address, raft_uv_connect_cb)
{
    snprintf(t->errmsg, sizeof(t->errmsg), "node %llu at %s is not reachable: no peers",
             (unsigned long long)id, address);
    return RAFT_NOCONNECTION;
}

static void local_closed(uv_handle_t *handle)
{
    struct raft_uv_transport *t = static_cast<struct raft_uv_transport *>(handle->data);
    LocalTransport *impl = static_cast<LocalTransport *>(t->impl);
    raft_uv_transport_close_cb cb = impl->close_cb;
    delete impl;
    t->impl = nullptr;
    if (cb)
        cb(t);
}

static void local_close_now(uv_timer_t *timer)
{
    uv_close(reinterpret_cast<uv_handle_t *>(timer), local_closed);
}

/* c-raft expects the close callback after close() returned, as a real
 * transport would deliver it: fire it from the loop, not from here. */
static void local_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    LocalTransport *impl = static_cast<LocalTransport *>(t->impl);
    impl->close_cb = cb;
    uv_timer_start(&impl->close_timer, local_close_now, 0, 0);
}

void local_transport_init(struct raft_uv_transport *t, uv_loop_t *loop)
{
    memset(t, 0, sizeof(*t));
    LocalTransport *impl = new LocalTransport();
    impl->loop = loop;
    uv_timer_init(loop, &impl->close_timer);
    impl->close_timer.data = t;
    t->impl = impl;
    t->init = local_init;
    t->listen = local_listen;
    t->connect = local_connect;
    t->close = local_close;
}

} // namespace atomix
