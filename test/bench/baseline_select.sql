-- baseline: primary-key lookup in a plain table
\set k random(1, :keys)
SELECT v FROM bench_kv WHERE k = :k::text;
