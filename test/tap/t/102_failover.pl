# 102_failover.pl — a 3-node cluster loses the node that leads the most
# partitions (pg_ctl stop -m immediate) under write load from the other two.
#  - the survivors elect new leaders and a write to a partition the crashed
#    node led succeeds on a survivor within 5 s of the crash;
#  - every write acknowledged before or after the crash is on the survivors,
#    exactly once (counters equal the acknowledged increments, plus at most
#    the increments whose outcome was in doubt);
#  - the crashed node restarts, catches up (sequential reads on it show every
#    acknowledged write within a bounded wait) and takes its share of
#    leadership back, while the load goes on;
#  - in the end all three nodes hold identical partition tables.
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
my @n = atomix_cluster($N, name => 'fail', conf => ['log_statement = none']);

# leaders move for a few seconds after the start (balancing): let them settle
my ($settled, $stable) = wait_for_stable_leaders($n[0], 3, 20);
ok($stable, 'partition leadership settles');
my $counts = leader_counts($n[0]);

# the node leading the most partitions
my ($victim_id) = sort { ($counts->{$b} // 0) <=> ($counts->{$a} // 0) || $a <=> $b } 1 .. $N;
my $victim = $n[ $victim_id - 1 ];
my @surv = grep { node_id($_) != $victim_id } @n;
note "leaders per node: " . join(' ', map { "node $_: " . ($counts->{$_} // 0) } 1 .. $N)
  . "; crashing node $victim_id";

# Probe counters: one in each partition possible, written through a survivor.
my @names = map { "probe$_" } 1 .. 40;
$surv[0]->safe_psql('postgres', join(";\n", map { "SELECT atomix.counter_set('$_', 0)" } @names));
my $part = counter_partitions($surv[0], @names);
my %probe_of;
$probe_of{ $part->{$_} } //= $_ for sort keys %$part;

# ---- write load from the survivors: clients 1-2 on one, 3-4 on the other ----
my @loads = (
	start_load($surv[0], clients => 2, first => 1, stream => 1, round => 'f'),
	start_load($surv[1], clients => 2, first => 3, stream => 1, round => 'f'));
sub pump_all { my ($s) = @_; pump_load($_, $s / @loads) for @loads; return; }
sub pump_once
{
	$_->{run}->pump_nb for grep { $_->{run}->pumpable } map { @{ $_->{clients} } } @loads;
	AtomixTest::feed_load($_) for @loads;
	return;
}
sub answers { return map { scalar @{ $_->{answers} } } map { @{ $_->{clients} } } @loads; }
pump_all(3);
my @before = answers();
ok(!grep({ $_ < 3 } @before), 'every load client has writes acknowledged before the crash')
  or diag "answers: @before";

# ---- crash the victim; time writes to the partitions it led ----
# One probe session per partition the victim leads right before the crash
# (alternating between the survivors); each increments its probe counter
# right after the crash, again after any error, until one succeeds.
my $info = partition_info($surv[0]);
my @vparts = grep { ($info->{$_}{leader} // 0) == $victim_id && $probe_of{$_} }
  sort { $a <=> $b } keys %$info;
ok(scalar @vparts, "node $victim_id leads partitions with a probe counter: @vparts");
my @probes = map {
	{ part => $vparts[$_], name => $probe_of{ $vparts[$_] }, term => $info->{ $vparts[$_] }{term},
		s => AtomixTest::Session->new($surv[ $_ % 2 ]), acks => 0, doubt => 0, err => '' }
} 0 .. $#vparts;
pump_once();
my $t0 = time;
$victim->stop('immediate');
my $stopped = time - $t0;
$_->{s}->send("SELECT atomix.counter_incr('$_->{name}')") for @probes;
while (time - $t0 < 20 && grep { !defined $_->{ok_at} } @probes)
{
	for my $pr (grep { !defined $_->{ok_at} } @probes)
	{
		my ($out, $err) = $pr->{s}->poll;
		next unless defined $out;
		if ($err eq '' && $out =~ /^\d+$/)
		{
			$pr->{ok_at} = time - $t0;
			$pr->{acks}++;
		}
		else
		{
			$pr->{doubt}++;
			$pr->{err} = $err;
			$pr->{s}->send("SELECT atomix.counter_incr('$pr->{name}')");
		}
	}
	pump_once();
	usleep(5_000);
}
my @ok = sort { $a <=> $b } map { $_->{ok_at} } grep { defined $_->{ok_at} } @probes;
is(scalar @ok, scalar @probes, 'a write to every partition the crashed node led succeeds on a survivor')
  or diag join("\n", map { "partition $_->{part}: $_->{err}" } grep { !defined $_->{ok_at} } @probes);
my ($first, $last) = (@ok ? $ok[0] : 99, @ok ? $ok[-1] : 99);
note sprintf('failover: first successful write to a partition node %d led %.2fs after the crash '
	  . 'began, the last of its %d partitions %.2fs (pg_ctl stop -m immediate itself took %.2fs; '
	  . '%d failed attempts)',
	$victim_id, $first, scalar @probes, $last, $stopped, eval { my $d = 0; $d += $_->{doubt} for @probes; $d });
note sprintf('  partition %d: %s', $_->{part}, defined $_->{ok_at} ? sprintf('%.2fs', $_->{ok_at}) : 'never')
  for @probes;
cmp_ok($first, '<', 5, 'the first write to a partition of the crashed node succeeds within 5 s');
cmp_ok($last, '<', 10, 'every partition of the crashed node takes writes again within 10 s');
# the writes waited for an election: each probed partition has a new term
$info = partition_info($surv[0]);
my @no_election = grep { $info->{ $_->{part} }{term} <= $_->{term} } @probes;
is(scalar @no_election, 0, 'each probed partition elected a new leader (its term grew)')
  or diag 'partitions without a new term: ' . join(' ', map { $_->{part} } @no_election);
ok(wait_until(10, sub { my $l = partition_leaders($surv[0]); !grep { !defined $_ || $_ == $victim_id } values %$l }),
	'the survivors lead every partition');

pump_all(3);
my @after = answers();
my @progress = map { $after[$_] - $before[$_] } 0 .. $#after;
ok(!grep({ $_ < 3 } @progress), 'every load client keeps getting writes acknowledged after the crash')
  or diag "answers since the crash: @progress";
my @stalls = map { (load_stall($_, $t0))[0] } @loads;
my ($max_stall) = sort { $b <=> $a } @stalls;
note sprintf('longest time a load client waited for an answer after the crash: %.2fs', $max_stall);
cmp_ok($max_stall, '<', 10, 'no load client stalled for 10 s or more');

# ---- restart the victim under load: it catches up and leads again ----
my $pos = log_position($victim);
$t0 = time;
$victim->start;
my $back = wait_until(
	30,
	sub {
		pump_all(0.2);
		return (leader_counts($surv[0])->{$victim_id} // 0) >= 3;
	});
ok($back, "node $victim_id leads at least 3 partitions again after its restart");
note sprintf('node %d led %d partitions %.1fs after its restart', $victim_id,
	leader_counts($surv[0])->{$victim_id} // 0, time - $t0);
my $misplaced = '';
ok( wait_until(
		15,
		sub {
			pump_all(0.2);
			my $l = partition_leaders($surv[0]) // {};
			$misplaced = join(' ', map { "p$_:" . ($l->{$_} // 'none') }
				  grep { ($l->{$_} // 0) != $_ % $N + 1 } sort { $a <=> $b } keys %$l);
			return $misplaced eq '';
		}),
	'leadership returns to the preferred placement') or diag "led elsewhere: $misplaced";
pump_all(1);

stop_load($_) for @loads;
my @res = map { finish_load($_, 60) } @loads;
for my $r (@res)
{
	note sprintf('client %d: %d increments, %d puts acknowledged, %d errors, in doubt: %s',
		$r->{i}, scalar keys %{ $r->{counter} }, scalar keys %{ $r->{put} }, $r->{errors},
		join(' ', @{ $r->{uncertain} }) || 'none');
	diag "client $r->{i} errors:\n$r->{err}" if $r->{errors};
}

# ---- nothing lost, nothing applied twice ----
for my $node (@surv)
{
	verify_load($node, 'survivor node ' . node_id($node) . ' (linearizable)', \@res);
}
my @bad;
my $caught_up = wait_until(30, sub { @bad = load_discrepancies($victim, \@res, sequential => 1); !@bad });
ok($caught_up, "restarted node $victim_id: sequential reads show every acknowledged write")
  or diag join("\n", @bad);
verify_load($victim, "restarted node $victim_id (sequential)", \@res, sequential => 1);
verify_load($victim, "restarted node $victim_id (linearizable)", \@res);

for my $pr (@probes)
{
	my $v = $surv[1]->safe_psql('postgres', "SELECT atomix.counter_get('$pr->{name}')");
	ok($v >= $pr->{acks} && $v <= $pr->{acks} + $pr->{doubt},
		"probe counter $pr->{name} is $pr->{acks} acknowledged (+ up to $pr->{doubt} in doubt): $v");
}

my ($same, $dumps) = wait_for_same_state(\@n, 30);
ok($same, 'all three nodes hold identical partition tables');
if (!$same)
{
	my %first = map { $_ => 1 } split /\n/, $dumps->[0];
	for my $k (1 .. $#$dumps)
	{
		my %o = map { $_ => 1 } split /\n/, $dumps->[$k];
		my @lacks = grep { !$o{$_} } sort keys %first;
		diag "node " . ($k + 1) . " lacks: $_" for @lacks[ 0 .. ($#lacks < 9 ? $#lacks : 9) ];
	}
}

no_crash_since($_, 0, 'survivor node ' . node_id($_)) for @surv;
no_crash_since($victim, $pos, "restarted node $victim_id");
$_->{s}->quit for @probes;
stop_cleanly($_) for @n;
done_testing();
