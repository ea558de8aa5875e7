/*
 * read_index.h — linearizable reads without a log write: Raft's ReadIndex
 * (Ongaro's dissertation, section 6.4), over the node transport.
 *
 * A linearizable read must see every write acknowledged before it started.
 * Instead of appending a barrier entry (a Raft round with an fsync on a
 * quorum), the partition's leader
 *   1. takes its commit index as the read index, once an entry of its own
 *      term is committed (before that, its commit index may lag what older
 *      leaders committed);
 *   2. confirms it is still the leader: a ReadConfirm(term, seq) to the
 *      other voters, each answering yes only while its own Raft term equals
 *      that term.  A quorum of yes (itself included) proves that no other
 *      leader had been elected when the confirm went out, so nothing was
 *      committed that the read index misses;
 *   3. hands the index to the read's origin, which waits until its own
 *      replica has applied that index and committed it to the tables, then
 *      lets the backend read them.
 * A node that is not the leader asks the leader for a read index
 * (ReadIndexAsk / ReadIndexAnswer).  One round serves every read that
 * arrived before it; rounds are numbered, and a yes to round n also
 * confirms every earlier round of the same term.
 *
 * Read leases skip step 2 while they hold.  With its yes a follower sends a
 * VotePromise: how long, from its answer, it will neither vote nor stand in
 * an election (RaftGroup::vote_promise_ms: c-raft's own has_leader rule and
 * election timer, nothing added).  While enough voters' promises hold that
 * no quorum can elect anyone else — the leader withholds its own vote while
 * it leads — the leader serves reads at its commit index without a round.
 * Promises count from when the round first went out, at 90% minus 2 ms (a
 * follower's clock may run up to 10% fast against the leader's), on the
 * leader's CLOCK_BOOTTIME; no wall clock is read.  A leader that asked for
 * a leadership transfer in a term holds no lease in it.  A leader keeps its
 * lease fresh with a round without readers once less than
 * kLeaseRenewBeforeUs is left and reads keep coming.
 * Why this is linearizable, and what each resend is for: docs/architecture.md,
 * "Linearizable reads".
 *
 * Postgres-free, like request_router.h: the worker drives it (bgworker/),
 * and so can a unit test (test/unit/test_read_index.cpp).  Everything it
 * needs of the node comes through ReadIndexHost.
 */
#ifndef ATOMIX_READ_INDEX_H
#define ATOMIX_READ_INDEX_H

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "request_router.h"

namespace atomix {

/* ReadIndexAnswer outcomes (leader → origin). */
constexpr uint8_t kReadIndexOk = 0;
constexpr uint8_t kReadIndexNotLeader = 1; /* ask again once the leader or term changed */

/* A round not confirmed after this is sent again to the voters that have
 * not said yes (a confirm or its answer lost with a connection). */
constexpr int64_t kReadConfirmResendUs = 100 * 1000;
/* A lease with less than this left is renewed by a round of its own. */
constexpr int64_t kLeaseRenewBeforeUs = 300 * 1000;

class ReadIndexHost : public RouterHost {
  public:
    /* Leads `partition` (not halted) and has committed an entry of its
     * current term: its term and commit index.  False otherwise. */
    virtual bool leader_read_state(int32_t partition, uint64_t *term, uint64_t *commit_index) = 0;
    /* This replica's current Raft term, 0 when it cannot vouch for one
     * (group not running, partition halted). */
    virtual uint64_t current_term(int32_t partition) = 0;
    virtual std::vector<uint32_t> voters(int32_t partition) = 0;
    /* A read of this node's caller may run now: its read index is applied
     * and committed here. */
    virtual void read_ready(uint64_t request_id) = 0;

    /* Read leases.  Follower side: ms from now during which this replica,
     * following `leader` in `term`, will neither vote nor stand in an
     * election (0: no promise). */
    virtual uint32_t vote_promise_ms(int32_t partition, uint32_t leader, uint64_t term) = 0;
    /* Leader side: leases are enabled (atomix.read_lease) and this node has
     * not asked for a leadership transfer of the partition in `term`. */
    virtual bool lease_allowed(int32_t partition, uint64_t term) = 0;
    /* The lease clock (CLOCK_BOOTTIME, µs; a simulation keeps one clock
     * per partition). */
    virtual int64_t lease_clock_us(int32_t partition) = 0;
};

class ReadIndex {
  public:
    ReadIndex(ReadIndexHost &host, size_t partitions);

    /* A linearizable read of this node's caller on `partition`; answered
     * through read_ready, or fail_request(NotApplied) after deadline_us. */
    void submit(int32_t partition, uint64_t request_id, int64_t deadline_us);

    /* Every turn, after Raft ran: asks leaders for read indexes, starts and
     * resends confirmation rounds, expires reads past their deadline. */
    void pump(int64_t now_us);

    /* ReadConfirm, ReadConfirmAck, ReadIndexAsk and ReadIndexAnswer frames. */
    void on_frame(uint32_t peer, FrameType type, const char *data, size_t len);

    /* After the turn's commit: this replica has applied `applied_index`. */
    void applied(int32_t partition, uint64_t applied_index);

    /* The partition is halted here: this node's reads of it fail now. */
    void fail_all(int32_t partition, const std::string &why);

    /* Hands the frames batched since the last flush to the host (one frame
     * per peer and kind: records of every partition). */
    void flush();

    /* reads of this node's callers still waiting */
    size_t waiting(int32_t partition) const { return parts_[(size_t)partition].reads.size(); }
    /* earliest deadline of a waiting read (monotonic), or INT64_MAX */
    int64_t next_deadline_us() const;
    /* no read waiting, asked or in a round, and nothing unsent */
    bool idle() const;
    /* confirmation rounds this node started as leader / reads they served */
    uint64_t rounds(int32_t partition) const { return parts_[(size_t)partition].rounds_started; }
    uint64_t reads_confirmed(int32_t partition) const { return parts_[(size_t)partition].reads_confirmed; }
    /* this node's reads answered once their index was applied here */
    uint64_t reads_served(int32_t partition) const { return parts_[(size_t)partition].reads_served; }
    /* reads confirmed by the lease, without a round (part of reads_confirmed) */
    uint64_t reads_leased(int32_t partition) const { return parts_[(size_t)partition].reads_leased; }
    /* leading in a term with a lease that holds at `lease_now_us` */
    bool holds_lease(int32_t partition, int64_t lease_now_us) const
    {
        const Part &q = parts_[(size_t)partition];
        return q.term != 0 && lease_now_us < q.lease_until_us;
    }
    /* The lease (lease clock, 0: none; INT64_MAX: a lone voter's) and its
     * term, for publishing to this node's backends (bgworker/read_leases.cpp). */
    int64_t lease_until_us(int32_t partition) const { return parts_[(size_t)partition].lease_until_us; }
    uint64_t lease_term(int32_t partition) const { return parts_[(size_t)partition].term; }
    /* Partitions whose lease began since the last call. */
    std::vector<int32_t> take_new_leases()
    {
        std::vector<int32_t> out;
        out.swap(new_leases_);
        return out;
    }

  private:
    /* A read of this node's caller. */
    struct Read {
        int64_t deadline_us = 0;
        uint32_t asked = 0;   /* node asked for the index (0: nobody yet; self: our round) */
        uint64_t link = 0;    /* link generation to `asked` when asked */
        uint64_t term = 0;    /* our term of the partition when asked */
        uint64_t index = 0;   /* the read index, once known */
    };
    /* A read waiting for the leader's confirmation (this node leads). */
    struct Waiter {
        uint32_t origin;
        uint64_t id;
    };
    struct Round {
        uint64_t seq = 0;
        uint64_t index = 0;
        int64_t started_us = 0;
        int64_t probed_us = 0;
        std::vector<Waiter> waiters;
    };
    struct Part {
        std::unordered_map<uint64_t, Read> reads;
        /* leading: */
        uint64_t term = 0; /* of `rounds` and `acked` */
        uint64_t seq = 0;
        std::vector<Waiter> next; /* wait for the next round */
        std::deque<Round> rounds; /* started, not yet confirmed */
        std::unordered_map<uint32_t, uint64_t> acked; /* voter → highest seq it confirmed in `term` */
        /* leases (this term): when each recent round first went out, on the
         * lease clock; what each voter's promise is worth; the lease */
        std::deque<std::pair<uint64_t, int64_t>> sent;
        std::unordered_map<uint32_t, int64_t> promised;
        int64_t lease_until_us = 0;
        uint64_t rounds_started = 0;
        uint64_t reads_confirmed = 0;
        uint64_t reads_served = 0;
        uint64_t reads_leased = 0;
    };

    void ask_for_indexes(int32_t partition, int64_t now_us);
    void lead_rounds(int32_t partition, int64_t now_us);
    void give_up_leading(int32_t partition);
    void start_round(int32_t partition, uint64_t commit, int64_t now_us);
    void probe(int32_t partition, Round &round, int64_t now_us);
    bool serve_from_lease(int32_t partition, uint64_t term, uint64_t commit, int64_t now_us);
    void on_promises(uint32_t peer, const char *data, size_t len);
    void update_lease(int32_t partition);
    void forget_lease(Part &q);
    bool sole_voter(int32_t partition);
    void confirm_rounds(int32_t partition);
    void answer(const Waiter &w, int32_t partition, uint8_t outcome, uint64_t index);
    void expire(int32_t partition, int64_t now_us);
    std::string &out(uint32_t peer, FrameType type) { return out_[{peer, static_cast<uint8_t>(type)}]; }

    ReadIndexHost &host_;
    std::vector<Part> parts_;
    std::map<std::pair<uint32_t, uint8_t>, std::string> out_;
    std::vector<int32_t> new_leases_;
};

} // namespace atomix

#endif
