-- atomix: acquire and release a lock of this client's own (no contention):
-- two Raft writes per transaction.  :node tells the pgbench processes of a
-- cluster run apart (client ids repeat on each node).
SELECT atomix.lock_acquire('bench-lock-' || :node::text || '-' || :client_id::text);
SELECT atomix.lock_release('bench-lock-' || :node::text || '-' || :client_id::text);
