-- baseline: a plain sequence (CACHE 1: WAL-logged every 32 values)
SELECT nextval('bench_seq');
