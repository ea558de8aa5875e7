/*
 * table_writer.cpp — see table_writer.h.
 */
extern "C" {
#include "postgres.h"
#include "access/genam.h"
#include "access/nbtree.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/executor.h"
#include "nodes/makefuncs.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
}

#include <vector>

#include "guc.h"
#include "pg_bridge.h"
#include "table_writer.h"

namespace atomix {

struct TableWriter::Open {
    Relation rel;
    Relation pk; /* the primary key's index: how a row is found */
    EState *estate;
    ResultRelInfo *rri;
    TupleTableSlot *row; /* the row being written (virtual) */
    int nkeys;
    AttrNumber key_attno[INDEX_MAX_KEYS];
    RegProcedure key_eq[INDEX_MAX_KEYS];
    Oid key_collation[INDEX_MAX_KEYS];
    bool has_triggers;
};

/* Writers with something open in the current turn transaction, and which
 * transaction that is (bumped whenever one ends). */
static std::vector<TableWriter *> open_writers;
static uint64_t current_turn = 1;

TableWriter::Open *TableWriter::open()
{
    if (open_ && turn_ == current_turn)
        return open_;
    open_ = nullptr;
    Open *o = nullptr;
    const char *table = table_.c_str();
    ResourceOwner saved_owner = CurrentResourceOwner;
    try {
        pg_guard([&] {
            /* everything below outlives the entry's subtransaction */
            MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
            CurrentResourceOwner = TopTransactionResourceOwner;
            Oid relid = get_relname_relid(table, get_namespace_oid("atomix", false));
            if (!OidIsValid(relid))
                ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
                                errmsg("atomix: table atomix.%s does not exist", table)));
            o = (Open *)palloc0(sizeof(Open));
            o->rel = table_open(relid, RowExclusiveLock);
            Oid pk = RelationGetPrimaryKeyIndex(o->rel);
            if (!OidIsValid(pk))
                ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED),
                                errmsg("atomix: table atomix.%s has no primary key", table)));
            o->pk = index_open(pk, RowExclusiveLock);
            o->nkeys = IndexRelationGetNumberOfKeyAttributes(o->pk);
            for (int i = 0; i < o->nkeys; i++) {
                Oid opfamily = o->pk->rd_opfamily[i];
                Oid type = o->pk->rd_opcintype[i];
                Oid eq = get_opfamily_member(opfamily, type, type, BTEqualStrategyNumber);
                if (!OidIsValid(eq))
                    elog(ERROR, "atomix: no equality operator for column %d of the primary key of %s",
                         i + 1, table);
                o->key_attno[i] = o->pk->rd_index->indkey.values[i];
                o->key_eq[i] = get_opcode(eq);
                o->key_collation[i] = o->pk->rd_indcollation[i];
            }
            o->estate = CreateExecutorState();
            RangeTblEntry *rte = makeNode(RangeTblEntry);
            rte->rtekind = RTE_RELATION;
            rte->relid = relid;
            rte->relkind = o->rel->rd_rel->relkind;
            rte->rellockmode = RowExclusiveLock;
            ExecInitRangeTable(o->estate, list_make1(rte));
            o->rri = makeNode(ResultRelInfo);
            InitResultRelInfo(o->rri, o->rel, 1, NULL, 0);
            ExecOpenIndices(o->rri, false);
            o->row = ExecInitExtraTupleSlot(o->estate, RelationGetDescr(o->rel), &TTSOpsVirtual);
            o->has_triggers = o->rel->trigdesc != NULL;
            CurrentResourceOwner = saved_owner;
            MemoryContextSwitchTo(old);
        });
    } catch (...) {
        CurrentResourceOwner = saved_owner;
        throw;
    }
    open_ = o;
    turn_ = current_turn;
    open_writers.push_back(this);
    return o;
}

bool TableWriter::usable() { return !atomix_test_sql_writes && !open()->has_triggers; }

/* The row in the writer's slot: `values` are the table's live columns in
 * order (dropped columns are skipped). */
static void fill_row(TupleTableSlot *row, Relation rel, const Datum *values, const bool *nulls)
{
    TupleDesc desc = RelationGetDescr(rel);
    ExecClearTuple(row);
    for (int a = 0, given = 0; a < desc->natts; a++) {
        if (TupleDescAttr(desc, a)->attisdropped) {
            row->tts_values[a] = (Datum)0;
            row->tts_isnull[a] = true;
        } else {
            row->tts_values[a] = values[given];
            row->tts_isnull[a] = nulls[given];
            given++;
        }
    }
    ExecStoreVirtualTuple(row);
}

void TableWriter::insert(const Datum *values, const bool *nulls)
{
    Open *o = open();
    pg_guard([&] {
        CommandCounterIncrement();
        fill_row(o->row, o->rel, values, nulls);
        ExecSimpleRelationInsert(o->rri, o->estate, o->row);
        ExecClearTuple(o->row);
        ResetPerTupleExprContext(o->estate);
    });
}

void TableWriter::upsert(const Datum *values, const bool *nulls)
{
    Open *o = open();
    pg_guard([&] {
        /* a row written earlier in this transaction is updated only from a
         * later command, and SnapshotSelf sees it */
        CommandCounterIncrement();
        TupleTableSlot *row = o->row;
        fill_row(row, o->rel, values, nulls);

        ScanKeyData keys[INDEX_MAX_KEYS];
        for (int i = 0; i < o->nkeys; i++) {
            ScanKeyInit(&keys[i], (AttrNumber)(i + 1), BTEqualStrategyNumber, o->key_eq[i],
                        row->tts_values[o->key_attno[i] - 1]);
            keys[i].sk_collation = o->key_collation[i];
        }
        /* per call, not per turn: if this entry's subtransaction rolls back,
         * the pin it holds goes with it */
        TupleTableSlot *found = table_slot_create(o->rel, NULL);
        IndexScanDesc scan = index_beginscan(o->rel, o->pk, SnapshotSelf, o->nkeys, 0);
        index_rescan(scan, keys, o->nkeys, NULL, 0);
        bool exists = index_getnext_slot(scan, ForwardScanDirection, found);
        index_endscan(scan);
        if (exists)
            ExecSimpleRelationUpdate(o->rri, o->estate, NULL, found, row);
        else
            ExecSimpleRelationInsert(o->rri, o->estate, row);
        ExecDropSingleTupleTableSlot(found);
        ExecClearTuple(row);
        ResetPerTupleExprContext(o->estate);
    });
}

void close_table_writers()
{
    ResourceOwner saved_owner = CurrentResourceOwner;
    std::vector<TableWriter *> writers;
    writers.swap(open_writers);
    current_turn++;
    for (TableWriter *w : writers) {
        TableWriter::Open *o = w->open_;
        w->open_ = nullptr;
        if (!o)
            continue;
        try {
            pg_guard([&] {
                CurrentResourceOwner = TopTransactionResourceOwner;
                ExecCloseIndices(o->rri);
                index_close(o->pk, NoLock);
                table_close(o->rel, NoLock);
                ExecResetTupleTable(o->estate->es_tupleTable, false);
                FreeExecutorState(o->estate);
                CurrentResourceOwner = saved_owner;
            });
        } catch (...) {
            CurrentResourceOwner = saved_owner;
            throw;
        }
    }
}

/* The transaction's abort released the relations and freed the memory. */
void forget_table_writers()
{
    for (TableWriter *w : open_writers)
        w->open_ = nullptr;
    open_writers.clear();
    current_turn++;
}

} // namespace atomix
