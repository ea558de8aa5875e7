# 110_one_way_hold.pl — a node that can hear its peers but whose outbound
# frames are held (a firewall dropping them while TCP retransmits) for longer
# than a resend timer would wait, then released — the fault that once
# crash-looped every worker on one committed entry.
#
# Under write load (counter_incr + map_put) from clients on all three nodes,
# 20 rounds: node k (rotating) holds every frame to its peers, then the hold
# ends, alternately by delivering what was held in order and by resetting
# the connections.  Holds last 1.5 s (the links survive: the first copies
# arrive late, in order, on the connection they were sent on) or 3.5 s
# (longer than 0.1's resend timer: the links are declared dead and the
# forwards resent on new connections).  Then:
#  - the forwarded requests caught by it were resent (atomix.partitions'
#    resends counter), and copies were answered without applying them
#    (duplicates_dropped) — so the duplicate paths really ran;
#  - no raft worker crashed or restarted, on any node;
#  - every acknowledged counter_incr counted exactly once, every acknowledged
#    put is there once (verify_load), and all nodes end identical;
#  - the cluster served throughout: every client got answers in every round.
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
my $ROUNDS = 20;
my @n = atomix_cluster($N, name => 'hold',
	conf => [ 'log_statement = none', "atomix.session_timeout = '5s'" ]);
my ($l, $stable) = wait_for_stable_leaders($n[0], 3, 20);
ok($stable, 'partition leadership settles');

my @pos = map { log_position($_) } @n;
my @pids = map { worker_pid($_) } @n;

sub set_hold
{
	my ($node, $outbound, $release) = @_;
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET atomix.test_hold_release = '$release'; "
		  . "ALTER SYSTEM SET atomix.test_hold_outbound = '$outbound'; SELECT pg_reload_conf();");
	return;
}

my @loads = map {
	start_load($n[$_], clients => 2, first => 2 * $_ + 1, stream => 1, round => 'h', ahead => 2)
} 0 .. $N - 1;
sub pump_all { my ($s) = @_; pump_load($_, $s / @loads) for @loads; return; }
sub answers { return map { scalar @{ $_->{answers} } } map { @{ $_->{clients} } } @loads; }
pump_all(2);

my $starved = 0;
for my $round (1 .. $ROUNDS)
{
	my $k = ($round - 1) % $N;
	my $release = $round % 2 ? 'deliver' : 'reset';
	my @before = answers();
	my $at = log_position($n[$k]);
	my $hold = $round % 4 < 2 ? 3.5 : 1.5;
	set_hold($n[$k], '*', $release);
	# the hold takes effect at the worker's next loop turn
	ok(wait_for_log_line($n[$k], qr/test hold in effect/, $at, 5),
		"round $round: node " . ($k + 1) . " holds its outbound frames for ${hold}s");
	pump_all($hold);
	set_hold($n[$k], '', $release);
	pump_all(1.5);
	my @after = answers();
	my @idle = grep { $after[$_] == $before[$_] } 0 .. $#after;
	$starved++ if @idle;
	note "round $round (node " . ($k + 1) . ", ${hold}s, $release): answers "
	  . join(' ', map { $after[$_] - $before[$_] } 0 .. $#after);
}
# a client on the held node may wait for its forward's link to die (3 s) and
# an election; it must not stop getting answers for good
pump_all(3);
$_ && stop_load($_) for @loads;
my @res = map { finish_load($_, 60) } @loads;

# every node applied everything; compare state on all
my ($same, $dump) = wait_for_same_state(\@n, 60);
ok($same, 'all nodes end with identical partition tables');
verify_load($n[0], 'after 20 one-way holds', \@res);

my ($resends, $dups) = (0, 0);
for my $node (@n)
{
	my ($r, $d) = split /\|/, $node->safe_psql('postgres',
		'SELECT sum(resends), sum(duplicates_dropped) FROM atomix.partitions');
	$resends += $r;
	$dups += $d;
}
note "forwarded requests resent: $resends; copies answered without applying: $dups";
cmp_ok($resends, '>', 0, 'held forwards were resent on new connections (resends counter)');

for my $i (0 .. $N - 1)
{
	no_crash_since($n[$i], $pos[$i]);
	is(worker_pid($n[$i]), $pids[$i], 'node ' . ($i + 1) . ': the raft worker never restarted');
	unlike(log_since($n[$i], $pos[$i]), qr/atomix internal error|halted on this node/,
		'node ' . ($i + 1) . ': no apply failed');
}
cmp_ok($starved, '<=', $ROUNDS / 2, "clients kept getting answers in most rounds ($starved rounds with an idle client)");

done_testing();
