-- The raft worker writes the partition tables directly (bgworker/table_writer.h):
-- rows land exactly as the SQL upsert wrote them, and a table with triggers is
-- written by SQL instead, so its triggers fire.
\set SHOW_CONTEXT never

-- puts, overwrites, values with and without ttl, a large value (toasted), counters
SELECT atomix.map_put('tw', 'a', 'one') > 0 AS put;
SELECT atomix.map_put('tw', 'a', 'two') > 0 AS overwritten;
SELECT atomix.map_put('tw', 'b', 'ttl', ttl => '1 hour') > 0 AS put_ttl;
SELECT atomix.map_put('tw', 'b', 'no ttl') > 0 AS ttl_cleared;
SELECT atomix.map_put('tw', 'big', repeat('x', 300000)) > 0 AS big;
SELECT key, length(value) AS len, expires_at IS NULL AS no_expiry
  FROM atomix.map_data WHERE map = 'tw' ORDER BY key;
SELECT count(*) AS one_row_per_key FROM atomix.map_data WHERE map = 'tw' GROUP BY key ORDER BY key;
SELECT atomix.map_get('tw', 'a'), atomix.map_get('tw', 'b'), length(atomix.map_get('tw', 'big'));
SELECT atomix.counter_incr('tw-c'), atomix.counter_incr('tw-c'), atomix.counter_set('tw-c', 40);
SELECT name, value FROM atomix.counter_data WHERE name = 'tw-c';
-- every row sits in its own partition's leaf, found by the partition key
SELECT count(*) = count(*) FILTER (WHERE tableoid::regclass::text = 'atomix.map_data_p' || partition_id)
       AS rows_in_their_leaf
  FROM atomix.map_data WHERE map = 'tw';

-- a row trigger on the map table: the worker writes it by SQL and the trigger fires
CREATE TABLE public.tw_audit (key text, value text);
CREATE FUNCTION public.tw_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.tw_audit VALUES (NEW.key, convert_from(NEW.value, 'UTF8'));
    RETURN NEW;
END $$;
CREATE TRIGGER tw_audit AFTER INSERT OR UPDATE ON atomix.map_data
    FOR EACH ROW EXECUTE FUNCTION public.tw_audit_row();
SELECT atomix.map_put('tw', 'c', 'seen') > 0 AS put;
SELECT atomix.map_put('tw', 'c', 'seen again') > 0 AS put;
SELECT key, value FROM public.tw_audit ORDER BY value;
DROP TRIGGER tw_audit ON atomix.map_data;
SELECT atomix.map_put('tw', 'c', 'unseen') > 0 AS put;
SELECT count(*) AS audited FROM public.tw_audit;
SELECT atomix.map_get('tw', 'c');
DROP TABLE public.tw_audit;
DROP FUNCTION public.tw_audit_row();
SELECT atomix.map_clear('tw') AS cleared;
