/*
 * ticks.cpp — the worker's one Raft timer and partition hibernation.
 *
 * Every group's c-raft tick (heartbeats, election and step-down timers)
 * runs from one libuv timer here, not from one raft_uv timer per group: an
 * idle worker with 256 partitions wakes ten times a second, not 2560.  The
 * same timer runs hibernation (replication/hibernation.h): partitions with
 * nothing to do stop their heartbeats, and each node tells its peers, in one
 * digest frame every kDigestEveryMs, where its partitions stand.  The
 * peers' digests are read here too, from links the worker does not poll
 * (NodeTransport::read_digest_links), and the transport's pings and
 * dead-link checks run on it.
 */
#include "worker.h"

#include "hibernation.h"

extern "C" {
#include "postgres.h"
}

namespace atomix {

void Worker::start_ticks()
{
    std::vector<uint32_t> peers;
    for (const NodeAddress &n : cluster_->nodes())
        if (n.id != cluster_->self().id)
            peers.push_back(n.id);
    tick_peers_ = peers;
    hibernation_ = std::make_unique<Hibernation>(
        cluster_->self().id, kElectionTimeoutMs, [this](uint32_t peer, const std::string &payload) {
            return transport_ && transport_->send(peer, FrameType::Digest, payload);
        });
    int rv = uv_timer_init(&loop_, &tick_timer_);
    if (rv != 0)
        throw std::runtime_error(std::string("starting the raft timer: ") + uv_strerror(rv));
    tick_timer_.data = this;
    tick_timer_started_ = true;
    set_tick_every(kHeartbeatMs);
}

/* asleep, the tick comes every kDigestEveryMs and must check liveness often
 * enough for the transport's pings */
static_assert(kDigestEveryMs <= kPingAfterMs, "the slow tick must not outlast the ping interval");

static void tick_timer_fired(uv_timer_t *t) { static_cast<Worker *>(t->data)->tick_groups(); }

/* Every heartbeat while a group is awake; once every group sleeps only
 * c-raft's timers are idle, and the digests (every kDigestEveryMs) and the
 * transport's liveness checks (every kPingAfterMs, the same) are all that
 * is left to do. */
void Worker::set_tick_every(uint64_t ms)
{
    if (!tick_timer_started_ || tick_every_ms_ == ms)
        return;
    tick_every_ms_ = ms;
    uv_timer_start(&tick_timer_, tick_timer_fired, ms, ms);
}

/* A group woke (a proposal, a peer's message): c-raft's timers run again. */
void Worker::group_woke()
{
    woke_since_tick_ = true;
    unsettle();
    set_tick_every(kHeartbeatMs);
}

void Worker::tick_groups()
{
    std::vector<RaftGroup *> &groups = tick_groups_;
    groups.assign(partitions_.size(), nullptr);
    for (size_t i = 0; i < partitions_.size(); i++) {
        Partition &p = *partitions_[i];
        if (!p.halted && p.group)
            groups[i] = p.group.get();
    }
    /* the peers' digests since the last tick, before anything is decided */
    if (transport_)
        transport_->read_digest_links();
    hibernation_->tick_all(groups, tick_peers_, uv_now(&loop_));
    woke_since_tick_ = false; /* all_asleep() is as of now */
    if (transport_)
        transport_->check_liveness(); /* at least every kPingAfterMs: see set_tick_every */
    set_tick_every(hibernation_->all_asleep() ? kDigestEveryMs : kHeartbeatMs);
    if (sleeps_through_tick())
        return;
    ticked_ = true;
    unsettle(); /* a tick turn runs every walk (quiet_turns.cpp) */
}

/* A tick that changed nothing while the worker was settled: every group
 * slept through it and decided nothing new (Hibernation::ticked_asleep), and
 * nothing since the turn that settled brought work.  Its turn stays quiet
 * and skips the walks a tick turn runs, since each would find what it found
 * when the worker settled:
 *   - polls: a sleeping group is stirred by nothing (a message wakes it);
 *   - leader balance: leadership moves only in a group that wakes, so it
 *     has nothing to do unless this node still leads a partition whose
 *     preferred leader is another node (balance_pending_, counted by the
 *     last walk of every partition), which a later tick must look at
 *     again as time passes;
 *   - the watchdog: no log write is in flight and no request waits;
 *   - halted partitions, deadlines of queued requests, read rounds: a
 *     settled worker has none.
 * An idle worker with 256 partitions then walks them only when something
 * happens, not twice a second. */
bool Worker::sleeps_through_tick()
{
    return quiet_ && hibernation_->ticked_asleep() && !balance_pending_;
}

void Worker::on_digest(uint32_t peer, const char *data, size_t len)
{
    if (hibernation_)
        hibernation_->on_digest(peer, data, len,
                                transport_ ? transport_->frame_heard_ms() : uv_now(&loop_));
}

void Worker::stop_ticks()
{
    if (tick_timer_started_) {
        uv_timer_stop(&tick_timer_);
        uv_close(reinterpret_cast<uv_handle_t *>(&tick_timer_), nullptr);
        tick_timer_started_ = false;
    }
}

} // namespace atomix
