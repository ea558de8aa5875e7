# 115_read_index.pl — linearizable reads are served by a read index (no log
# write), and a deposed leader cut off from the others never answers one.
#
# 3 nodes.  First, reads right after writes on other nodes see them, and a
# burst of linearizable reads writes nothing to any partition's Raft log
# (its last index does not move).  Then 6 rounds, the old leader L rotating
# over the nodes: L leads the partition of key k, which holds 'old'.  L is cut
# off both ways (atomix.test_hold_outbound/inbound = '*') and its raft worker
# frozen at once, so its c-raft still believes it leads when it wakes.  The
# other two elect a leader and k becomes 'new' there.  A linearizable
# map_get(k) is sent on L, then L's worker thaws: the read must fail (57P03,
# nobody confirms L's leadership) or return 'new' — never 'old'.  Just before
# the cut L serves a linearizable read of k, so it holds a read lease when it
# freezes; the lease must have run out by the time it thaws.  (The planted
# builds `make PLANT=unconfirmed_read`, whose leader takes its commit index
# without a confirmation round, and `make PLANT=endless_lease`, whose lease
# never expires, return 'old' here.)  Once the cut ends, L reads 'new'.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";

use AtomixTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $N = 3;
my @n = atomix_cluster($N, name => 'readidx',
	conf => [ 'log_statement = none', "atomix.unavailable_timeout = '3s'" ]);
my ($l, $stable) = wait_for_stable_leaders($n[0], 3, 20);
ok($stable, 'partition leadership settles');

# ---- reads after writes elsewhere, and no log entry per read ----
my $stale = 0;
for my $i (1 .. 30)
{
	my ($w, $r) = ($n[ $i % $N ], $n[ ($i + 1) % $N ]);
	$w->safe_psql('postgres', "SELECT atomix.map_put('ri', 'a$i', 'v$i')");
	my $got = $r->safe_psql('postgres', "SELECT atomix.map_get('ri', 'a$i')");
	$stale++ unless $got eq "v$i";
}
is($stale, 0, '30 writes were each read at once by a linearizable read on the next node');

sub last_indexes
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		'SELECT string_agg(commit_index::text, \',\' ORDER BY partition_id) FROM atomix.partitions');
}
sub read_counts
{
	my ($rounds, $confirmed) = (0, 0);
	for my $node (@n)
	{
		my ($r, $c) = split /\|/, $node->safe_psql('postgres',
			'SELECT sum(read_rounds), sum(reads_confirmed) FROM atomix.stats');
		($rounds, $confirmed) = ($rounds + $r, $confirmed + $c);
	}
	return ($rounds, $confirmed);
}
my @before = map { last_indexes($_) } @n;
my ($rounds0, $confirmed0) = read_counts();
my $reads = 0;
for my $i (1 .. 60)
{
	my $node = $n[ $i % $N ];
	my $got = $node->safe_psql('postgres', "SELECT atomix.map_get('ri', 'a" . ($i % 30 + 1) . "')");
	$reads++ if $got eq 'v' . ($i % 30 + 1);
}
is($reads, 60, '60 linearizable reads over the three nodes returned the latest values');
is_deeply([ map { last_indexes($_) } @n ], \@before,
	'the reads committed nothing in any partition (no barrier entries)');
my ($rounds1, $confirmed1) = read_counts();
cmp_ok($rounds1 - $rounds0, '<', $confirmed1 - $confirmed0,
	'read leases confirmed some reads without a round (' . ($rounds1 - $rounds0)
	  . ' rounds for ' . ($confirmed1 - $confirmed0) . ' reads)');

# ---- a deposed leader must not answer ----
sub set_cut
{
	my ($node, $on) = @_;
	my $v = $on ? '*' : '';
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET atomix.test_hold_release = 'reset'; "
		  . "ALTER SYSTEM SET atomix.test_hold_outbound = '$v'; "
		  . "ALTER SYSTEM SET atomix.test_hold_inbound = '$v'; SELECT pg_reload_conf();");
	return;
}

# a key of map 'dl' in a partition node L (0-based index) leads
sub key_led_by
{
	my ($li, $round) = @_;
	my $id = node_id($n[$li]);
	my $leaders = partition_leaders($n[$li]);
	for my $k (1 .. 300)
	{
		my $key = "r$round-$k";
		$n[$li]->safe_psql('postgres', "SELECT atomix.map_put('dl', '$key', 'old')");
		my $p = $n[$li]->safe_psql('postgres',
			"SELECT partition_id FROM atomix.map_data WHERE map = 'dl' AND key = '$key'");
		return ($key, $p) if ($leaders->{$p} // 0) == $id;
	}
	die "no key in a partition node $id leads";
}

my ($refused, $fresh, $stale_reads) = (0, 0, 0);
for my $round (1 .. 6)
{
	my $li = ($round - 1) % $N;
	my $L = $n[$li];
	my @others = grep { $_ != $li } 0 .. $N - 1;
	wait_for_stable_leaders($n[ $others[0] ], 2, 30);
	my ($key, $p) = key_led_by($li, $round);
	my $s = AtomixTest::Session->new($L);
	my $pid = worker_pid($L);

	# L confirms a read of k (a round whose yeses come with promises): it
	# holds a read lease when it is cut off and frozen
	is($L->safe_psql('postgres', "SELECT atomix.map_get('dl', '$key')"), 'old',
		"round $round: node " . node_id($L) . " reads 'old' before the cut");
	set_cut($L, 1);
	usleep(300_000);    # the worker takes the reload on its next turn
	AtomixTest::freeze_pid($pid);

	# the other two elect a leader of partition p and write 'new'
	my $new_leader;
	wait_until(20, sub {
		my $i = partition_info($n[ $others[0] ]) // {};
		my $ld = $i->{$p}{leader};
		$new_leader = $ld if defined $ld && $ld != node_id($L);
		return defined $new_leader;
	});
	ok(defined $new_leader, "round $round: partition $p elected a leader without node " . node_id($L));
	my ($ret, $out, $err);
	wait_until(15, sub {
		($ret, $out, $err) = $n[ $others[0] ]->psql('postgres',
			"SELECT atomix.map_put('dl', '$key', 'new') IS NOT NULL", timeout => 30);
		return $ret == 0 && $out eq 't';
	});
	is($out, 't', "round $round: 'new' written through node " . node_id($n[ $others[0] ]));

	# a linearizable read on the deposed leader, queued before it wakes
	$s->send("SELECT atomix.map_get('dl', '$key')");
	usleep(300_000);
	AtomixTest::thaw_pid($pid);
	my ($got, $rerr) = $s->result(30);
	my $state = AtomixTest::sqlstate_of($rerr);
	if (defined $state)
	{
		$refused++ if $state eq '57P03';
		is($state, '57P03', "round $round: the deposed leader refused the read (57P03)")
		  or diag $rerr;
	}
	else
	{
		$fresh++ if $got eq 'new';
		$stale_reads++ if $got eq 'old';
		is($got, 'new', "round $round: the deposed leader's read returned the new value");
	}
	$s->quit;

	set_cut($L, 0);
	my $caught_up = wait_until(30, sub {
		my ($r, $o) = $L->psql('postgres', "SELECT atomix.map_get('dl', '$key')", timeout => 30);
		return $r == 0 && $o eq 'new';
	});
	ok($caught_up, "round $round: once the cut ends, node " . node_id($L) . " reads 'new'");
}
is($stale_reads, 0, "no deposed leader answered a stale read ($refused refused, $fresh fresh)");
cmp_ok($refused, '>=', 1, 'reads were refused while the leader could not confirm its leadership');

$_->stop('immediate') for @n;
done_testing();
