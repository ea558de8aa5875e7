# 105_five_nodes.pl — a 5-node cluster with atomix.replication_factor = 5
# (every node a voter of every partition) survives two crashed nodes:
# the remaining three elect leaders for every partition, and writes and
# linearizable reads keep working on each of them, with nothing lost.  The
# two nodes restart and catch up.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";

use AtomixTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $N = 5;
my @n = atomix_cluster(
	$N,
	name => 'five',
	replication_factor => 5,
	conf => [ 'log_statement = none', 'max_connections = 20', 'shared_buffers = 16MB' ]);
my $P = $n[0]->safe_psql('postgres', 'SHOW atomix.partitions');

is( $n[0]->safe_psql('postgres',
		"SELECT count(*) FILTER (WHERE cardinality(replicas) = $N) FROM atomix.partitions"),
	$P, "every partition has $N voters");
my $counts = wait_for_balanced_leaders($n[0], $N, 2, 15);
note 'leaders per node: ' . join(' ', map { "node $_: " . ($counts->{$_} // 0) } 1 .. $N);

# ---- data written before the crash, from every node ----
for my $node (@n)
{
	my $id = node_id($node);
	$node->safe_psql('postgres',
		"SELECT atomix.map_put('m', 'before-$id', 'b$id'); SELECT atomix.counter_incr('c', $id)");
}
is($n[4]->safe_psql('postgres', "SELECT atomix.counter_get('c') || ' ' || atomix.map_size('m')"),
	'15 5', 'writes from all five nodes are there');

# ---- crash the two nodes leading the most partitions ----
my @victims = (sort { ($counts->{$b} // 0) <=> ($counts->{$a} // 0) || $a <=> $b } 1 .. $N)[ 0, 1 ];
my %dead = map { $_ => 1 } @victims;
my @surv = grep { !$dead{ node_id($_) } } @n;
note "crashing nodes @victims (leading " . join('+', map { $counts->{$_} // 0 } @victims)
  . ' partitions)';
my $t0 = time;
$n[ $_ - 1 ]->stop('immediate') for @victims;
wait_for_leaders(\@surv, 30, exclude => \@victims);
my $elect = time - $t0;
my $lead = partition_leaders($surv[0]);
my @bad = grep { !defined $lead->{$_} || $dead{ $lead->{$_} } } keys %$lead;
is(scalar @bad, 0, 'the three survivors lead every partition') or diag "partitions: @bad";
note sprintf('every partition had a live leader %.1fs after the crash began', $elect);

# ---- writes and linearizable reads on each survivor ----
my $k = 0;
my %expect;
for my $w (@surv)
{
	my $id = node_id($w);
	# 16 keys from each survivor: spread over (nearly) every partition
	my ($ret, $out, $err) = $w->psql('postgres',
		join(";\n", map { "SELECT atomix.map_put('after', 'k$id-$_', 'v$id-$_') > 0" } 1 .. 16)
		  . ";\nSELECT atomix.counter_incr('c', 100)",
		timeout => 120);
	is($ret, 0, "node $id: 16 puts and an increment succeed") or diag $err;
	$expect{"k$id-$_"} = "v$id-$_" for 1 .. 16;
}
my $want = join(',', map { "$_=$expect{$_}" } sort keys %expect);
for my $r (@surv)
{
	my $id = node_id($r);
	is( $r->safe_psql('postgres',
			"SELECT string_agg(key || '=' || value, ',' ORDER BY key COLLATE \"C\") "
			  . "FROM atomix.map_entries('after')"),
		$want, "node $id: a linearizable map_entries shows every survivor's puts");
	is($r->safe_psql('postgres', "SELECT atomix.counter_get('c')"), 315,
		"node $id: the counter has every increment");
	is( $r->safe_psql('postgres',
			"SELECT string_agg(key || '=' || value, ',' ORDER BY key) FROM atomix.map_entries('m')"),
		join(',', map { "before-$_=b$_" } 1 .. $N),
		"node $id: writes from before the crash are all there");
}
# read-your-writes across survivors, one at a time
my $stale = 0;
for my $i (1 .. 6)
{
	my ($a, $b) = ($surv[ $i % 3 ], $surv[ ($i + 1) % 3 ]);
	$a->safe_psql('postgres', "SELECT atomix.map_put('ryw', 'key', 'v$i')");
	$stale++ unless $b->safe_psql('postgres', "SELECT atomix.map_get('ryw', 'key')") eq "v$i";
}
is($stale, 0, 'a write on one survivor is read at once on another');

# ---- the crashed nodes come back and catch up ----
$t0 = time;
$n[ $_ - 1 ]->start for @victims;
wait_for_leaders([ map { $n[ $_ - 1 ] } @victims ], 60);
my ($same) = wait_for_same_state(\@n, 60);
ok($same, 'after the restarts all five nodes hold identical partition tables')
  or topology_diag(@n);
note sprintf('the restarted nodes caught up %.1fs after their start', time - $t0);
for my $v (@victims)
{
	is(sequential_psql($n[ $v - 1 ], "SELECT atomix.counter_get('c') || ' ' || atomix.map_size('after')"),
		'315 48', "restarted node $v: sequential reads see everything");
}
is($n[ $victims[0] - 1 ]->safe_psql('postgres', "SELECT atomix.counter_incr('c')"), 316,
	"restarted node $victims[0] writes again");

no_crash_since($_, 0, 'node ' . node_id($_)) for @surv;
stop_cleanly($_) for @n;
done_testing();
