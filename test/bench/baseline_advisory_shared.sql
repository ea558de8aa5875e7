-- baseline: every client locks and unlocks the same advisory lock
SELECT pg_advisory_lock(1);
SELECT pg_advisory_unlock(1);
