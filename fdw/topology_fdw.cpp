/*
 * topology_fdw.cpp — atomix_fdw: the cluster's topology as foreign tables.
 *
 * The raft worker publishes what it sees of every local replica in shared
 * memory after each loop turn (AtomixShared.replicas); a scan copies that
 * under the lock at BeginForeignScan and returns rows from the copy, so one
 * scan is one consistent picture.  The foreign table option `table` says
 * which view a table is: nodes, partitions or replicas.  Columns are matched
 * by name, so the SQL definitions may list them in any order.
 *
 * Written in plain C style on purpose: no C++ object with a destructor lives
 * in these frames, so Postgres errors may longjmp through them.
 */
extern "C" {
#include "postgres.h"
#include "access/reloptions.h"
#include "catalog/pg_foreign_table.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "foreign/fdwapi.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/pathnode.h"
#include "optimizer/planmain.h"
#include "optimizer/restrictinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
}

#include <algorithm>
#include <cstdio>
#include <vector>

#include "cluster_config.h"
#include "guc.h"
#include "raft_include.h"
#include "shmem.h"

#define MAX_VOTERS 15 /* atomix.replication_factor upper bound */

/* The cluster as the settings describe it, in plain arrays. */
struct Placement {
    int nnodes;
    uint32 ids[ATOMIX_MAX_NODES];
    char addresses[ATOMIX_MAX_NODES][64];
    int self; /* position of this node */
    int nvoters;
    uint32 voters[ATOMIX_MAX_PARTITIONS][MAX_VOTERS];
};

/* Computes the placement with the same code the worker uses.  The C++
 * objects live only inside this function, which raises nothing itself. */
static bool compute_placement(Placement *out, char *problem, size_t problem_len)
{
    try {
        atomix::ClusterConfig c = atomix::ClusterConfig::parse(
            atomix_initial_cluster, (uint32_t)atomix_node_id, atomix_listen_address,
            (uint32_t)atomix_replication_factor);
        out->nnodes = (int)std::min<size_t>(c.nodes().size(), ATOMIX_MAX_NODES);
        for (int i = 0; i < out->nnodes; i++) {
            out->ids[i] = c.nodes()[i].id;
            snprintf(out->addresses[i], sizeof(out->addresses[i]), "%s", c.nodes()[i].address().c_str());
            if (c.nodes()[i].id == c.self().id)
                out->self = i;
        }
        out->nvoters = (int)std::min<uint32_t>(c.voters_per_partition(), MAX_VOTERS);
        for (int p = 0; p < atomix_partitions && p < ATOMIX_MAX_PARTITIONS; p++) {
            std::vector<uint32_t> v = c.voters((uint32_t)p);
            for (int k = 0; k < out->nvoters; k++)
                out->voters[p][k] = v[k];
        }
        return true;
    } catch (const std::exception &e) {
        snprintf(problem, problem_len, "%s", e.what());
        return false;
    }
}

enum TopologyTable { TOPOLOGY_NODES, TOPOLOGY_PARTITIONS, TOPOLOGY_REPLICAS, TOPOLOGY_STATS };

struct TopologyScan {
    TopologyTable table;
    int nrows;
    int next;
    bool worker_running;
    TimestampTz updated_at;
    TimestampTz worker_started_at;
    int npartitions;
    AtomixReplicaStatus replicas[ATOMIX_MAX_PARTITIONS];
    int32 nnodes_seen;
    AtomixNodeStatus nodes[ATOMIX_MAX_NODES];
    Placement placement;
};

static TopologyTable table_option(List *options)
{
    ListCell *lc;
    foreach (lc, options) {
        DefElem *def = (DefElem *)lfirst(lc);
        if (strcmp(def->defname, "table") != 0)
            continue;
        const char *value = defGetString(def);
        if (strcmp(value, "nodes") == 0)
            return TOPOLOGY_NODES;
        if (strcmp(value, "partitions") == 0)
            return TOPOLOGY_PARTITIONS;
        if (strcmp(value, "replicas") == 0)
            return TOPOLOGY_REPLICAS;
        if (strcmp(value, "stats") == 0)
            return TOPOLOGY_STATS;
        ereport(ERROR, (errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
                        errmsg("atomix_fdw: unknown table \"%s\"", value),
                        errhint("Use table 'nodes', 'partitions', 'replicas' or 'stats'.")));
    }
    ereport(ERROR, (errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
                    errmsg("atomix_fdw: foreign table needs the option \"table\""),
                    errhint("Use OPTIONS (table 'nodes'), 'partitions', 'replicas' or 'stats'.")));
    return TOPOLOGY_NODES; /* unreachable */
}

static const char *role_name(int role)
{
    switch (role) {
    case RAFT_FOLLOWER:
        return "follower";
    case RAFT_CANDIDATE:
        return "candidate";
    case RAFT_LEADER:
        return "leader";
    default:
        return "unavailable";
    }
}

static void get_rel_size(PlannerInfo *, RelOptInfo *baserel, Oid)
{
    baserel->rows = atomix_partitions;
}

static void get_paths(PlannerInfo *root, RelOptInfo *baserel, Oid)
{
    add_path(baserel, (Path *)create_foreignscan_path(root, baserel, NULL, baserel->rows, 1,
                                                      1 + baserel->rows, NIL,
                                                      baserel->lateral_relids, NULL, NIL));
}

static ForeignScan *get_plan(PlannerInfo *, RelOptInfo *baserel, Oid, ForeignPath *,
                             List *tlist, List *scan_clauses, Plan *outer_plan)
{
    /* every qual is checked by the executor; the tables are tiny */
    scan_clauses = extract_actual_clauses(scan_clauses, false);
    return make_foreignscan(tlist, scan_clauses, baserel->relid, NIL, NIL, NIL, NIL, outer_plan);
}

static void begin_scan(ForeignScanState *node, int)
{
    if (atomix_shared == NULL)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("atomix must be loaded via shared_preload_libraries"),
                        errhint("Add 'atomix' to shared_preload_libraries in postgresql.conf "
                                "and restart the server.")));
    ForeignTable *ft = GetForeignTable(RelationGetRelid(node->ss.ss_currentRelation));
    TopologyScan *scan = (TopologyScan *)palloc0(sizeof(TopologyScan));
    scan->table = table_option(ft->options);
    scan->npartitions = Min(atomix_partitions, ATOMIX_MAX_PARTITIONS);
    char problem[256];
    if (!compute_placement(&scan->placement, problem, sizeof(problem)))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("invalid atomix cluster settings: %s", problem)));

    /* the worker publishes its status on demand: ask for a fresh one */
    (void)atomix_request_status(250);
    LWLockAcquire(atomix_shared->lock, LW_SHARED);
    scan->worker_running = atomix_shared->worker_phase == WORKER_RUNNING;
    scan->updated_at = atomix_shared->status_updated_at;
    scan->worker_started_at = atomix_shared->worker_started_at;
    memcpy(scan->replicas, atomix_shared->replicas, sizeof(scan->replicas));
    scan->nnodes_seen = atomix_shared->nnodes;
    memcpy(scan->nodes, atomix_shared->nodes, sizeof(scan->nodes));
    LWLockRelease(atomix_shared->lock);

    int nnodes = scan->placement.nnodes;
    scan->nrows = scan->table == TOPOLOGY_NODES     ? nnodes
                  : scan->table == TOPOLOGY_REPLICAS ? scan->npartitions * nnodes
                                                     : scan->npartitions;
    node->fdw_state = scan;
}

/* Sets column `name` of the slot, if the table has it. */
static void set_column(TupleTableSlot *slot, const char *name, Datum value, bool isnull)
{
    TupleDesc desc = slot->tts_tupleDescriptor;
    for (int i = 0; i < desc->natts; i++) {
        Form_pg_attribute att = TupleDescAttr(desc, i);
        if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0) {
            slot->tts_values[i] = value;
            slot->tts_isnull[i] = isnull;
            return;
        }
    }
}

/* nodes: one row per node of atomix.initial_cluster.  A peer is "up" while
 * our transport holds an authenticated connection to it. */
static void fill_node(TopologyScan *scan, int i, TupleTableSlot *slot)
{
    const Placement &pl = scan->placement;
    bool local = i == pl.self;
    bool up = false;
    TimestampTz contact = 0;
    for (int k = 0; k < scan->nnodes_seen; k++)
        if (scan->nodes[k].id == pl.ids[i]) {
            up = scan->nodes[k].connected;
            contact = scan->nodes[k].last_contact;
        }
    if (local) {
        up = scan->worker_running;
        contact = scan->updated_at;
    }
    set_column(slot, "node_id", Int32GetDatum((int32)pl.ids[i]), false);
    set_column(slot, "address", CStringGetTextDatum(pl.addresses[i]), false);
    set_column(slot, "state", CStringGetTextDatum(up ? "up" : "down"), false);
    set_column(slot, "last_contact", TimestampTzGetDatum(contact), contact == 0);
    set_column(slot, "is_local", BoolGetDatum(local), false);
}

static void fill_partition(TopologyScan *scan, int p, TupleTableSlot *slot)
{
    const AtomixReplicaStatus *r = &scan->replicas[p];
    Datum members[MAX_VOTERS];
    for (int k = 0; k < scan->placement.nvoters; k++)
        members[k] = Int32GetDatum((int32)scan->placement.voters[p][k]);
    ArrayType *replicas =
        construct_array(members, scan->placement.nvoters, INT4OID, 4, true, TYPALIGN_INT);
    set_column(slot, "partition_id", Int32GetDatum(p), false);
    set_column(slot, "leader_node", Int32GetDatum(r->leader_node), r->leader_node == 0);
    set_column(slot, "term", Int64GetDatum((int64)r->term), false);
    set_column(slot, "commit_index", Int64GetDatum((int64)r->commit_index), false);
    set_column(slot, "applied_index", Int64GetDatum((int64)r->applied_index), false);
    set_column(slot, "replicas", PointerGetDatum(replicas), false);
    /* this node's replica: serving, or halted after a machine failure */
    const char *status = !scan->worker_running ? "unavailable"
                         : r->halted          ? "halted"
                         : r->stalled         ? "stalled"
                                              : "serving";
    set_column(slot, "status", CStringGetTextDatum(status), false);
    set_column(slot, "last_error", CStringGetTextDatum(r->last_error), r->last_error[0] == '\0');
    set_column(slot, "retry_at", TimestampTzGetDatum(r->restart_at), !r->halted || r->restart_at == 0);
    set_column(slot, "apply_failures", Int64GetDatum((int64)r->apply_failures), false);
    set_column(slot, "resends", Int64GetDatum((int64)r->resends), false);
    set_column(slot, "duplicates_dropped", Int64GetDatum((int64)r->duplicates_dropped), false);
}

/* replicas: one row per (partition, node).  This node's own replica shows
 * what its worker applied; other replicas are known only where this node
 * leads (the index c-raft has replicated to them), else their columns are
 * NULL. */
static void fill_replica(TopologyScan *scan, int row, TupleTableSlot *slot)
{
    const Placement &pl = scan->placement;
    int p = row / pl.nnodes;
    int i = row % pl.nnodes;
    const AtomixReplicaStatus *r = &scan->replicas[p];
    uint32 id = pl.ids[i];
    bool voter = false;
    for (int k = 0; k < pl.nvoters; k++)
        voter |= pl.voters[p][k] == id;

    const char *role;
    bool known = false;
    int64 applied = 0, lag = 0;
    if (i == pl.self) {
        role = scan->worker_running ? role_name(r->role) : "unavailable";
        if (r->role == RAFT_FOLLOWER && !voter)
            role = "standby";
        known = true;
        applied = (int64)r->applied_index;
        lag = r->commit_index > r->applied_index ? (int64)(r->commit_index - r->applied_index) : 0;
    } else {
        role = (uint32)r->leader_node == id ? "leader" : voter ? "follower" : "standby";
        if (r->role == RAFT_LEADER && i < ATOMIX_MAX_NODES && r->match_index[i] > 0) {
            known = true;
            applied = (int64)r->match_index[i];
            lag = r->last_index > r->match_index[i] ? (int64)(r->last_index - r->match_index[i]) : 0;
        }
    }
    set_column(slot, "partition_id", Int32GetDatum(p), false);
    set_column(slot, "node_id", Int32GetDatum((int32)id), false);
    set_column(slot, "role", CStringGetTextDatum(role), false);
    set_column(slot, "applied_index", Int64GetDatum(applied), !known);
    set_column(slot, "lag", Int64GetDatum(lag), !known);
}

/* stats: one row per partition, what this node's replica did since its
 * raft worker started. */
static void fill_stats(TopologyScan *scan, int p, TupleTableSlot *slot)
{
    const AtomixReplicaStatus *r = &scan->replicas[p];
    const AtomixPartitionStats *s = &r->stats;
    set_column(slot, "partition_id", Int32GetDatum(p), false);
    set_column(slot, "role", CStringGetTextDatum(scan->worker_running ? role_name(r->role) : "unavailable"),
               false);
    set_column(slot, "since", TimestampTzGetDatum(scan->worker_started_at), scan->worker_started_at == 0);
    set_column(slot, "proposals", Int64GetDatum((int64)s->proposals), false);
    set_column(slot, "log_writes", Int64GetDatum((int64)s->log_writes), false);
    set_column(slot, "entries_applied", Int64GetDatum((int64)s->entries_applied), false);
    set_column(slot, "commands_applied", Int64GetDatum((int64)s->commands_applied), false);
    set_column(slot, "bytes_applied", Int64GetDatum((int64)s->bytes_applied), false);
    set_column(slot, "apply_time", Float8GetDatum((double)s->apply_us / 1000.0), false);
    set_column(slot, "forwarded", Int64GetDatum((int64)s->forwarded), false);
    set_column(slot, "forwards_taken", Int64GetDatum((int64)s->forwards_taken), false);
    set_column(slot, "elections_won", Int64GetDatum((int64)s->elections_won), false);
    set_column(slot, "read_rounds", Int64GetDatum((int64)s->read_rounds), false);
    set_column(slot, "reads_confirmed", Int64GetDatum((int64)s->reads_confirmed), false);
    set_column(slot, "reads_served", Int64GetDatum((int64)s->reads_served), false);
    set_column(slot, "raft_messages", Int64GetDatum((int64)s->raft_messages), false);
    set_column(slot, "hibernating", BoolGetDatum(scan->worker_running && s->hibernating), false);
    set_column(slot, "hibernations", Int64GetDatum((int64)s->hibernations), false);
}

static TupleTableSlot *iterate_scan(ForeignScanState *node)
{
    TopologyScan *scan = (TopologyScan *)node->fdw_state;
    TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;
    ExecClearTuple(slot);
    if (scan->next >= scan->nrows)
        return slot;

    TupleDesc desc = slot->tts_tupleDescriptor;
    for (int i = 0; i < desc->natts; i++)
        slot->tts_isnull[i] = true;
    switch (scan->table) {
    case TOPOLOGY_NODES:
        fill_node(scan, scan->next, slot);
        break;
    case TOPOLOGY_PARTITIONS:
        fill_partition(scan, scan->next, slot);
        break;
    case TOPOLOGY_REPLICAS:
        fill_replica(scan, scan->next, slot);
        break;
    case TOPOLOGY_STATS:
        fill_stats(scan, scan->next, slot);
        break;
    }
    scan->next++;
    return ExecStoreVirtualTuple(slot);
}

static void rescan(ForeignScanState *node) { ((TopologyScan *)node->fdw_state)->next = 0; }

static void end_scan(ForeignScanState *) {}

extern "C" {
PG_FUNCTION_INFO_V1(atomix_fdw_handler);
PG_FUNCTION_INFO_V1(atomix_fdw_validator);
}

extern "C" Datum atomix_fdw_handler(PG_FUNCTION_ARGS)
{
    FdwRoutine *routine = makeNode(FdwRoutine);
    routine->GetForeignRelSize = get_rel_size;
    routine->GetForeignPaths = get_paths;
    routine->GetForeignPlan = get_plan;
    routine->BeginForeignScan = begin_scan;
    routine->IterateForeignScan = iterate_scan;
    routine->ReScanForeignScan = rescan;
    routine->EndForeignScan = end_scan;
    PG_RETURN_POINTER(routine);
}

/* Checks foreign table options at CREATE/ALTER time. */
extern "C" Datum atomix_fdw_validator(PG_FUNCTION_ARGS)
{
    List *options = untransformRelOptions(PG_GETARG_DATUM(0));
    Oid catalog = PG_GETARG_OID(1);
    if (catalog == ForeignTableRelationId)
        (void)table_option(options);
    else if (options != NIL)
        ereport(ERROR, (errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
                        errmsg("atomix_fdw takes options only on foreign tables"),
                        errhint("Set OPTIONS (table '...') on the foreign table.")));
    PG_RETURN_VOID();
}
