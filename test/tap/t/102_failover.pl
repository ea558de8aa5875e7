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
my $counts = wait_for_balanced_leaders($n[0], $N, 3, 15);

# the node leading the most partitions
my ($victim_id) = sort { ($counts->{$b} // 0) <=> ($counts->{$a} // 0) || $a <=> $b } 1 .. $N;
my $victim = $n[ $victim_id - 1 ];
my @surv = grep { node_id($_) != $victim_id } @n;
note "leaders per node: " . join(' ', map { "node $_: " . ($counts->{$_} // 0) } 1 .. $N)
  . "; crashing node $victim_id";

# A probe counter whose partition the victim leads (so that a write to it
# must wait for a new leader), written through a survivor.
my $probe_s = AtomixTest::Session->new($surv[0]);
$probe_s->query_safe(join(";\n", map { "SELECT atomix.counter_set('probe$_', 0)" } 1 .. 12));
my $part = counter_partitions($surv[0], map { "probe$_" } 1 .. 12);
my $lead = partition_leaders($surv[0]);
my ($probe) = grep { ($lead->{ $part->{$_} } // 0) == $victim_id } sort keys %$part;
ok(defined $probe, "a probe counter in a partition led by node $victim_id")
  or BAIL_OUT('no probe counter found');
note "probe counter $probe is in partition $part->{$probe}";

# ---- write load from the survivors: clients 1-2 on one, 3-4 on the other ----
my @loads = (
	start_load($surv[0], clients => 2, first => 1, stream => 1, round => 'f'),
	start_load($surv[1], clients => 2, first => 3, stream => 1, round => 'f'));
sub pump_all { my ($s) = @_; pump_load($_, $s / @loads) for @loads; return; }
sub answers { return map { scalar @{ $_->{answers} } } map { @{ $_->{clients} } } @loads; }
pump_all(3);
my @before = answers();
ok(!grep({ $_ < 3 } @before), 'every load client has writes acknowledged before the crash')
  or diag "answers: @before";

# ---- crash the victim; time the first write to one of its partitions ----
my $t0 = time;
$victim->stop('immediate');
my $stopped = time - $t0;
my ($failover, $probe_acks, $probe_doubt, $probe_err) = (undef, 0, 0, '');
while (time - $t0 < 20)
{
	$probe_s->send("SELECT atomix.counter_incr('$probe')");
	my ($out, $err);
	while (1)
	{
		($out, $err) = $probe_s->poll;
		last if defined $out;
		$_->{run}->pump_nb for grep { $_->{run}->pumpable } map { @{ $_->{clients} } } @loads;
		feed_all();
		usleep(5_000);
	}
	if ($err eq '' && $out =~ /^\d+$/)
	{
		$failover = time - $t0;
		$probe_acks++;
		last;
	}
	$probe_doubt++;
	$probe_err = $err;
	usleep(20_000);
}
sub feed_all { AtomixTest::feed_load($_) for @loads; return; }
ok(defined $failover, 'a write to a partition the crashed node led succeeds on a survivor')
  or diag "last error: $probe_err";
$failover //= 99;
note sprintf('failover: first successful write %.2fs after the crash began '
	  . '(pg_ctl stop -m immediate itself took %.2fs; %d failed attempts before)',
	$failover, $stopped, $probe_doubt);
cmp_ok($failover, '<', 5, 'failover takes less than 5 s');
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
pump_all(2);

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

my $probe_value = $surv[1]->safe_psql('postgres', "SELECT atomix.counter_get('$probe')");
ok($probe_value >= $probe_acks && $probe_value <= $probe_acks + $probe_doubt,
	"probe counter is $probe_acks acknowledged (+ up to $probe_doubt in doubt): $probe_value");

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
$probe_s->quit;
stop_cleanly($_) for @n;
done_testing();
