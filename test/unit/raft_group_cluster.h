/*
 * raft_group_cluster.h — three RaftGroups (replication/raft_group.cpp) on
 * real raft_uv logs in temporary directories, on one libuv loop, their
 * messages passed through the same encode/decode path as the node
 * transport.  Shared by test_raft_group_faults (log writes failing) and
 * test_hibernation (idle groups sleeping and waking).
 *
 * A member can be cut off (it hears nothing and is heard by nobody), its
 * log writes or snapshot installs can fail, and with `hibernate` set the
 * members are ticked the way the worker ticks them (bgworker/ticks.cpp):
 * one Hibernation per member, digests every kDigestEveryMs on a wire of
 * their own.
 *
 * A turn polls only the groups stirred since their last poll
 * (RaftGroupConfig::on_stir), as the worker's busy turns do.  The worker's
 * tick turns also poll every group; these turns never do, so a change that
 * poll() must see but that stirs nothing stalls or slows every test here.
 */
#ifndef ATOMIX_TEST_RAFT_GROUP_CLUSTER_H
#define ATOMIX_TEST_RAFT_GROUP_CLUSTER_H

#include <unistd.h>

#include <chrono>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "hibernation.h"
#include "raft_group.h"
#include "unit_helpers.h"

namespace atomix_test {

using namespace atomix;

struct Member {
    std::unique_ptr<RaftGroup> group;
    std::unique_ptr<Hibernation> hibernation; /* with Cluster::hibernate */
    struct raft_fsm fsm;
    uint64_t applied = 0;
    bool failing = false; /* its log writes fail (see log_write_fault) */
    int fail_next = 0;    /* this many more writes fail, then they work */
    bool install_failing = false; /* storing a leader's snapshot fails */
    bool cut = false;             /* hears nothing, is heard by nobody */
    std::string dir;
    uint64_t stirs = 0; /* times on_stir was called */
    uint64_t polls = 0;
};

struct Message {
    uint32_t from, to;
    std::string encoded;
};

struct Cluster {
    unsigned snapshot_threshold = 4096;
    unsigned snapshot_trailing = 1024;
    bool hibernate = false; /* tick externally, with hibernation */
    uv_loop_t loop;
    Member members[3];
    std::deque<Message> wire;
    std::deque<Message> digests;
    uint64_t next_tick_ms = 0;
    std::string root;
};

inline int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *, void **result)
{
    static_cast<Member *>(fsm->data)->applied++;
    *result = nullptr;
    return 0;
}

inline int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    Member *m = static_cast<Member *>(fsm->data);
    *bufs = static_cast<struct raft_buffer *>(raft_malloc(sizeof(struct raft_buffer)));
    (*bufs)[0].len = 8;
    (*bufs)[0].base = raft_malloc(8);
    memcpy((*bufs)[0].base, &m->applied, 8);
    *n_bufs = 1;
    return 0;
}

inline int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    memcpy(&static_cast<Member *>(fsm->data)->applied, buf->base, 8);
    raft_free(buf->base);
    return 0;
}

inline std::string address_of(uint32_t id) { return "127.0.0.1:" + std::to_string(9000 + id); }

inline void member_start(Cluster &c, uint32_t i)
{
    Member &m = c.members[i];
    memset(&m.fsm, 0, sizeof(m.fsm));
    m.fsm.version = 1;
    m.fsm.data = &m;
    m.fsm.apply = fsm_apply;
    m.fsm.snapshot = fsm_snapshot;
    m.fsm.restore = fsm_restore;
    RaftGroupConfig cfg;
    cfg.partition = 1;
    cfg.node_id = i + 1;
    cfg.address = address_of(i + 1);
    for (uint32_t j = 1; j <= 3; j++)
        cfg.members.push_back(RaftMember{j, address_of(j), RAFT_VOTER});
    cfg.dir = m.dir;
    cfg.segment_size = 64 * 1024;
    cfg.snapshot_threshold = c.snapshot_threshold;
    cfg.snapshot_trailing = c.snapshot_trailing;
    cfg.tick_externally = c.hibernate;
    uint32_t self = i + 1;
    cfg.send = [&c, self](uint32_t peer, uint32_t, const std::string &encoded) {
        c.wire.push_back(Message{self, peer, encoded});
        return true;
    };
    cfg.log_write_fault = [&m]() {
        if (m.fail_next > 0) {
            m.fail_next--;
            return RAFT_IOERR;
        }
        return m.failing ? RAFT_IOERR : 0;
    };
    cfg.snapshot_install_fault = [&m]() { return m.install_failing ? RAFT_IOERR : 0; };
    cfg.on_stir = [&m]() { m.stirs++; };
    m.group.reset(new RaftGroup(&c.loop, cfg, &m.fsm));
    m.group->start();
    if (c.hibernate && !m.hibernation)
        m.hibernation.reset(new Hibernation(self, cfg.election_timeout_ms,
                                            [&c, self](uint32_t peer, const std::string &payload) {
                                                c.digests.push_back(Message{self, peer, payload});
                                                return true;
                                            }));
}

inline void cluster_start(Cluster &c)
{
    uv_loop_init(&c.loop);
    char tmpl[] = "/tmp/atomix-unit-raftgroup-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    c.root = tmpl;
    for (uint32_t i = 0; i < 3; i++) {
        Member &m = c.members[i];
        m.dir = c.root + "/n" + std::to_string(i + 1);
        assert_int_equal(mkdir(m.dir.c_str(), 0700), 0);
        member_start(c, i);
    }
}

inline bool running(Member &m) { return m.group && m.group->started() && !m.group->closed(); }

/* One turn: libuv I/O and timers, the worker's tick when due, the wires,
 * then the polls of the groups something stirred. */
inline void cluster_turn(Cluster &c)
{
    uv_run(&c.loop, UV_RUN_NOWAIT);
    if (c.hibernate) {
        uint64_t now = uv_now(&c.loop);
        if (now >= c.next_tick_ms) {
            c.next_tick_ms = now + 100;
            for (uint32_t i = 0; i < 3; i++) {
                Member &m = c.members[i];
                if (!m.hibernation)
                    continue; /* the node is down */
                std::vector<uint32_t> peers;
                for (uint32_t j = 1; j <= 3; j++)
                    if (j != i + 1)
                        peers.push_back(j);
                /* a node whose group is stopped still sends its digests */
                m.hibernation->tick_all({running(m) ? m.group.get() : nullptr}, peers, now);
            }
        }
        std::deque<Message> batch;
        batch.swap(c.digests);
        for (const Message &msg : batch) {
            Member &to = c.members[msg.to - 1];
            if (!to.cut && !c.members[msg.from - 1].cut && to.hibernation)
                to.hibernation->on_digest(msg.from, msg.encoded.data(), msg.encoded.size(), now);
        }
    }
    std::deque<Message> batch;
    batch.swap(c.wire);
    for (const Message &msg : batch) {
        Member &to = c.members[msg.to - 1];
        if (to.cut || c.members[msg.from - 1].cut)
            continue;
        if (running(to))
            to.group->deliver(msg.from, address_of(msg.from), msg.encoded.data(), msg.encoded.size());
    }
    for (Member &m : c.members)
        if (running(m) && m.group->stirred()) {
            m.group->poll();
            m.polls++;
        }
    usleep(500);
}

template <typename Pred> bool run_until(Cluster &c, Pred done, int max_ms)
{
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(max_ms);
    while (std::chrono::steady_clock::now() < until) {
        if (done())
            return true;
        cluster_turn(c);
    }
    return done();
}

inline int leader_of(Cluster &c, int except = -1)
{
    for (int i = 0; i < 3; i++)
        if (i != except && running(c.members[i]) && c.members[i].group->is_leader() &&
            !c.members[i].failing && !c.members[i].cut)
            return i;
    return -1;
}

inline void proposal_done(void *arg, int status, const char *)
{
    static_cast<std::vector<int> *>(arg)->push_back(status);
}

/* Closes member i's group and forgets it: as a worker exit would, or with
 * `node_stays` as a halted partition would (its node still sends digests). */
inline void member_stop(Cluster &c, uint32_t i, bool node_stays = false)
{
    Member &m = c.members[i];
    m.group->close();
    assert_true(run_until(c, [&] { return m.group->closed(); }, 10000));
    m.group->release();
    for (int k = 0; k < 200; k++)
        uv_run(&c.loop, UV_RUN_NOWAIT);
    m.group.reset();
    if (!node_stays)
        m.hibernation.reset();
}

inline void cluster_stop(Cluster &c)
{
    for (Member &m : c.members)
        if (m.group)
            m.group->close();
    run_until(c, [&] {
        for (Member &m : c.members)
            if (m.group && !m.group->closed())
                return false;
        return true;
    }, 10000);
    for (Member &m : c.members)
        if (m.group)
            m.group->release();
    for (int i = 0; i < 200; i++)
        uv_run(&c.loop, UV_RUN_NOWAIT);
    for (Member &m : c.members)
        m.group.reset();
    uv_run(&c.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&c.loop), 0);
    std::string rm = "rm -rf " + c.root;
    assert_int_equal(system(rm.c_str()), 0);
}

} // namespace atomix_test

#endif
