# 104_wrong_secret.pl — a node without the cluster's secret is kept out.
#
# Node 3 of 3 has a different atomix.cluster_secret.  Nodes 1 and 2 (a
# majority of every partition) keep working and log the refusal; node 3
# learns nothing from them, and its calls fail with a clear error once
# atomix.unavailable_timeout (2s here) has passed.  Given the right secret
# and restarted, node 3 joins and catches up.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";

use AtomixTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my @n = atomix_cluster(
	3,
	name => 'secret',
	secrets => { 3 => 'not-the-cluster-secret' },
	conf => ["atomix.unavailable_timeout = '2s'"],
	wait => [ 1, 2 ]);
my ($n1, $n2, $n3) = @n;
my $P = $n1->safe_psql('postgres', 'SHOW atomix.partitions');

# ---- the majority works ----
is($n1->safe_psql('postgres', "SELECT atomix.map_put('m', 'k1', 'from-1') > 0"), 't',
	'node 1 writes');
is($n2->safe_psql('postgres', "SELECT atomix.map_put('m', 'k2', 'from-2') > 0"), 't',
	'node 2 writes');
is($n1->safe_psql('postgres', "SELECT atomix.map_get('m', 'k2')"), 'from-2',
	'node 1 reads what node 2 wrote');
is($n2->safe_psql('postgres', "SELECT atomix.counter_incr('c', 5)"), '5', 'node 2 increments');
is($n1->safe_psql('postgres', "SELECT atomix.counter_incr('c', 5)"), '10',
	'node 1 increments the same counter');
is($n2->safe_psql('postgres', "SELECT atomix.map_size('m')"), '2',
	'map_size (every partition) works on node 2');
for my $node ($n1, $n2)
{
	my $l = partition_leaders($node);
	my @bad = grep { !defined $l->{$_} || $l->{$_} == 3 } sort { $a <=> $b } keys %$l;
	is(scalar @bad, 0, 'node ' . node_id($node) . ': every partition led by node 1 or 2')
	  or diag "partitions without a leader or led by 3: @bad";
}

# ---- the refusal is logged on both sides ----
my $re = qr/does not hold this cluster's atomix\.cluster_secret/;
for my $node ($n1, $n2)
{
	my $line = wait_for_log_line($node, qr/node 3\b.*$re/, 0, 15);
	ok(defined $line, 'node ' . node_id($node) . ' logs that node 3 lacks the secret')
	  and note $line;
}
my $line = wait_for_log_line($n3, $re, 0, 15);
ok(defined $line, 'node 3 logs that its peers do not share its secret') and note $line;
my $refused = wait_for_log_line($n1, qr/refused node 3 connecting from .*$re/, 0, 0)
  // wait_for_log_line($n2, qr/refused node 3 connecting from .*$re/, 0, 0)
  // wait_for_log_line($n3, qr/refused node \d connecting from .*$re/, 0, 0);
note 'refusal of an incoming connection: ' . ($refused // '(none logged)');

# ---- the nodes see each other down ----
is( $n1->safe_psql('postgres',
		"SELECT string_agg(node_id || ':' || state, ',' ORDER BY node_id) FROM atomix.nodes"),
	'1:up,2:up,3:down', 'node 1 sees node 3 down');
is( $n3->safe_psql('postgres',
		"SELECT string_agg(node_id || ':' || state, ',' ORDER BY node_id) "
		  . "FROM atomix.nodes WHERE NOT is_local"),
	'1:down,2:down', 'node 3 sees nodes 1 and 2 down');
is( $n3->safe_psql('postgres',
		'SELECT count(*), count(leader_node) FROM atomix.partitions'),
	"$P|0", 'node 3 knows no leader for any partition');

# ---- node 3 cannot commit: clear errors after unavailable_timeout ----
for my $sql ("SELECT atomix.map_put('m', 'k3', 'from-3')",
	"SELECT atomix.counter_incr('c')", "SELECT atomix.map_get('m', 'k1')")
{
	my $t0 = time;
	my ($ret, $out, $err, $state) = sql_outcome($n3, $sql);
	my $took = time - $t0;
	ok($ret != 0 && defined $state && ($state eq '57P03' || $state eq '40003'),
		"node 3: $sql fails with 57P03 or 40003")
	  or diag "ret $ret, out '$out', err: $err";
	like($err, qr/leader|unavailable/i, "node 3: the message says why") or diag $err;
	ok($took >= 1.5 && $took < 6, "node 3: after about atomix.unavailable_timeout (took "
		  . sprintf('%.1fs', $took) . ')');
}
is(sequential_psql($n3, "SELECT coalesce(atomix.map_get('m', 'k1'), 'absent')"), 'absent',
	"node 3's replica received nothing from the cluster");
is($n1->safe_psql('postgres', "SELECT coalesce(atomix.map_get('m', 'k3'), 'absent')"),
	'absent', "node 3's write did not reach the cluster");
is($n1->safe_psql('postgres', "SELECT atomix.counter_get('c')"), '10',
	"node 3's increment did not reach the cluster");

# ---- with the right secret node 3 joins ----
$n3->append_conf('postgresql.conf', "atomix.cluster_secret = 'atomix-tap-secret'\n");
$n3->restart;
wait_for_leaders([$n3], 60);
is($n3->safe_psql('postgres', "SELECT atomix.map_get('m', 'k1') || ' ' || atomix.counter_get('c')"),
	'from-1 10', 'with the right secret node 3 joins and reads the cluster');
is($n3->safe_psql('postgres', "SELECT atomix.counter_incr('c')"), '11', 'and writes');
my ($same) = wait_for_same_state(\@n, 20);
ok($same, 'all three nodes hold identical partition tables') or topology_diag(@n);

no_crash_since($_, 0, 'node ' . node_id($_)) for @n;
stop_cleanly($_) for @n;
done_testing();
