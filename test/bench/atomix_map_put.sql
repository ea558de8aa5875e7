-- atomix: replicated map write (one Raft round per call, durable when it returns)
\set k random(1, :keys)
\set v random(1, 1000000000)
SELECT atomix.map_put('bench', :k::text, 'value-' || :v::text);
