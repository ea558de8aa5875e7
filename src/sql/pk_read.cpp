/*
 * pk_read.cpp — one row by its primary key, without SQL (see pk_read.h).
 */
extern "C" {
#include "postgres.h"
#include "access/genam.h"
#include "access/nbtree.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
}

#include <cstring>

#include "pk_read.h"

namespace atomix {

bool pk_read_impl(const char *table, const PkColumn *key, int nkeys, PkRowFn fn, void *take)
{
    Oid relid = get_relname_relid(table, get_namespace_oid("atomix", false));
    if (!OidIsValid(relid))
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
                        errmsg("atomix: table atomix.%s does not exist", table),
                        errhint("Is the extension installed in this database (CREATE EXTENSION atomix)?")));
    /* held to the end of the caller's transaction, as a query's would be */
    Relation rel = table_open(relid, AccessShareLock);
    if (rel->rd_rel->relrowsecurity) {
        table_close(rel, NoLock);
        return false; /* policies are the planner's: read it with SQL */
    }
    AclResult acl = pg_class_aclcheck(relid, GetUserId(), ACL_SELECT);
    if (acl != ACLCHECK_OK)
        aclcheck_error(acl, OBJECT_TABLE, RelationGetRelationName(rel));
    Oid pk = RelationGetPrimaryKeyIndex(rel);
    if (!OidIsValid(pk))
        ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED),
                        errmsg("atomix: table atomix.%s has no primary key", table)));
    Relation index = index_open(pk, AccessShareLock);
    int index_keys = IndexRelationGetNumberOfKeyAttributes(index);
    if (index_keys != nkeys)
        elog(ERROR, "atomix: the primary key of atomix.%s has %d columns, not %d", table, index_keys, nkeys);

    /* the key's columns in index order, compared as the index compares */
    ScanKeyData scan_keys[INDEX_MAX_KEYS];
    TupleDesc desc = RelationGetDescr(rel);
    for (int i = 0; i < index_keys; i++) {
        AttrNumber attno = index->rd_index->indkey.values[i];
        const char *column = NameStr(TupleDescAttr(desc, attno - 1)->attname);
        const PkColumn *given = nullptr;
        for (int k = 0; k < nkeys && !given; k++)
            if (strcmp(key[k].name, column) == 0)
                given = &key[k];
        if (!given)
            elog(ERROR, "atomix: column %s of the primary key of atomix.%s was not given", column, table);
        Oid type = index->rd_opcintype[i];
        Oid eq = get_opfamily_member(index->rd_opfamily[i], type, type, BTEqualStrategyNumber);
        if (!OidIsValid(eq))
            elog(ERROR, "atomix: no equality operator for column %s of atomix.%s", column, table);
        ScanKeyInit(&scan_keys[i], (AttrNumber)(i + 1), BTEqualStrategyNumber, get_opcode(eq), given->value);
        scan_keys[i].sk_collation = index->rd_indcollation[i];
    }

    /* what was committed up to now, whatever the caller's isolation level
     * (read_path.h); registered: the row's TOASTed value is read under it */
    Snapshot snapshot = RegisterSnapshot(GetLatestSnapshot());
    TupleTableSlot *slot = table_slot_create(rel, NULL);
    IndexScanDesc scan = index_beginscan(rel, index, snapshot, index_keys, 0);
    index_rescan(scan, scan_keys, index_keys, NULL, 0);
    if (index_getnext_slot(scan, ForwardScanDirection, slot)) {
        slot_getallattrs(slot);
        fn(take, desc, slot->tts_values, slot->tts_isnull);
    }
    index_endscan(scan);
    ExecDropSingleTupleTableSlot(slot);
    UnregisterSnapshot(snapshot);
    index_close(index, NoLock);
    table_close(rel, NoLock);
    return true;
}

} // namespace atomix
