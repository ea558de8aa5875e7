# 101_cluster_basic.pl — a 3-node cluster forms from its settings alone
# (atomix.node_id, listen_address, initial_cluster, cluster_secret) and
# behaves as one: a write made on any node is read by a linearizable read
# on every other node right after it returns; maps and counters read the
# same everywhere; every node holds every partition; partition leadership
# is spread over the nodes.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";

use AtomixTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $N = 3;
my @n = atomix_cluster($N, name => 'basic');
my $P = $n[0]->safe_psql('postgres', "SHOW atomix.partitions");

# ---- topology as each node sees it ----
for my $node (@n)
{
	my $id = node_id($node);
	ok( wait_until(
			15,
			sub {
				$node->safe_psql('postgres',
					"SELECT count(*) FILTER (WHERE state = 'up'), count(*), "
					  . "string_agg(node_id::text, ',' ORDER BY node_id) FILTER (WHERE is_local) "
					  . "FROM atomix.nodes") eq "$N|$N|$id";
			}),
		"node $id: atomix.nodes lists $N nodes, all up, itself local");
	is( $node->safe_psql('postgres',
			"SELECT count(*), count(*) FILTER (WHERE cardinality(replicas) = $N) "
			  . "FROM atomix.partitions"),
		"$P|$P",
		"node $id: $P partitions, each replicated on all $N nodes");
}

# ---- a write on each node is read on each other node ----
my %version;
for my $w (@n)
{
	my $id = node_id($w);
	$version{$id} = $w->safe_psql('postgres', "SELECT atomix.map_put('m', 'from-$id', 'v$id')");
	like($version{$id}, qr/^\d+$/, "node $id: map_put returns a version");
	is($w->safe_psql('postgres', "SELECT atomix.counter_incr('shared', $id)") > 0, 1,
		"node $id: counter_incr works");
	$w->safe_psql('postgres', "SELECT atomix.counter_set('own-$id', 100 * $id)");
}
for my $r (@n)
{
	my $rid = node_id($r);
	for my $w (@n)
	{
		my $id = node_id($w);
		is( $r->safe_psql('postgres',
				"SELECT value || ':' || version FROM atomix.map_get_entry('m', 'from-$id')"),
			"v$id:$version{$id}",
			"node $rid reads node ${id}'s write with its version");
		is($r->safe_psql('postgres', "SELECT atomix.counter_get('own-$id')"), 100 * $id,
			"node $rid reads node ${id}'s counter");
	}
	is($r->safe_psql('postgres', "SELECT atomix.counter_get('shared')"), 6,
		"node $rid: the shared counter has every node's increment");
}

# ---- linearizable reads right after writes elsewhere ----
# Node a writes, node b (another node) reads at once: the read must see it.
my ($stale, $tries) = (0, 0);
my @s = map { AtomixTest::Session->new($_) } @n;
for my $round (1 .. 6)
{
	for my $a (0 .. $N - 1)
	{
		my $b = ($a + 1 + $round % ($N - 1)) % $N;
		my $key = "rw-$round-$a";
		$s[$a]->query_safe("SELECT atomix.map_put('rw', '$key', '$round')");
		$s[$a]->query_safe("SELECT atomix.counter_incr('rw-ctr')");
		my $got = $s[$b]->query_safe(
			"SELECT coalesce(atomix.map_get('rw', '$key'), 'absent') || ' ' || atomix.counter_get('rw-ctr')");
		$tries++;
		$stale++ unless $got eq "$round " . (($round - 1) * $N + $a + 1);
	}
}
is($stale, 0, "$tries writes were each read at once by a linearizable read on another node");

# ---- maps and counters agree everywhere ----
# 30 keys, 10 put from each node (at the same time), one removed
for my $k (0 .. $N - 1)
{
	$s[$k]->send(join(";\n",
		map { "SELECT atomix.map_put('spread', 'key$_', 'val$_')" } grep { $_ % $N == $k } 1 .. 30));
}
for my $k (0 .. $N - 1)
{
	my ($out, $err) = $s[$k]->result(60);
	is($err, '', 'node ' . ($k + 1) . ': its puts succeeded');
}
$n[1]->safe_psql('postgres', "SELECT atomix.map_remove('spread', 'key7')");
my (@entries, @sizes, @ctrs);
for my $node (@n)
{
	push @entries, $node->safe_psql('postgres',
		"SELECT string_agg(key || '=' || value || ':' || version, ',' ORDER BY key) "
		  . "FROM atomix.map_entries('spread')");
	push @sizes, $node->safe_psql('postgres',
		"SELECT atomix.map_size('spread') || ' ' || atomix.map_size('m') || ' ' || atomix.map_size('rw')");
	push @ctrs, $node->safe_psql('postgres',
		"SELECT atomix.counter_get('shared') || ' ' || atomix.counter_get('rw-ctr')");
}
is($sizes[0], '29 3 ' . (6 * $N), 'map sizes are right');
is_deeply(\@sizes, [ ($sizes[0]) x $N ], 'map_size agrees on every node');
is_deeply(\@entries, [ ($entries[0]) x $N ], 'map_entries agree on every node (values and versions)');
is_deeply(\@ctrs, [ ($ctrs[0]) x $N ], 'counters agree on every node');
my ($same, $dump) = wait_for_same_state(\@n, 10);
ok($same, 'the partition tables are identical on every node');

# every node holds every partition's data (sequential reads are local)
for my $node (@n)
{
	is(sequential_psql($node, "SELECT atomix.map_size('spread')"), 29,
		'node ' . node_id($node) . ': a sequential (local) read sees all 29 entries');
}

# ---- leadership is spread over the nodes ----
my $t0 = time;
my $counts = wait_for_balanced_leaders($n[0], $N, 3, 15);
my $took = time - $t0;
note sprintf('leaders per node after %.1fs: %s', $took,
	join(' ', map { "node $_: " . ($counts->{$_} // 0) } 1 .. $N));
ok(!grep({ ($counts->{$_} // 0) < 3 } 1 .. $N), "every node leads at least 3 of $P partitions");
# ... and settles on the documented placement: partition p is preferably
# led by the node at position p mod N in node-id order
my $placed;
my $misplaced = '';
ok( wait_until(
		15,
		sub {
			my $l = partition_leaders($n[0]) // {};
			$misplaced = join(' ', map { "p$_:" . ($l->{$_} // 'none') }
				  grep { ($l->{$_} // 0) != $_ % $N + 1 } 0 .. $P - 1);
			return $misplaced eq '';
		}),
	'every partition p is led by its preferred node (p mod N) + 1')
  or diag "led elsewhere: $misplaced";
# ... and the nodes agree who leads what
my $agree = wait_until(
	10,
	sub {
		my @l = map { partition_leaders($_) } @n;
		return !grep { !is_deeply_quiet($l[0], $_) } @l;
	});
ok($agree, 'every node sees the same leader for every partition');
is( $n[2]->safe_psql('postgres',
		"SELECT count(DISTINCT partition_id), count(*) FILTER (WHERE role = 'leader'), count(*) "
		  . "FROM atomix.replicas"),
	"$P|$P|" . ($P * $N),
	"atomix.replicas: $N replicas per partition, one leader each");

# ---- latency of a forwarded call (informational) ----
# counters led by node 1 and by another node, called on node 1
$s[0]->query_safe(join(";\n", map { "SELECT atomix.counter_set('lat$_', 0)" } 1 .. 8));
my $part = counter_partitions($n[0], map { "lat$_" } 1 .. 8);
my $lead = partition_leaders($n[0]);
my ($here) = grep { $lead->{ $part->{$_} } == 1 } sort keys %$part;
my ($there) = grep { $lead->{ $part->{$_} } != 1 } sort keys %$part;
for my $c (grep { defined } $here, $there)
{
	for my $sql ("SELECT atomix.counter_incr('$c')", "SELECT atomix.counter_get('$c')")
	{
		my @t;
		for (1 .. 5)
		{
			my $t1 = time;
			$s[0]->query_safe($sql);
			push @t, 1000 * (time - $t1);
		}
		@t = sort { $a <=> $b } @t;
		note sprintf('on node 1, partition %d led by node %d: %s: median %.1f ms',
			$part->{$c}, $lead->{ $part->{$c} }, $sql, $t[2]);
	}
}

$_->quit for @s;
for my $node (@n)
{
	no_crash_since($node, 0, 'node ' . node_id($node));
	stop_cleanly($node);
}
done_testing();

sub is_deeply_quiet
{
	my ($x, $y) = @_;
	return 0 unless keys %$x == keys %$y;
	for (keys %$x)
	{
		return 0 unless defined $x->{$_} && defined $y->{$_} && $x->{$_} eq $y->{$_};
	}
	return 1;
}
