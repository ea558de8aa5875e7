-- atomix 0.1 -> 0.2: partition health in atomix.partitions.
\echo Use "ALTER EXTENSION atomix UPDATE TO '0.2'" to load this file. \quit

ALTER FOREIGN TABLE atomix.partitions
    ADD COLUMN status text,
    ADD COLUMN last_error text,
    ADD COLUMN retry_at timestamptz,
    ADD COLUMN apply_failures bigint,
    ADD COLUMN resends bigint,
    ADD COLUMN duplicates_dropped bigint;
