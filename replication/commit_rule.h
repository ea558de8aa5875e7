/*
 * commit_rule.h — Raft's commit rule, for a c-raft 0.15 leader whose own
 * rule starves.
 *
 * c-raft 0.15 advances a leader's commit index only when a majority of
 * voters has stored the leader's *last stored* index (replicationQuorum(r,
 * r->last_stored)).  Under steady load the leader stores a new entry before
 * the acknowledgements of the previous one arrive, so that index keeps
 * running ahead of the followers and nothing commits for as long as the
 * load lasts; with one follower down it stalled for minutes.  Raft's rule is
 * the highest index a majority of voters has stored, provided the entry is
 * of the leader's current term.  Every entry from the first one a leader
 * appended in its term on is of that term, so `term_start` (that first
 * index) is all the term check needs.
 *
 * Pure function of c-raft's public struct; used by RaftGroup and by the
 * raft_fixture test that shows the stall.
 */
#ifndef ATOMIX_COMMIT_RULE_H
#define ATOMIX_COMMIT_RULE_H

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "raft_include.h"

namespace atomix {

/* The commit index Raft's rule allows the leader `r` (whose own id is
 * `self`), or 0 when it allows nothing beyond r->commit_index. */
inline uint64_t quorum_commit_index(const struct raft *r, raft_id self, uint64_t term_start)
{
    if (r->state != RAFT_LEADER || term_start == 0 || r->leader_state.progress == nullptr)
        return 0;
    /* on the stack for the usual few voters: this runs for every led group
     * whose progress moved, every loop turn */
    uint64_t small[16];
    std::vector<uint64_t> large;
    uint64_t *stored = small;
    if (r->configuration.n > 16) {
        large.resize(r->configuration.n);
        stored = large.data();
    }
    size_t voters = 0;
    for (unsigned i = 0; i < r->configuration.n; i++) {
        const struct raft_server &s = r->configuration.servers[i];
        if (s.role != RAFT_VOTER)
            continue;
        stored[voters++] = s.id == self ? r->last_stored : r->leader_state.progress[i].match_index;
    }
    if (voters == 0)
        return 0;
    std::sort(stored, stored + voters, std::greater<uint64_t>());
    uint64_t quorum = stored[voters / 2]; /* a majority stored at least this */
    if (quorum > r->commit_index && quorum >= term_start && quorum <= r->last_stored)
        return quorum;
    return 0;
}

} // namespace atomix

#endif
