-- baseline: plain-table upsert of one key (one local commit per transaction)
\set k random(1, :keys)
\set v random(1, 1000000000)
INSERT INTO bench_kv (k, v) VALUES (:k::text, 'value-' || :v::text)
    ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v;
