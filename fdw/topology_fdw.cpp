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

#include "guc.h"
#include "raft_include.h"
#include "shmem.h"

enum TopologyTable { TOPOLOGY_NODES, TOPOLOGY_PARTITIONS, TOPOLOGY_REPLICAS };

struct TopologyScan {
    TopologyTable table;
    int nrows;
    int next;
    bool worker_running;
    TimestampTz updated_at;
    int npartitions;
    AtomixReplicaStatus replicas[ATOMIX_MAX_PARTITIONS];
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
        ereport(ERROR, (errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
                        errmsg("atomix_fdw: unknown table \"%s\"", value),
                        errhint("Use table 'nodes', 'partitions' or 'replicas'.")));
    }
    ereport(ERROR, (errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
                    errmsg("atomix_fdw: foreign table needs the option \"table\""),
                    errhint("Use OPTIONS (table 'nodes'), 'partitions' or 'replicas'.")));
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

    LWLockAcquire(atomix_shared->lock, LW_SHARED);
    scan->worker_running = atomix_shared->worker_phase == WORKER_RUNNING;
    scan->updated_at = atomix_shared->status_updated_at;
    memcpy(scan->replicas, atomix_shared->replicas, sizeof(scan->replicas));
    LWLockRelease(atomix_shared->lock);

    scan->nrows = scan->table == TOPOLOGY_NODES ? 1 : scan->npartitions;
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

static void fill_node(TopologyScan *scan, TupleTableSlot *slot)
{
    set_column(slot, "node_id", Int32GetDatum(atomix_node_id), false);
    set_column(slot, "address", CStringGetTextDatum(atomix_listen_address), false);
    set_column(slot, "state", CStringGetTextDatum(scan->worker_running ? "up" : "down"), false);
    set_column(slot, "last_contact", TimestampTzGetDatum(scan->updated_at), scan->updated_at == 0);
    set_column(slot, "is_local", BoolGetDatum(true), false);
}

static void fill_partition(TopologyScan *scan, int p, TupleTableSlot *slot)
{
    const AtomixReplicaStatus *r = &scan->replicas[p];
    Datum member = Int32GetDatum(atomix_node_id);
    ArrayType *replicas = construct_array(&member, 1, INT4OID, 4, true, TYPALIGN_INT);
    set_column(slot, "partition_id", Int32GetDatum(p), false);
    set_column(slot, "leader_node", Int32GetDatum(r->leader_node), r->leader_node == 0);
    set_column(slot, "term", Int64GetDatum((int64)r->term), false);
    set_column(slot, "commit_index", Int64GetDatum((int64)r->commit_index), false);
    set_column(slot, "applied_index", Int64GetDatum((int64)r->applied_index), false);
    set_column(slot, "replicas", PointerGetDatum(replicas), false);
}

static void fill_replica(TopologyScan *scan, int p, TupleTableSlot *slot)
{
    const AtomixReplicaStatus *r = &scan->replicas[p];
    int64 lag = r->commit_index > r->applied_index ? (int64)(r->commit_index - r->applied_index) : 0;
    set_column(slot, "partition_id", Int32GetDatum(p), false);
    set_column(slot, "node_id", Int32GetDatum(atomix_node_id), false);
    set_column(slot, "role", CStringGetTextDatum(scan->worker_running ? role_name(r->role) : "unavailable"),
               false);
    set_column(slot, "applied_index", Int64GetDatum((int64)r->applied_index), false);
    set_column(slot, "lag", Int64GetDatum(lag), false);
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
        fill_node(scan, slot);
        break;
    case TOPOLOGY_PARTITIONS:
        fill_partition(scan, scan->next, slot);
        break;
    case TOPOLOGY_REPLICAS:
        fill_replica(scan, scan->next, slot);
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
