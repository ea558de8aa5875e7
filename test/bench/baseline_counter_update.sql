-- baseline: increment one of a small set of counter rows, returning the new value
\set c random(1, :counters)
UPDATE bench_counter SET v = v + 1 WHERE k = 'bench-' || :c::text RETURNING v;
