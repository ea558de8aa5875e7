/*
 * fixture_support.h — what every test driving c-raft 0.15's raft_fixture
 * needs: a workaround for a bug in the fixture's own in-memory I/O.
 * Used by test_raft_fixture and test_simulation.
 */
#ifndef ATOMIX_FIXTURE_SUPPORT_H
#define ATOMIX_FIXTURE_SUPPORT_H

#include <map>

#include "append_vouching.h"

extern "C" {
#include <raft.h>
#include <raft/fixture.h>
}

namespace unit {

/* ---- workaround for a bug in c-raft 0.15's fixture I/O ----
 *
 * The fixture's in-memory raft_io (src/fixture.c, unchanged upstream) keeps
 * the log in an array that assumes entry k sits at position k-1.  Installing
 * a snapshot empties the array (truncate(1)), so on that follower a later
 * truncate(k) of conflicting entries memcpy's k-1 entries out of a shorter
 * array: a heap over-read (ASan) and garbage in the fake log.  That array is
 * only read back when a server restarts, which these tests never do, so we
 * track how many entries it really holds and clamp truncations to that. */
struct IoShim {
    int (*append)(struct raft_io *, struct raft_io_append *, const struct raft_entry[], unsigned,
                  raft_io_append_cb);
    int (*truncate)(struct raft_io *, raft_index);
    size_t stored = 0; /* entries in the fixture's array */
};
struct PendingAppend {
    IoShim *shim;
    raft_io_append_cb cb;
    unsigned n;
};
inline std::map<struct raft_io *, IoShim> io_shims;
inline std::map<struct raft_io_append *, PendingAppend> pending_appends;

inline void shim_append_cb(struct raft_io_append *req, int status)
{
    PendingAppend p = pending_appends.at(req);
    pending_appends.erase(req); /* the callback may reuse req */
    if (status == 0)
        p.shim->stored += p.n;
    p.cb(req, status);
}

inline int shim_append(struct raft_io *io, struct raft_io_append *req, const struct raft_entry entries[],
                unsigned n, raft_io_append_cb cb)
{
    IoShim &shim = io_shims.at(io);
    pending_appends[req] = PendingAppend{&shim, cb, n};
    int rv = shim.append(io, req, entries, n, shim_append_cb);
    if (rv != 0)
        pending_appends.erase(req);
    return rv;
}

inline int shim_truncate(struct raft_io *io, raft_index index)
{
    IoShim &shim = io_shims.at(io);
    if (index - 1 > shim.stored)
        index = shim.stored + 1;
    int rv = shim.truncate(io, index);
    if (rv == 0)
        shim.stored = index - 1;
    return rv;
}

inline void install_io_shim(struct raft_io *io)
{
    IoShim &shim = io_shims[io];
    shim = IoShim{};
    shim.append = io->append;
    shim.truncate = io->truncate;
    io->append = shim_append;
    io->truncate = shim_truncate;
}

/* ---- RaftGroup's follower-side workaround, on the fixture's I/O ----
 *
 * The worker runs c-raft with its AppendEntries answers clamped to what the
 * leader vouched for (replication/append_vouching.h); a test that means to
 * run c-raft as the worker does installs the same on each fixture server. */
struct VouchShim {
    atomix::AppendVouching vouching;
    int (*start)(struct raft_io *, unsigned, raft_io_tick_cb, raft_io_recv_cb) = nullptr;
    int (*send)(struct raft_io *, struct raft_io_send *, const struct raft_message *, raft_io_send_cb) = nullptr;
    raft_io_recv_cb recv = nullptr;
};
inline std::map<struct raft_io *, VouchShim> vouch_shims;

inline void vouch_shim_recv(struct raft_io *io, struct raft_message *msg)
{
    VouchShim &shim = vouch_shims.at(io);
    shim.vouching.before_receive(*msg);
    shim.recv(io, msg);
    shim.vouching.after_receive(*msg, raft_last_index(static_cast<struct raft *>(io->data)));
}

inline int vouch_shim_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv)
{
    VouchShim &shim = vouch_shims.at(io);
    shim.recv = recv;
    return shim.start(io, msecs, tick, vouch_shim_recv);
}

inline int vouch_shim_send(struct raft_io *io, struct raft_io_send *req, const struct raft_message *message,
                           raft_io_send_cb cb)
{
    struct raft_message msg = *message; /* the fixture copies it */
    vouch_shims.at(io).vouching.on_send(msg);
    return vouch_shims.at(io).send(io, req, &msg, cb);
}

/* Before raft_fixture_start. */
inline void install_vouch_shim(struct raft_io *io)
{
    VouchShim &shim = vouch_shims[io];
    shim = VouchShim{};
    shim.start = io->start;
    shim.send = io->send;
    io->start = vouch_shim_start;
    io->send = vouch_shim_send;
}

} // namespace unit

#endif
