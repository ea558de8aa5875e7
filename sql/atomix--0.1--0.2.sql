-- atomix 0.1 -> 0.2: partition health in atomix.partitions, session_valid_until().
\echo Use "ALTER EXTENSION atomix UPDATE TO '0.2'" to load this file. \quit

ALTER FOREIGN TABLE atomix.partitions
    ADD COLUMN status text,
    ADD COLUMN last_error text,
    ADD COLUMN retry_at timestamptz,
    ADD COLUMN apply_failures bigint,
    ADD COLUMN resends bigint,
    ADD COLUMN duplicates_dropped bigint;

CREATE FUNCTION atomix.session_valid_until()
    RETURNS timestamptz AS 'MODULE_PATHNAME', 'atomix_session_valid_until' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION atomix.session_valid_until() IS
    'Until when this node vouches for this backend''s session (NULL: no session): act on a lock, permit or leadership only before then';
