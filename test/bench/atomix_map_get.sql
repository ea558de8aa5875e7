-- atomix: map read; linearizable by default, local replica when the run sets
-- PGOPTIONS='-c atomix.read_consistency=sequential'
\set k random(1, :keys)
SELECT atomix.map_get('bench', :k::text);
