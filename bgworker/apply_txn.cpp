/*
 * apply_txn.cpp — see apply_txn.h.
 */
extern "C" {
#include "postgres.h"
#include "access/xact.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
}

#include "apply_txn.h"
#include "pg_bridge.h"
#include "table_writer.h"

namespace atomix {

void ApplyTxn::ensure()
{
    if (active_)
        return;
    pg_guard([] {
        SetCurrentStatementStartTimestamp();
        StartTransactionCommand();
        PushActiveSnapshot(GetTransactionSnapshot());
        if (SPI_connect() != SPI_OK_CONNECT)
            elog(ERROR, "atomix: SPI_connect failed");
        pgstat_report_activity(STATE_RUNNING, "applying raft entries");
    });
    active_ = true;
    committed_entries_ = 0;
}

void ApplyTxn::begin_entry()
{
    ensure();
    MemoryContext cxt = CurrentMemoryContext;
    ResourceOwner owner = CurrentResourceOwner;
    pg_guard([&] {
        BeginInternalSubTransaction(NULL);
        MemoryContextSwitchTo(cxt);
    });
    entry_context_ = cxt;
    entry_owner_ = owner;
    in_entry_ = true;
}

/* Ends the entry's subtransaction, keeping or discarding what it wrote. */
void ApplyTxn::end_entry(bool keep)
{
    if (!in_entry_)
        return;
    in_entry_ = false;
    MemoryContext cxt = entry_context_;
    ResourceOwner owner = entry_owner_;
    pg_guard([&] {
        if (keep)
            ReleaseCurrentSubTransaction();
        else
            RollbackAndReleaseCurrentSubTransaction();
        MemoryContextSwitchTo(cxt);
        CurrentResourceOwner = owner;
    });
    if (keep)
        committed_entries_++;
}

void ApplyTxn::commit()
{
    if (!active_)
        return;
    close_table_writers();
    active_ = false;
    pg_guard([] {
        SPI_finish();
        PopActiveSnapshot();
        CommitTransactionCommand();
        pgstat_report_stat(false);
        pgstat_report_activity(STATE_IDLE, NULL);
    });
}

void ApplyTxn::abort()
{
    if (!active_)
        return;
    active_ = false;
    in_entry_ = false;
    pg_guard([] { AbortCurrentTransaction(); });
    forget_table_writers();
}

} // namespace atomix
