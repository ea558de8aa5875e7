-- atomix: increment one of a small set of replicated counters, returns the new value
\set c random(1, :counters)
SELECT atomix.counter_incr('bench-' || :c::text);
