/*
 * guc.cpp — definitions of the atomix.* settings.
 *
 * Settings that shape the on-disk layout or shared memory (database,
 * partitions, node identity) are PGC_POSTMASTER: changing them needs a
 * restart, and changing `partitions` on an existing cluster is refused by
 * the worker rather than silently moving state.
 */
extern "C" {
#include "postgres.h"
#include "utils/guc.h"
}

#include "clock.h"
#include "guc.h"

char *atomix_database = NULL;
int atomix_partitions = 16;
int atomix_read_consistency = ATOMIX_READ_LINEARIZABLE;
int atomix_max_value_size = 1024 * 1024;
int atomix_node_id = 1;
char *atomix_listen_address = NULL;
int atomix_snapshot_threshold = 4096;
int atomix_snapshot_trailing = 1024;
int atomix_unavailable_timeout_ms = 10000;
char *atomix_initial_cluster = NULL;
int atomix_replication_factor = 3;
char *atomix_cluster_secret = NULL;
int atomix_session_timeout_ms = 10000;
int atomix_id_block_size = 1000;
bool atomix_read_lease = true;
char *atomix_test_hold_outbound = NULL;
char *atomix_test_hold_inbound = NULL;
int atomix_test_hold_release = ATOMIX_HOLD_RELEASE_DELIVER;
int atomix_test_clock_offset_ms = 0;
char *atomix_test_fail_apply = NULL;
int atomix_test_segment_size = 0;
bool atomix_test_sql_writes = false;
int atomix_test_incarnation = -1;

static const struct config_enum_entry hold_release_options[] = {
    {"deliver", ATOMIX_HOLD_RELEASE_DELIVER, false},
    {"reset", ATOMIX_HOLD_RELEASE_RESET, false},
    {NULL, 0, false},
};

static void assign_clock_offset(int newval, void *)
{
    atomix::wall_clock_offset_us = (int64_t)newval * 1000;
}

static const struct config_enum_entry read_consistency_options[] = {
    {"linearizable", ATOMIX_READ_LINEARIZABLE, false},
    {"sequential", ATOMIX_READ_SEQUENTIAL, false},
    {NULL, 0, false},
};

void atomix_define_gucs(void)
{
    DefineCustomStringVariable(
        "atomix.database", "Database in which the atomix extension lives.",
        "The raft worker connects to this database; atomix functions work only there.",
        &atomix_database, "postgres", PGC_POSTMASTER, 0, NULL, NULL, NULL);

    DefineCustomIntVariable(
        "atomix.partitions", "Number of partitions (Raft groups) primitive state is sharded over.",
        "Fixed for the life of a cluster: the worker refuses to start if it differs from the "
        "value the extension was created with.",
        &atomix_partitions, 16, 1, 256, PGC_POSTMASTER, 0, NULL, NULL, NULL);

    DefineCustomEnumVariable(
        "atomix.read_consistency", "Consistency of atomix reads.",
        "linearizable reads wait until the leader confirmed its leadership with a quorum and "
        "the local replica applied the leader's commit index; sequential reads read the local "
        "replica.",
        &atomix_read_consistency, ATOMIX_READ_LINEARIZABLE, read_consistency_options, PGC_USERSET,
        0, NULL, NULL, NULL);

    DefineCustomIntVariable(
        "atomix.max_value_size", "Largest map value accepted, in bytes.", NULL,
        &atomix_max_value_size, 1024 * 1024, 1, 64 * 1024 * 1024, PGC_SUSET, GUC_UNIT_BYTE, NULL,
        NULL, NULL);

    DefineCustomIntVariable(
        "atomix.node_id", "This server's id in the atomix cluster.", NULL, &atomix_node_id, 1, 1,
        65535, PGC_POSTMASTER, 0, NULL, NULL, NULL);

    DefineCustomStringVariable(
        "atomix.listen_address", "host:port of this node's atomix transport.", NULL,
        &atomix_listen_address, "127.0.0.1:7401", PGC_POSTMASTER, 0, NULL, NULL, NULL);

    DefineCustomIntVariable(
        "atomix.snapshot_threshold",
        "Applied log entries after which a partition takes a snapshot and compacts its log.",
        "Snapshots run on the worker's loop; lower values bound memory and disk, higher values "
        "cost less throughput.",
        &atomix_snapshot_threshold, 4096, 16, 1000000, PGC_POSTMASTER, 0, NULL, NULL, NULL);

    DefineCustomIntVariable(
        "atomix.snapshot_trailing", "Log entries kept behind a snapshot for lagging replicas.",
        NULL, &atomix_snapshot_trailing, 1024, 0, 1000000, PGC_POSTMASTER, 0, NULL, NULL, NULL);

    DefineCustomIntVariable(
        "atomix.unavailable_timeout",
        "How long a request waits for its partition to have a leader before failing.", NULL,
        &atomix_unavailable_timeout_ms, 10000, 100, 300 * 1000, PGC_SIGHUP, GUC_UNIT_MS, NULL,
        NULL, NULL);

    DefineCustomStringVariable(
        "atomix.initial_cluster", "Every node of the cluster, as id=host:port,...",
        "The same on every node.  Empty: a one-node cluster of atomix.node_id at "
        "atomix.listen_address.",
        &atomix_initial_cluster, "", PGC_POSTMASTER, 0, NULL, NULL, NULL);

    DefineCustomIntVariable(
        "atomix.replication_factor", "Voting replicas per partition.",
        "Capped at the number of nodes; the other nodes keep non-voting copies.",
        &atomix_replication_factor, 3, 1, 15, PGC_POSTMASTER, 0, NULL, NULL, NULL);

    DefineCustomStringVariable(
        "atomix.cluster_secret", "Shared secret every node must prove it holds.",
        "Required when the cluster has more than one node.", &atomix_cluster_secret, "",
        PGC_POSTMASTER, GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL, NULL, NULL, NULL);

    DefineCustomIntVariable(
        "atomix.session_timeout",
        "How long a node's sessions outlive their last renewal when the node is cut off or dead.",
        "Their locks, candidacies and permits are released after this much log time.",
        &atomix_session_timeout_ms, 10000, 1000, 300 * 1000, PGC_SIGHUP, GUC_UNIT_MS, NULL,
        NULL, NULL);

    DefineCustomBoolVariable(
        "atomix.read_lease",
        "Lets a partition's leader serve linearizable reads without a confirmation round while "
        "its voters' promises hold.",
        "A follower promises not to elect anyone until its election timer runs out; the leader "
        "counts the promise at 90% on its own monotonic clock.  Off: every read batch costs a "
        "round to a quorum, and nothing depends on clock rates.",
        &atomix_read_lease, true, PGC_SIGHUP, 0, NULL, NULL, NULL);

    DefineCustomIntVariable(
        "atomix.id_block_size", "Ids each node reserves at once for atomix.next_id().",
        "Larger blocks mean fewer Raft round trips and bigger gaps after a restart.",
        &atomix_id_block_size, 1000, 1, 1000000, PGC_SIGHUP, 0, NULL, NULL, NULL);

    /* Fault injection for the test suites (test/tap, test/chaos).  Reload
     * context: only the server configuration (a superuser's ALTER SYSTEM)
     * sets them, never an ordinary role; all are off by default. */
    DefineCustomStringVariable(
        "atomix.test_hold_outbound", "Test only: peer node ids (or *) whose frames this node holds.",
        "Emulates a firewall dropping this node's traffic to them while TCP retransmits.",
        &atomix_test_hold_outbound, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY | GUC_NOT_IN_SAMPLE, NULL,
        NULL, NULL);
    DefineCustomStringVariable(
        "atomix.test_hold_inbound", "Test only: peer node ids (or *) whose frames this node does not hear.",
        NULL, &atomix_test_hold_inbound, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY | GUC_NOT_IN_SAMPLE, NULL,
        NULL, NULL);
    DefineCustomEnumVariable(
        "atomix.test_hold_release", "Test only: how a lifted hold ends.",
        "deliver sends the held frames in order; reset drops them with the connections.",
        &atomix_test_hold_release, ATOMIX_HOLD_RELEASE_DELIVER, hold_release_options, PGC_SIGHUP,
        GUC_SUPERUSER_ONLY | GUC_NOT_IN_SAMPLE, NULL, NULL, NULL);
    DefineCustomIntVariable(
        "atomix.test_clock_offset", "Test only: shifts this node's wall clock as atomix reads it.",
        "Emulates a clock step; the monotonic clock is left alone.", &atomix_test_clock_offset_ms, 0,
        -86400 * 1000, 86400 * 1000, PGC_SIGHUP, GUC_UNIT_MS | GUC_SUPERUSER_ONLY | GUC_NOT_IN_SAMPLE,
        NULL, assign_clock_offset, NULL);
    DefineCustomStringVariable(
        "atomix.test_fail_apply", "Test only: partition ids (or *) whose apply fails on this node.",
        "Emulates a storage failure while applying committed entries.", &atomix_test_fail_apply, "",
        PGC_SIGHUP, GUC_SUPERUSER_ONLY | GUC_NOT_IN_SAMPLE, NULL, NULL, NULL);
    DefineCustomIntVariable(
        "atomix.test_segment_size", "Test only: size of the Raft log segments raft_uv preallocates.",
        "0 keeps the default (1MB).  Small segments make a full disk bite at once: raft_uv "
        "writes into preallocated space and fails only when it prepares the next segment.",
        &atomix_test_segment_size, 0, 0, 64 * 1024 * 1024, PGC_POSTMASTER,
        GUC_UNIT_BYTE | GUC_SUPERUSER_ONLY | GUC_NOT_IN_SAMPLE, NULL, NULL, NULL);
    DefineCustomBoolVariable(
        "atomix.test_sql_writes", "Test only: the raft worker writes every row by SQL.",
        "Turns off the direct writes of bgworker/table_writer.h, as a table with triggers "
        "does: for comparing the two paths in one run.",
        &atomix_test_sql_writes, false, PGC_SIGHUP, GUC_SUPERUSER_ONLY | GUC_NOT_IN_SAMPLE, NULL,
        NULL, NULL);
    DefineCustomIntVariable(
        "atomix.test_incarnation", "Test only: where a raft worker life starts looking for its request id bits.",
        "-1 starts at a random value.  A fixed start makes two lives want the same bits, which "
        "the second must then avoid (bgworker/request_ids.cpp).",
        &atomix_test_incarnation, -1, -1, 0xffff, PGC_SIGHUP, GUC_SUPERUSER_ONLY | GUC_NOT_IN_SAMPLE, NULL,
        NULL, NULL);

    MarkGUCPrefixReserved("atomix");
}
