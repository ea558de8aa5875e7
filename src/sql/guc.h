/*
 * guc.h — atomix settings (defined in guc.cpp, documented in README.md).
 */
#ifndef ATOMIX_GUC_H
#define ATOMIX_GUC_H

enum AtomixReadConsistency {
    ATOMIX_READ_LINEARIZABLE = 0,
    ATOMIX_READ_SEQUENTIAL = 1,
};

extern char *atomix_database;
extern int atomix_partitions;
extern int atomix_read_consistency;
extern int atomix_max_value_size;
extern int atomix_node_id;
extern char *atomix_listen_address;
extern int atomix_snapshot_threshold;
extern int atomix_snapshot_trailing;
extern int atomix_unavailable_timeout_ms;
extern char *atomix_initial_cluster;
extern int atomix_replication_factor;
extern char *atomix_cluster_secret;
extern int atomix_session_timeout_ms;
extern int atomix_id_block_size;
extern bool atomix_read_lease;

/* Test-only fault settings (superuser, reload; off by default). */
enum AtomixHoldRelease {
    ATOMIX_HOLD_RELEASE_DELIVER = 0,
    ATOMIX_HOLD_RELEASE_RESET = 1,
};
extern char *atomix_test_hold_outbound;
extern char *atomix_test_hold_inbound;
extern int atomix_test_hold_release;
extern int atomix_test_clock_offset_ms;
extern char *atomix_test_fail_apply;
extern int atomix_test_segment_size;
extern bool atomix_test_sql_writes;
extern int atomix_test_incarnation;

void atomix_define_gucs(void);

#endif
