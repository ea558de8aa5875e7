# 118_request_origins.pl — what each partition remembers of the nodes
# sending it requests (src/core/request_origins.h, atomix 0.5) on a real
# 3-node cluster:
#  - every replica of a partition holds the same origins at the same applied
#    index, and they name each node's worker life (the upper 32 bits of its
#    request ids);
#  - a restarted raft worker takes request id bits no remembered origin of
#    its node uses: node 1 is made to start looking at the same bits in both
#    lives (atomix.test_incarnation), and its second life takes the next
#    ones — had it taken the same, its requests would start below the first
#    life's floor and be refused as finished, and the writes below would
#    time out;
#  - the origins stay small: what is in flight, not one entry per command.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";

use AtomixTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my @n = atomix_cluster(3, name => 'orig', node_conf => { 1 => ['atomix.test_incarnation = 77'] },
	conf => ['atomix.unavailable_timeout = 10s']);

# the origin key of node 1 with bits B, as partition_state.origins stores it
# (u64 little-endian: bits, then the node id)
sub key_bytes
{
	my ($bits) = @_;
	return sprintf("'\\x%02x%02x010000000000'::bytea", $bits & 0xff, $bits >> 8);
}

sub write_from_every_node
{
	my ($round) = @_;
	for my $i (0 .. 2)
	{
		$n[$i]->safe_psql('postgres',
			"SELECT count(atomix.counter_incr('c' || k, 1)) FROM generate_series(1, 200) k");
	}
}

write_from_every_node(1);
my ($same) = wait_for_same_state(\@n, 30);
ok($same, 'the three nodes hold the same counters');

my $origins_q = 'SELECT partition_id, applied_index, md5(origins) FROM atomix.partition_state ORDER BY 1';
my $agree = wait_until(30, sub {
	my @o = map { $_->safe_psql('postgres', $origins_q) } @n;
	return $o[0] eq $o[1] && $o[1] eq $o[2];
});
ok($agree, 'every replica holds the same origins at the same applied index');

is($n[2]->safe_psql('postgres',
		'SELECT count(*) FROM atomix.partition_state WHERE position(' . key_bytes(77) . ' IN origins) > 0'),
	'16', "node 1's first worker life (bits 77) is an origin of every partition");
my $max_len = $n[1]->safe_psql('postgres', 'SELECT max(length(origins)) FROM atomix.partition_state');
cmp_ok($max_len, '<', 1000, "origins stay small after 600 increments ($max_len bytes at most)");

# a second life of node 1's worker starts looking at the same bits
my $pid = worker_pid($n[0]);
kill('TERM', $pid) or die "kill TERM $pid: $!";
ok(defined wait_for_worker($n[0], $pid, 60), "node 1's raft worker restarted");
wait_until_serving($n[0]);

my $t0 = time;
my ($rc, $out, $err) = $n[0]->psql('postgres',
	"SELECT count(atomix.counter_incr('c' || k, 1)) FROM generate_series(1, 200) k", timeout => 60);
is($rc, 0, "node 1's second life writes") or diag $err;
cmp_ok(time - $t0, '<', 8, 'at once (none of its requests refused as finished)');
($same) = wait_for_same_state(\@n, 30);
ok($same, 'the three nodes agree after the restart');
is($n[1]->safe_psql('postgres', "SELECT sum(value) FROM atomix.counter_data WHERE name LIKE 'c%'"),
	'800', 'every increment applied exactly once');
is($n[1]->safe_psql('postgres',
		'SELECT count(*) FROM atomix.partition_state WHERE position(' . key_bytes(78) . ' IN origins) > 0'),
	'16', 'the second life took the next free bits (78)');

$_->stop for @n;
done_testing();
