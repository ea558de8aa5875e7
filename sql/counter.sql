-- Counters: a never-set counter reads as 0; set returns the previous value.
\set SHOW_CONTEXT never

SELECT atomix.counter_get('hits');
SELECT atomix.counter_incr('hits');
SELECT atomix.counter_incr('hits');
SELECT atomix.counter_incr('hits', 10);
SELECT atomix.counter_incr('hits', -20);
SELECT atomix.counter_get('hits');
SELECT atomix.counter_set('hits', 100);
SELECT atomix.counter_set('fresh', 5);
SELECT atomix.counter_get('hits'), atomix.counter_get('fresh');

SELECT atomix.counter_cas('hits', 99, 1);
SELECT atomix.counter_cas('hits', 100, 1);
SELECT atomix.counter_get('hits');
SELECT atomix.counter_cas('never', 0, 3);  -- absent counts as 0
SELECT atomix.counter_get('never');

-- overflow is an error and leaves the counter unchanged
SELECT atomix.counter_set('big', 9223372036854775806);
SELECT atomix.counter_incr('big');
SELECT atomix.counter_incr('big');
SELECT atomix.counter_get('big');
SELECT atomix.counter_set('small', -9223372036854775807);
SELECT atomix.counter_incr('small', -2);
SELECT atomix.counter_get('small');

-- many increments in one statement each apply exactly once
SELECT max(atomix.counter_incr('many')) FROM generate_series(1, 200);
SELECT atomix.counter_get('many');

-- counters and maps do not share names
SELECT atomix.map_put('hits', 'k', 'v') IS NOT NULL;
SELECT atomix.counter_get('hits');

SELECT name, value FROM atomix.counter_data WHERE name IN ('hits', 'fresh', 'never', 'big', 'many') ORDER BY name;

-- writes are durable even when the caller rolls back
BEGIN;
SELECT atomix.counter_incr('tx');
ROLLBACK;
SELECT atomix.counter_get('tx');
