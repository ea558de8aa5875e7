/*
 * append_vouching.h — a workaround for c-raft 0.15 on the follower side,
 * shared by RaftGroup (the worker) and the deterministic simulation
 * (test/unit/sim), so both run c-raft the same way.
 *
 * c-raft 0.15 answers a successful AppendEntries with its last *stored*
 * index, which may include a stale tail from an older term that the leader
 * never sent; the leader then counts those entries as replicated and can
 * commit (and acknowledge) writes that are lost later (the simulation shows
 * it within 2000 seeds without this: an old leader applied entries 161..163
 * that no other replica had, and the next leader wrote others there).  The
 * answer is clamped to what the current leader's messages actually vouched
 * for: entries up to prev_log_index + n_entries of an accepted append, or a
 * snapshot's last index once it is installed.
 *
 * Use: around handing a received message to c-raft call before_receive()
 * and after_receive(); on every message c-raft sends call on_send().
 */
#ifndef ATOMIX_APPEND_VOUCHING_H
#define ATOMIX_APPEND_VOUCHING_H

#include <cstdint>

#include "raft_include.h"

namespace atomix {

class AppendVouching {
  public:
    /* A message from the leader is about to be handed to c-raft. */
    void before_receive(const struct raft_message &msg)
    {
        receiving_append_ = msg.type == RAFT_IO_APPEND_ENTRIES;
        accepted_ = rejected_ = false;
        if (msg.type == RAFT_IO_INSTALL_SNAPSHOT) {
            snapshot_term_ = msg.install_snapshot.term;
            snapshot_last_ = msg.install_snapshot.last_index;
        } else if (receiving_append_) {
            term_ = msg.append_entries.term;
            covered_ = msg.append_entries.prev_log_index + msg.append_entries.n_entries;
            carries_entries_ = msg.append_entries.n_entries > 0;
        }
    }

    /* c-raft is done with it; last_index: its log's last index now. */
    void after_receive(const struct raft_message &msg, uint64_t last_index)
    {
        bool append = receiving_append_;
        receiving_append_ = false;
        if (msg.type == RAFT_IO_INSTALL_SNAPSHOT) {
            /* a snapshot holds only committed entries: once installed, our
             * log matches every leader's up to its last index, and c-raft's
             * answer must be allowed to say so, or the leader never leaves
             * its "sending a snapshot" state for us */
            vouch(snapshot_term_, snapshot_last_);
            return;
        }
        if (!append)
            return;
        /* a heartbeat is answered at once, an append with entries after the
         * disk write, or rejected at once */
        bool accepted = accepted_ || (carries_entries_ && !rejected_ && last_index >= covered_);
        if (accepted)
            vouch(term_, covered_);
    }

    /* c-raft sends `msg` (a copy the caller may change). */
    void on_send(struct raft_message &msg)
    {
        if (msg.type != RAFT_IO_APPEND_ENTRIES_RESULT)
            return;
        if (receiving_append_)
            (msg.append_entries_result.rejected == 0 ? accepted_ : rejected_) = true;
        if (msg.append_entries_result.rejected != 0)
            return;
        uint64_t vouched = msg.append_entries_result.term == vouched_term_ ? vouched_index_ : 0;
        if (msg.append_entries_result.last_log_index > vouched)
            msg.append_entries_result.last_log_index = vouched;
    }

  private:
    void vouch(uint64_t term, uint64_t index)
    {
        if (term > vouched_term_) {
            vouched_term_ = term;
            vouched_index_ = 0;
        }
        if (term == vouched_term_ && index > vouched_index_)
            vouched_index_ = index;
    }

    /* highest index the current-term leader's messages vouched for */
    uint64_t vouched_term_ = 0;
    uint64_t vouched_index_ = 0;
    /* the message being received */
    bool receiving_append_ = false;
    bool accepted_ = false, rejected_ = false;
    uint64_t term_ = 0, covered_ = 0;
    bool carries_entries_ = false;
    uint64_t snapshot_term_ = 0, snapshot_last_ = 0;
};

} // namespace atomix

#endif
