/*
 * partition_stats.h — the work counters of one local replica (atomix.stats),
 * shared by the worker that counts them and the foreign table that shows them.
 */
#ifndef ATOMIX_PARTITION_STATS_H
#define ATOMIX_PARTITION_STATS_H

#include <cstdint>

/* What one local replica did since the raft worker started (atomix.stats). */
struct AtomixPartitionStats {
    uint64_t proposals;        /* entries this node proposed as leader */
    uint64_t log_writes;       /* Raft log writes handed to raft_uv (durable before they complete) */
    uint64_t entries_applied;  /* entries applied to the partition tables */
    uint64_t commands_applied; /* commands in them */
    uint64_t bytes_applied;
    uint64_t apply_us;         /* time spent applying them */
    uint64_t forwarded;        /* commands sent to the leader on another node */
    uint64_t forwards_taken;   /* other nodes' commands taken as the leader */
    uint64_t elections_won;    /* times this node became the leader */
    uint64_t read_rounds;      /* leadership confirmations (read index) this node led */
    uint64_t reads_confirmed;  /* reads, of any node, those rounds confirmed */
    uint64_t reads_served;     /* this node's linearizable reads answered by read index */
    uint64_t raft_messages;    /* Raft messages this replica sent, heartbeats included */
    uint64_t hibernations;     /* times it went idle (hibernation.h) */
    bool hibernating;          /* idle right now: no heartbeats */
};

#endif
