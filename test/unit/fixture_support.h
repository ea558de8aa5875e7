/*
 * fixture_support.h — what every test driving c-raft 0.15's raft_fixture
 * needs: a workaround for a bug in the fixture's own in-memory I/O.
 * Used by test_raft_fixture and test_simulation.
 */
#ifndef ATOMIX_FIXTURE_SUPPORT_H
#define ATOMIX_FIXTURE_SUPPORT_H

#include <map>

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

} // namespace unit

#endif
