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

  private:
    bool active_ = false;
};

} // namespace atomix

#endif
