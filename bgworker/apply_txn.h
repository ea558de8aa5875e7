/*
 * apply_txn.h — the worker's one Postgres transaction per loop turn.
 *
 * Committed Raft entries are applied inside it as c-raft hands them over;
 * the loop commits it once the turn's callbacks are done and only then
 * wakes the callers, so a caller never sees its write acknowledged before
 * it is durable in the partition tables.
 */
#ifndef ATOMIX_APPLY_TXN_H
#define ATOMIX_APPLY_TXN_H

namespace atomix {

class ApplyTxn {
  public:
    /* Starts the transaction (with SPI and a snapshot) unless one is open. */
    void ensure();
    bool active() const { return active_; }
    void commit();
    /* Rolls back after a failure (the worker then exits and replays). */
    void abort();

    /* Each entry is applied in a subtransaction of its own, so an entry
     * whose apply raises rolls back alone: the partition it belongs to
     * halts, every other partition's work in this turn stays.  (plpgsql's
     * EXCEPTION blocks use the same internal subtransactions.) */
    void begin_entry();
    void commit_entry() { end_entry(true); }
    void rollback_entry() { end_entry(false); }
    /* Subtransactions committed in the open transaction.  Past 64 every
     * other backend's snapshot overflows its subxid cache and reads slow
     * down, so the worker commits the turn early well before that. */
    int committed_entries() const { return committed_entries_; }

  private:
    void end_entry(bool keep);
    bool active_ = false;
    bool in_entry_ = false;
    int committed_entries_ = 0;
    struct MemoryContextData *entry_context_ = nullptr;
    struct ResourceOwnerData *entry_owner_ = nullptr;
};

/* Commit the turn's transaction early after this many entries. */
constexpr int kMaxEntriesPerTransaction = 48;

} // namespace atomix

#endif
