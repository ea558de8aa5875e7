-- atomix: every client acquires and releases the same lock: waits in line,
-- each release hands the lock to the next waiter (throughput of hand-offs).
SELECT atomix.lock_acquire('bench-lock');
SELECT atomix.lock_release('bench-lock');
