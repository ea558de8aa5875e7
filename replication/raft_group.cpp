/*
 * raft_group.cpp — starting, driving and closing one partition's c-raft
 * instance (see raft_group.h).
 */
#include "raft_group.h"

#include <cstring>
#include <stdexcept>

#include "local_transport.h"

namespace atomix {

RaftGroup::RaftGroup(uv_loop_t *loop, const RaftGroupConfig &config, struct raft_fsm *fsm)
    : config_(config), loop_(loop), fsm_(fsm)
{
    memset(&raft_, 0, sizeof(raft_));
    memset(&io_, 0, sizeof(io_));
    local_transport_init(&transport_, loop);
}

static std::runtime_error raft_failure(const char *what, int rv, const char *detail)
{
    return std::runtime_error(std::string(what) + ": " + raft_strerror(rv) +
                              (detail && *detail ? std::string(" (") + detail + ")" : ""));
}

void RaftGroup::start()
{
    int rv = raft_uv_init(&io_, loop_, config_.dir.c_str(), &transport_);
    if (rv != 0)
        throw raft_failure("raft_uv_init", rv, io_.errmsg);
    /* The default 8 MiB preallocated segment per partition adds up fast. */
    raft_uv_set_segment_size(&io_, config_.segment_size);
    uv_close_ = io_.close;
    io_.close = io_close_once;

    rv = raft_init(&raft_, &io_, fsm_, config_.node_id, config_.address.c_str());
    if (rv != 0)
        throw raft_failure("raft_init", rv, raft_errmsg(&raft_));
    raft_.data = this;
    raft_set_snapshot_threshold(&raft_, config_.snapshot_threshold);
    raft_set_snapshot_trailing(&raft_, config_.snapshot_trailing);

    struct raft_configuration conf;
    raft_configuration_init(&conf);
    rv = raft_configuration_add(&conf, config_.node_id, config_.address.c_str(), RAFT_VOTER);
    if (rv == 0)
        rv = raft_bootstrap(&raft_, &conf);
    raft_configuration_close(&conf);
    /* RAFT_CANTBOOTSTRAP: the log already exists, which is the normal restart */
    if (rv != 0 && rv != RAFT_CANTBOOTSTRAP)
        throw raft_failure("raft_bootstrap", rv, raft_errmsg(&raft_));

    rv = raft_start(&raft_);
    if (rv != 0)
        throw raft_failure("raft_start", rv, raft_errmsg(&raft_));
    started_ = true;
}

bool RaftGroup::is_leader() { return started_ && !closed_ && raft_state(&raft_) == RAFT_LEADER; }

struct Proposal {
    struct raft_apply req;
    ProposeDone done;
    void *arg;
};

static void proposal_applied(struct raft_apply *req, int status, void *)
{
    Proposal *p = static_cast<Proposal *>(req->data);
    struct raft *r = nullptr;
    (void)r;
    p->done(p->arg, status, status == 0 ? "" : raft_strerror(status));
    delete p;
}

int RaftGroup::propose(const std::string &entry, ProposeDone done, void *arg)
{
    struct raft_buffer buf;
    buf.len = padded_size(entry.size());
    buf.base = raft_malloc(buf.len);
    if (buf.base == nullptr)
        return RAFT_NOMEM;
    memcpy(buf.base, entry.data(), entry.size());
    memset(static_cast<char *>(buf.base) + entry.size(), 0, buf.len - entry.size());

    Proposal *p = new Proposal();
    p->req.data = p;
    p->done = done;
    p->arg = arg;
    int rv = raft_apply(&raft_, &p->req, &buf, 1, proposal_applied);
    if (rv != 0) {
        /* on failure the buffer is still ours */
        raft_free(buf.base);
        delete p;
    }
    return rv;
}

static void leader_barrier_done(struct raft_barrier *req, int) { delete req; }

void RaftGroup::poll()
{
    bool leader = is_leader();
    if (leader && !was_leader_) {
        /* c-raft 0.15 appends no no-op entry on election: without one, entries
         * of earlier terms stay uncommitted (and unapplied after a restart)
         * until the next client write. */
        struct raft_barrier *req = new (struct raft_barrier)();
        if (raft_barrier(&raft_, req, leader_barrier_done) != 0)
            delete req;
    }
    was_leader_ = leader;
}

/* raft_uv 0.15 may report "closed" more than once: every pending close step
 * re-checks whether all are done and fires the callback again if so, and
 * c-raft's callback frees the raft instance's memory — a double free.  We
 * interpose on raft_io->close and pass the first report on, once. */
void RaftGroup::io_close_once(struct raft_io *io, void (*cb)(struct raft_io *))
{
    RaftGroup *self = static_cast<RaftGroup *>(static_cast<struct raft *>(io->data)->data);
    self->raft_close_cb_ = cb;
    self->uv_close_(io, io_closed);
}

void RaftGroup::io_closed(struct raft_io *io)
{
    RaftGroup *self = static_cast<RaftGroup *>(static_cast<struct raft *>(io->data)->data);
    if (self->io_close_fired_)
        return;
    self->io_close_fired_ = true;
    if (self->raft_close_cb_)
        self->raft_close_cb_(io);
}

void RaftGroup::on_closed(struct raft *r)
{
    /* c-raft may still touch its raft_io after this callback returns: the
     * io's memory is released only in release(), once the loop is idle. */
    static_cast<RaftGroup *>(r->data)->closed_ = true;
}

void RaftGroup::release()
{
    if (started_ && closed_ && !released_) {
        raft_uv_close(&io_);
        released_ = true;
    }
}

void RaftGroup::close()
{
    if (!started_) {
        closed_ = true;
        return;
    }
    raft_close(&raft_, on_closed);
}

} // namespace atomix
