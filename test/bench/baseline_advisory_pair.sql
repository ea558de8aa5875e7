-- baseline: session-level advisory lock of this client's own, then unlock
SELECT pg_advisory_lock(:client_id);
SELECT pg_advisory_unlock(:client_id);
