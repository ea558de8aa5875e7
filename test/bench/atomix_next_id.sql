-- atomix: cluster-unique id; a node reserves blocks of atomix.id_block_size
-- ids through Raft and hands them out from shared memory
SELECT atomix.next_id('bench-id');
