/*
 * hibernation.h — idle partitions stop their Raft heartbeats.
 *
 * c-raft's leader sends every follower an empty AppendEntries each
 * heartbeat_timeout (100 ms) and each follower answers it, so an idle node
 * still handles ~2 messages per partition per peer ten times a second: 256
 * idle partitions cost a 3-node cluster 7% of a core.  A partition whose
 * leader and followers all hold the same committed log, and have for a
 * while, needs none of that: it hibernates.  Its leader stops sending
 * heartbeats; its followers stop their election timers.
 *
 * Who is alive is then judged per node, not per partition: every node sends
 * each peer a digest every kDigestEveryMs, one record per partition they
 * share (term, commit index, last index, whom it follows, hibernating).  The
 * digest is what lets each side decide:
 *   - a leader hibernates a partition once nothing has changed in it for
 *     kQuietAfterMs, its own log is committed and applied, every other member
 *     has its last index, and every member's latest digest (fresh: younger
 *     than the election timeout) says it is in the leader's term, follows it
 *     and knows the same commit and last index;
 *   - a follower hibernates once the leader's fresh digest says the leader
 *     hibernates it in the follower's own term, with the follower's own
 *     commit and last index.
 * And what wakes a partition:
 *   - any Raft message for it (c-raft then runs as usual; a node that lost
 *     track of the leader sends a vote request, which wakes the leader, whose
 *     heartbeats then tell it), a proposal, a leadership transfer;
 *   - on a follower: the leader's digest no longer saying "hibernating", or
 *     no digest from the leader's node for an election timeout (a frozen,
 *     crashed or cut-off leader).  The follower's election timer then counts
 *     from when the leader last vouched for the partition, so a dead leader is
 *     replaced as quickly as without hibernation (one election timeout of
 *     silence, then the usual randomized timeout from that point);
 *   - on a leader: a member's digest going stale or disagreeing.
 *
 * Safety does not depend on any of this: hibernation only withholds c-raft's
 * timer ticks, and every decision c-raft makes is still its own.  A deposed
 * leader that still believes it leads answers no linearizable read (the read
 * index asks the voters' terms, read_index.h) and commits no write (its
 * followers refuse its appends).  What hibernation risks is liveness, and
 * every wake path above has a test (test/unit/test_hibernation.cpp,
 * test/tap/t/116_hibernation.pl).
 *
 * The groups tick from one shared timer (tick_all), not one raft_uv timer
 * each, so an idle worker wakes a few times per second whatever its
 * number of partitions.
 *
 * Sleeping ticks.  Once every group sleeps, a tick whose inputs are those
 * of the tick that put the last one to sleep decides nothing new: no group
 * woke, the same groups run, every peer's latest digest is byte for byte
 * the one that tick read and each peer is as fresh or as silent as it was.
 * Every decision is then the one already taken (a sleeping group decides on
 * the view it went to sleep with, and the only input that moves, the time,
 * can only make a fresh report stale, which the freshness check catches).
 * Such a tick skips the decisions and resends the digests it last built,
 * which cannot have changed either; it only moves each sleeping follower's
 * vouched_ms to its leader's latest digest, as decide() would.  An idle
 * worker with 256 partitions no longer walks them twice a second
 * (ticked_asleep(); the worker skips its own walks too, ticks.cpp).
 *
 * Pure C++ over RaftGroup: nothing here calls Postgres.
 */
#ifndef ATOMIX_HIBERNATION_H
#define ATOMIX_HIBERNATION_H

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace atomix {

class RaftGroup;

/* How often each node sends each peer its digest: twice per election
 * timeout (a peer missing two is taken as silent), and no more often than
 * the transport's pings, which the digests make unnecessary. */
constexpr uint64_t kDigestEveryMs = 500;
/* How long a leader's partition must be unchanged before it hibernates. */
constexpr uint64_t kQuietAfterMs = 500;

constexpr uint8_t kDigestLeading = 1;     /* the sender leads the partition */
constexpr uint8_t kDigestHibernating = 2; /* ...and has stopped its heartbeats */

/* One partition as its sender sees it. */
struct GroupDigest {
    uint32_t partition = 0;
    uint64_t term = 0;
    uint64_t commit = 0;
    uint64_t last = 0;
    uint32_t leader = 0; /* whom the sender follows (itself when leading), 0: nobody */
    uint8_t flags = 0;
    bool operator==(const GroupDigest &o) const
    {
        return partition == o.partition && term == o.term && commit == o.commit && last == o.last &&
               leader == o.leader && flags == o.flags;
    }
};

/* Wire format: u32 count, then per record u32 partition | u64 term |
 * u64 commit | u64 last | u32 leader | u8 flags (little-endian). */
std::string encode_digests(const std::vector<GroupDigest> &records);
/* False (and records untouched) when the payload is malformed. */
bool decode_digests(const char *data, size_t len, std::vector<GroupDigest> *records);

/* What the decisions need of one group (RaftGroup fills it; tests can too). */
struct GroupView {
    bool running = false; /* started, not closing, not halted */
    bool leading = false;
    bool following = false; /* a follower that knows its leader */
    uint64_t term = 0;
    uint64_t commit = 0;
    uint64_t last = 0;
    uint64_t applied = 0;
    uint32_t leader = 0;
    bool busy = false; /* a log write, a transfer or a snapshot under way */
    /* leading: every other member and its match index */
    std::vector<std::pair<uint32_t, uint64_t>> members;
};

/* A peer's latest digest, and when it came (ms, the loop's clock). */
struct PeerReport {
    bool known = false;
    uint64_t heard_ms = 0;
    GroupDigest digest;
};

/* The decisions, as pure functions of the views (unit-tested one by one). */
bool leader_may_hibernate(uint32_t self, const GroupView &me,
                          const std::vector<PeerReport> &member_reports, uint64_t now_ms,
                          uint64_t fresh_ms);
bool follower_may_hibernate(const GroupView &me, const PeerReport &leader_report,
                            uint64_t now_ms, uint64_t fresh_ms);

class Hibernation {
  public:
    /* send(peer, payload): ship a digest frame; false when not connected. */
    Hibernation(uint32_t self, unsigned election_timeout_ms,
                std::function<bool(uint32_t peer, const std::string &payload)> send);

    /* A digest frame from `peer`, whose bytes came at heard_ms (the loop's
     * clock; no later than the next tick_all's now).  A time earlier than
     * the peer's last counts as that one. */
    void on_digest(uint32_t peer, const char *data, size_t len, uint64_t heard_ms);

    /* One tick for every group (index = partition; nullptr: not running):
     * decides who hibernates and who wakes, then runs c-raft's tick of every
     * group that is awake; sends the digests when they are due.  `peers`:
     * every other node. */
    void tick_all(const std::vector<RaftGroup *> &groups, const std::vector<uint32_t> &peers,
                  uint64_t now_ms);
    /* Every running group hibernated at the last tick_all (the owner may
     * then tick less often: nothing needs c-raft's timers). */
    bool all_asleep() const { return all_asleep_; }
    /* The last tick_all was a sleeping tick (above): it decided nothing and
     * walked no group, because nothing any decision reads had changed. */
    bool ticked_asleep() const { return ticked_asleep_; }
    /* A sleeping follower: when its leader last vouched for the partition
     * (the loop's clock; 0: unknown).  Its election timer restarts from no
     * earlier than this when it wakes (decide()). */
    uint64_t vouched_ms(uint32_t partition) const
    {
        return partition < tracks_.size() ? tracks_[partition].vouched_ms : 0;
    }

    /* How often groups went to sleep, and digests sent. */
    uint64_t hibernations() const { return hibernations_; }
    uint64_t digests_sent() const { return digests_sent_; }
    uint64_t sleeping_ticks() const { return sleeping_ticks_; }

  private:
    struct Track {
        /* the last view's state, to notice changes */
        bool running = false, leading = false;
        uint64_t term = 0, commit = 0, last = 0;
        uint32_t leader = 0;
        /* while hibernating: the view it went to sleep with (nothing in a
         * sleeping group changes without waking it) */
        GroupView asleep;
        uint64_t stable_since = 0;
        uint64_t vouched_ms = 0;  /* follower: the leader last said it hibernates us */
    };
    void decide(RaftGroup &group, Track &track, uint64_t now_ms);
    bool nothing_to_decide(const std::vector<RaftGroup *> &groups, uint64_t now_ms) const;
    void tick_asleep(const std::vector<RaftGroup *> &groups, const std::vector<uint32_t> &peers,
                     uint64_t now_ms);
    void remember_settled(const std::vector<RaftGroup *> &groups, uint64_t now_ms);
    bool fresh_peer(uint32_t peer, uint64_t now_ms) const;
    void send_digests(const std::vector<RaftGroup *> &groups, const std::vector<uint32_t> &peers);
    const PeerReport &report(uint32_t peer, uint32_t partition) const;

    uint32_t self_;
    uint64_t fresh_ms_;
    std::function<bool(uint32_t, const std::string &)> send_;
    std::vector<Track> tracks_;
    GroupView view_;                    /* scratch, reused every decision */
    std::vector<PeerReport> member_reports_; /* scratch */
    /* peer → partition → its latest record */
    std::map<uint32_t, std::vector<PeerReport>> reports_;
    std::map<uint32_t, uint64_t> heard_ms_;
    /* peer → the payload of its latest well-formed digest */
    std::map<uint32_t, std::string> payloads_;
    uint64_t next_digest_ms_ = 0;
    uint64_t hibernations_ = 0;
    uint64_t digests_sent_ = 0;
    uint64_t sleeping_ticks_ = 0;
    bool all_asleep_ = false;
    bool ticked_asleep_ = false;
    /* What the last deciding tick read, kept while every group slept after
     * it (sleeping ticks, above). */
    bool settled_ = false;
    bool reports_changed_ = true; /* a digest with other content came since */
    std::vector<RaftGroup *> settled_groups_;
    std::map<uint32_t, bool> settled_fresh_; /* peer → fresh at that tick */
    /* peer → the digest payload last sent; valid until a deciding tick */
    std::map<uint32_t, std::string> sent_;
    bool sent_valid_ = false;
};

} // namespace atomix

#endif
