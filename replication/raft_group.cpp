/*
 * raft_group.cpp — starting, driving and closing one partition's c-raft
 * instance (see raft_group.h).
 */
#include "raft_group.h"
#include "segment_repair.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <unordered_map>

#include "clock.h"
#include "commit_rule.h"
#include "hibernation.h"
#include "local_transport.h"
#include "raft_message_codec.h"

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
    /* raft_uv 0.15 aborts loading a full open segment (segment_repair.h) */
    trimmed_segments_ = trim_full_open_segments(config_.dir);
    int rv = raft_uv_init(&io_, loop_, config_.dir.c_str(), &transport_);
    if (rv != 0)
        throw raft_failure("raft_uv_init", rv, io_.errmsg);
    /* The default 8 MiB preallocated segment per partition adds up fast. */
    raft_uv_set_segment_size(&io_, config_.segment_size);
    uv_close_ = io_.close;
    io_.close = io_close_once;
    /* Peers talk through our node transport, not raft_uv's own: interpose
     * on start (to learn c-raft's receive callback) and send. */
    uv_start_ = io_.start;
    io_.start = io_start;
    io_.send = io_send;
    /* to hear about failed log writes (a full disk, EIO) */
    uv_append_ = io_.append;
    io_.append = io_append;
    /* ...and to keep every log write in c-raft's order, one at a time
     * (raft_log_io.cpp) */
    uv_truncate_ = io_.truncate;
    io_.truncate = io_truncate;
    /* to never load a snapshot that does not exist (see io_snapshot_get) */
    uv_snapshot_get_ = io_.snapshot_get;
    io_.snapshot_get = io_snapshot_get;
    /* to stop a group whose snapshot install failed (see io_snapshot_put) */
    uv_snapshot_put_ = io_.snapshot_put;
    io_.snapshot_put = io_snapshot_put;

    rv = raft_init(&raft_, &io_, fsm_, config_.node_id, config_.address.c_str());
    if (rv != 0)
        throw raft_failure("raft_init", rv, raft_errmsg(&raft_));
    raft_.data = this;
    raft_set_snapshot_threshold(&raft_, config_.snapshot_threshold);
    raft_set_snapshot_trailing(&raft_, config_.snapshot_trailing);
    raft_set_election_timeout(&raft_, config_.election_timeout_ms);
    raft_set_heartbeat_timeout(&raft_, config_.heartbeat_timeout_ms);
    raft_set_install_snapshot_timeout(&raft_, config_.install_snapshot_timeout_ms);
    /* a node cut off and back must not depose a healthy leader */
    raft_set_pre_vote(&raft_, true);

    struct raft_configuration conf;
    raft_configuration_init(&conf);
    if (config_.members.empty()) {
        rv = raft_configuration_add(&conf, config_.node_id, config_.address.c_str(), RAFT_VOTER);
    } else {
        rv = 0;
        for (const RaftMember &m : config_.members)
            if (rv == 0)
                rv = raft_configuration_add(&conf, m.id, m.address.c_str(), m.role);
    }
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
    started_mono_ms_ = mono_now_us() / 1000;
    stir(); /* a lone voter leads from raft_start on */
}

bool RaftGroup::is_leader()
{
    return started_ && !closing_ && !closed_ && raft_state(&raft_) == RAFT_LEADER;
}

struct Proposal {
    struct raft_apply req;
    ProposeDone done;
    void *arg;
};

static void proposal_applied(struct raft_apply *req, int status, void *)
{
    Proposal *p = static_cast<Proposal *>(req->data);
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

    wake(uv_now(loop_));
    stir();
    Proposal *p = new Proposal();
    p->req.data = p;
    p->done = done;
    p->arg = arg;
    int rv = raft_apply(&raft_, &p->req, &buf, 1, proposal_applied);
    if (rv != 0) {
        /* on failure the buffer is still ours */
        raft_free(buf.base);
        delete p;
    } else {
        proposals_++;
    }
    return rv;
}

static void leader_barrier_done(struct raft_barrier *req, int) { delete req; }

RaftGroup *RaftGroup::of(struct raft_io *io)
{
    return static_cast<RaftGroup *>(static_cast<struct raft *>(io->data)->data);
}

int RaftGroup::io_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
                        raft_io_recv_cb recv)
{
    RaftGroup *self = of(io);
    self->recv_cb_ = recv;
    self->tick_cb_ = tick;
    /* Ticked by the owner: raft_uv's timer still runs, hourly, and its tick
     * is ignored (io_uv_tick). */
    if (self->config_.tick_externally)
        msecs = 3600u * 1000u;
    return self->uv_start_(io, msecs, io_uv_tick, recv);
}

void RaftGroup::io_uv_tick(struct raft_io *io)
{
    RaftGroup *self = of(io);
    if (!self->config_.tick_externally && self->tick_cb_) {
        self->stir();
        self->tick_cb_(io);
    }
}

void RaftGroup::tick()
{
    if (!config_.tick_externally || hibernating_ || !started_ || closing_ || closed_ || !tick_cb_)
        return;
    stir();
    tick_cb_(&io_);
}

void RaftGroup::wake(uint64_t since_ms)
{
    if (!hibernating_)
        return;
    hibernating_ = false;
    stir();
    if (config_.on_wake)
        config_.on_wake();
    if (!started_ || closing_ || closed_)
        return;
    /* c-raft judges its election timer (follower) and its contact with a
     * quorum (leader) against election_timer_start: the hours a partition
     * may sleep must not count. */
    uint64_t now = uv_now(loop_);
    /* never back before c-raft's own start: a follower's read-lease
     * promise counts from it (vote_promise_ms) */
    raft_.election_timer_start =
        std::max<uint64_t>(raft_.election_timer_start, std::min<uint64_t>(since_ms, now));
}

bool RaftGroup::has_member(uint32_t node) const
{
    for (const RaftMember &m : config_.members)
        if (m.id == node)
            return true;
    return false;
}

void RaftGroup::view(GroupView *out)
{
    GroupView &v = *out;
    v.members.clear();
    v.leading = v.following = v.busy = false;
    v.term = v.commit = v.last = v.applied = 0;
    v.leader = 0;
    v.running = started_ && !closing_ && !closed_ && !quiet_ && !io_failed_;
    if (!v.running)
        return;
    int state = raft_state(&raft_);
    v.leading = state == RAFT_LEADER;
    v.term = raft_.current_term;
    v.commit = raft_.commit_index;
    v.last = raft_last_index(&raft_);
    v.applied = raft_last_applied(&raft_);
    v.leader = (uint32_t)leader_id();
    v.following = state == RAFT_FOLLOWER && v.leader != 0;
    v.busy = io_busy() || transfer_ != nullptr || !log_ops_.empty() || log_op_in_flight_;
    if (v.leading) {
        if (!raft_.leader_state.progress)
            v.busy = true;
        else
            for (unsigned i = 0; i < raft_.configuration.n; i++)
                if (raft_.configuration.servers[i].id != config_.node_id)
                    v.members.emplace_back((uint32_t)raft_.configuration.servers[i].id,
                                           raft_.leader_state.progress[i].match_index);
    }
}

/* Every message c-raft sends: its AppendEntries answers clamped to what the
 * leader vouched for (append_vouching.h), then encoded for the node
 * transport. */
int RaftGroup::io_send(struct raft_io *io, struct raft_io_send *req,
                       const struct raft_message *message, raft_io_send_cb cb)
{
    RaftGroup *self = of(io);
    self->stir(); /* its completion is called back from poll() */
    struct raft_message msg = *message;
    self->vouching_.on_send(msg);
    self->messages_sent_++;
    int status = 0;
    /* A group whose log write failed is halted and waits to be closed: it
     * must not keep its followers from electing a leader that can write
     * (its heartbeats would), nor send entries it no longer has. */
    if (self->io_failed_) {
        self->send_completions_.push_back(SendCompletion{req, cb, RAFT_NOCONNECTION});
        return 0;
    }
    try {
        std::string encoded;
        encode_raft_message(msg, encoded);
        if (!self->config_.send || !self->config_.send((uint32_t)msg.server_id, self->config_.partition, encoded))
            status = RAFT_NOCONNECTION;
    } catch (const std::exception &) {
        status = RAFT_NOMEM;
    }
    /* c-raft expects the callback later, never from inside send() */
    self->send_completions_.push_back(SendCompletion{req, cb, status});
    return 0;
}

void RaftGroup::flush_send_completions()
{
    if (send_completions_.empty())
        return; /* every turn polls every group: no allocation for nothing */
    std::vector<SendCompletion> done;
    done.swap(send_completions_);
    for (const SendCompletion &c : done)
        if (c.cb)
            c.cb(c.req, c.status);
}

void RaftGroup::deliver(uint32_t from, const std::string &from_address, const char *data,
                        size_t len)
{
    if (!started_ || closing_ || closed_ || quiet_ || !recv_cb_)
        return;
    wake(uv_now(loop_));
    stir();
    struct raft_message msg;
    memset(&msg, 0, sizeof(msg));
    try {
        decode_raft_message(data, len, msg);
    } catch (const std::exception &) {
        return; /* a malformed message is dropped; Raft retries */
    }
    if (msg.type == RAFT_IO_REQUEST_VOTE && withhold_vote_request(msg.request_vote)) {
        votes_withheld_++;
        return; /* as if lost: the candidate asks again */
    }
    msg.server_id = from;
    msg.server_address = from_address.c_str();
    if (msg.type == RAFT_IO_APPEND_ENTRIES)
        skip_compacted_entries(msg.append_entries);
    vouching_.before_receive(msg);
    recv_cb_(&io_, &msg); /* c-raft takes ownership of what decode allocated */
    vouching_.after_receive(msg, raft_last_index(&raft_));
}

/* c-raft 0.15 mishandles an append whose prev_log_index lies before this
 * replica's last snapshot: it appends the already-compacted entries at the
 * end of its log, corrupting it.  Entries up to a snapshot are committed, so
 * they are the same in every leader's log: we drop them from the message and
 * start it right after the snapshot. */
void RaftGroup::skip_compacted_entries(struct raft_append_entries &ae)
{
    uint64_t snap = raft_.log.snapshot.last_index;
    if (snap == 0 || ae.prev_log_index >= snap)
        return;
    uint64_t skip = snap - ae.prev_log_index;
    if (skip >= ae.n_entries) {
        /* nothing new: a heartbeat vouching for what it carried */
        if (ae.n_entries > 0) {
            ae.prev_log_term = ae.entries[ae.n_entries - 1].term;
            ae.prev_log_index += ae.n_entries;
            raft_free(ae.entries[0].batch);
            raft_free(ae.entries);
            ae.entries = nullptr;
            ae.n_entries = 0;
        }
        /* a bare heartbeat before the snapshot: pretend it points at it */
        if (ae.prev_log_index < snap) {
            ae.prev_log_index = snap;
            ae.prev_log_term = raft_.log.snapshot.last_term;
        }
        return;
    }
    ae.prev_log_term = ae.entries[skip - 1].term;
    ae.prev_log_index += skip;
    memmove(ae.entries, ae.entries + skip, (ae.n_entries - skip) * sizeof(ae.entries[0]));
    ae.n_entries -= static_cast<unsigned>(skip);
}

static void transfer_done(struct raft_transfer *req)
{
    RaftGroup *self = static_cast<RaftGroup *>(req->data);
    self->transfer_finished(req);
}

void RaftGroup::transfer_finished(struct raft_transfer *req)
{
    if (transfer_ == req)
        transfer_ = nullptr;
    delete req;
    stir();
}

/* A replica that followed a leader before it (re)started may have promised
 * that leader, in a read lease, not to vote for an election timeout from
 * its answer; a restart forgets the leader c-raft's has_leader check relies
 * on.  So for an election timeout after start() it lets no vote request
 * through but a transfer's (whose leader gave up its lease when it asked
 * for the transfer).  c-raft itself stands in no election that early: its
 * election timer starts at raft_start with at least election_timeout. */
bool RaftGroup::withhold_vote_request(const struct raft_request_vote &rv) const
{
    if (rv.disrupt_leader)
        return false;
    return (uint64_t)(mono_now_us() / 1000) < started_mono_ms_ + config_.election_timeout_ms;
}

uint64_t RaftGroup::vote_promise_ms(uint32_t leader, uint64_t term, uint64_t vouched_ms,
                                    uint64_t now_ms)
{
    if (!started_ || closing_ || closed_ || quiet_ || io_failed_)
        return 0;
    if (raft_.state != RAFT_FOLLOWER || raft_.current_term != term ||
        raft_.follower_state.current_leader.id != leader)
        return 0;
    /* raft_uv's clock (uv_now) is CLOCK_MONOTONIC, possibly the coarse one,
     * never ahead of the fresh reading `now_ms`: the timer cannot expire
     * before now_ms reaches start + election_timeout. */
    /* wake() never moves the start back, and sets it to at least the
     * vouch (a silent leader) or the time of waking (anything else) */
    uint64_t start = raft_.election_timer_start;
    if (hibernating_)
        start = std::max<uint64_t>(start, vouched_ms);
    uint64_t ends = start + config_.election_timeout_ms;
    if (ends <= now_ms + 1)
        return 0;
    /* 1 ms off for the truncation of both clocks to ms */
    return std::min<uint64_t>(ends - now_ms - 1, config_.election_timeout_ms);
}

bool RaftGroup::transfer_leadership(uint32_t node)
{
    if (transfer_ || !is_leader())
        return false;
    /* before c-raft may send the TimeoutNow: see transfer_term() */
    transfer_term_ = raft_.current_term;
    wake(uv_now(loop_));
    stir();
    auto *req = new (struct raft_transfer)();
    req->data = this;
    if (raft_transfer(&raft_, req, node, transfer_done) != 0) {
        delete req;
        return false;
    }
    transfer_ = req;
    return true;
}

/* c-raft 0.15 tells followers about a new commit index only with the next
 * append or heartbeat (up to heartbeat_timeout later).  Followers answer
 * their forwarded requests from their own apply, so that delay would be
 * every forwarded call's latency: when the commit index moved, make every
 * follower due for a heartbeat and run c-raft's tick, which sends them. */
void RaftGroup::announce_commit()
{
    if (!is_leader() || config_.members.size() < 2 || !tick_cb_)
        return;
    bool commit_moved = raft_.commit_index > announced_commit_;
    announced_commit_ = raft_.commit_index;
    bool any = false;
    for (unsigned i = 0; i < raft_.configuration.n; i++) {
        raft_id id = raft_.configuration.servers[i].id;
        if (id == config_.node_id)
            continue;
        struct raft_progress &p = raft_.leader_state.progress[i];
        /* A follower takes min(leader_commit, its last stored index): one
         * whose disk write finished after it heard of the commit still does
         * not know its newest entry is committed.  Its acknowledgement (its
         * match index moving up to or below our commit) says exactly that. */
        uint64_t &told = announced_match_[id];
        bool caught_up_to_commit = p.match_index > told && p.match_index <= raft_.commit_index;
        told = p.match_index;
        if (commit_moved || caught_up_to_commit) {
            p.last_send = 0;
            any = true;
        }
    }
    if (any) {
        /* c-raft's tick must never see the time a group slept (wake) */
        wake(uv_now(loop_));
        tick_cb_(&io_);
    }
}

/* c-raft 0.15's commit rule can starve under load: apply Raft's own
 * (commit_rule.h).  c-raft applies up to commit_index at the next
 * acknowledgement, which announce_commit makes immediate. */
void RaftGroup::advance_commit()
{
    uint64_t commit = quorum_commit_index(&raft_, config_.node_id, term_start_index_);
    if (commit != 0 && !closing_ && !closed_) {
        raft_.commit_index = commit;
        commits_unstuck_++;
    }
}

void RaftGroup::poll()
{
    if (closing_ || closed_)
        return; /* c-raft is gone or going: nothing of it may be called */
    stirred_ = false; /* what happens from here on stirs it again */
    flush_send_completions();
    if (hibernating_ && injected_write_faults_.empty())
        return; /* nothing moves in a hibernating group until it wakes */
    flush_injected_write_faults();
    bool leader = is_leader();
    if (leader && (!was_leader_ || raft_.current_term != leader_term_)) {
        /* c-raft 0.15 appends no no-op entry on election: without one, entries
         * of earlier terms stay uncommitted (and unapplied after a restart)
         * until the next client write.  Everything from the next index on
         * is of our term. */
        term_start_index_ = raft_last_index(&raft_) + 1;
        leader_term_ = raft_.current_term;
        struct raft_barrier *req = new (struct raft_barrier)();
        if (raft_barrier(&raft_, req, leader_barrier_done) != 0)
            delete req;
    }
    if (!leader)
        term_start_index_ = 0;
    /* Every turn polls every group; at 256 partitions the commit rule and
     * the announcement below were a tenth of a busy worker.  Both read only
     * what LeaderProgress holds, so when none of it moved since they last
     * ran they would do nothing: skip them. */
    if (!leader) {
        last_progress_.comparable = false; /* both would return at once */
    } else if (!(leader_progress() == last_progress_)) {
        advance_commit();
        announce_commit();
        last_progress_ = leader_progress();
    }
    was_leader_ = leader;
}

RaftGroup::LeaderProgress RaftGroup::leader_progress() const
{
    LeaderProgress lp;
    if (raft_.state != RAFT_LEADER || raft_.leader_state.progress == nullptr)
        return lp; /* followers: both return at once anyway */
    if (raft_.configuration.n > LeaderProgress::kMaxMembers)
        return lp; /* not comparable: always run them */
    lp.comparable = true;
    lp.term = raft_.current_term;
    lp.term_start = term_start_index_;
    lp.commit = raft_.commit_index;
    lp.last_stored = raft_.last_stored;
    lp.members = raft_.configuration.n;
    for (unsigned i = 0; i < raft_.configuration.n; i++) {
        lp.ids[i] = raft_.configuration.servers[i].id;
        lp.roles[i] = raft_.configuration.servers[i].role;
        lp.match[i] = raft_.leader_state.progress[i].match_index;
    }
    return lp;
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
    if (closing_)
        return;
    /* Sends are completed at the next poll(); c-raft frees what a send
     * refers to when it closes, so complete them while it is still alive
     * (a halted partition's group is closed while the worker runs on). */
    flush_send_completions();
    flush_injected_write_faults();
    closing_ = true;
    raft_close(&raft_, on_closed);
}

} // namespace atomix
