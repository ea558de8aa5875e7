/*
 * table_writer.h — writing rows of the partition tables with the executor's
 * simple-relation helpers (as Postgres' logical replication apply worker
 * does) instead of an SPI statement per row.
 *
 * An SPI `INSERT ... ON CONFLICT DO UPDATE` per applied command spent most
 * of its time setting up and tearing down a plan (ExecutorStart,
 * ExecInitModifyTable, opening indexes, the speculative-insertion probe).
 * A TableWriter opens its table, its indexes and an executor state once per
 * turn transaction, finds the row with the same primary key by one index
 * probe, and replaces it with ExecSimpleRelationUpdate or adds it with
 * ExecSimpleRelationInsert: the same heap and index writes, constraint and
 * partition checks, WAL and statistics as the SQL statement.
 *
 * Rules it relies on (docs/architecture.md, "Writing the tables"):
 *   - only the raft worker writes atomix's tables, so the probe needs no
 *     tuple lock, and sees the turn's own earlier writes (SnapshotSelf,
 *     with a command counter increment before each write);
 *   - what it opens belongs to the turn's top transaction (its resource
 *     owner and memory), because rows are written inside per-entry
 *     subtransactions: close_table_writers() runs before the turn commits,
 *     forget_table_writers() after an abort;
 *   - a table with triggers is not ours to bypass: usable() is false and
 *     the caller keeps its SQL statement (so does atomix.test_sql_writes,
 *     for comparing the two paths in one run).
 * Calls Postgres; every entry point is pg_guard'ed (errors become
 * exceptions).
 */
#ifndef ATOMIX_TABLE_WRITER_H
#define ATOMIX_TABLE_WRITER_H

extern "C" {
#include "postgres.h"
}

#include <string>

namespace atomix {

class TableWriter {
  public:
    /* `table` in schema atomix, e.g. "map_data_p3". */
    explicit TableWriter(std::string table) : table_(std::move(table)) {}
    TableWriter(const TableWriter &) = delete;
    TableWriter &operator=(const TableWriter &) = delete;

    /* Inserts the row (every column of the table, in order), or replaces
     * the row with the same primary key. */
    void upsert(const Datum *values, const bool *nulls);
    /* Inserts the row without looking for one with its primary key first:
     * for callers that know there is none.  A row that exists after all
     * fails the insert with unique_violation (the entry's partition halts),
     * never a second row. */
    void insert(const Datum *values, const bool *nulls);
    /* False when the table has triggers (use SQL instead). */
    bool usable();

  private:
    struct Open; /* what is open for the current turn transaction */
    Open *open();
    friend void close_table_writers();
    friend void forget_table_writers();

    std::string table_;
    Open *open_ = nullptr;
    uint64_t turn_ = 0; /* the turn transaction open_ belongs to */
};

/* The turn transaction ends: close what the writers opened (before its
 * commit), or drop it (after its abort released it). */
void close_table_writers();
void forget_table_writers();

} // namespace atomix

#endif
