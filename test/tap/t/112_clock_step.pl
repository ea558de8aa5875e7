# 112_clock_step.pl — one node's wall clock steps forward 5 s, later back
# 5 s (atomix.test_clock_offset; its monotonic clock is untouched, as with
# an NTP step), while clients on every node write.
#  - no timer fires early because of it: the node resends no forwarded
#    request (resend timers are monotonic), no worker crashes or restarts;
#  - every acknowledged counter_incr counted once, every put there once, all
#    nodes identical;
#  - log time never goes backwards: versions stay increasing across the
#    backward step (a put after it gets a higher version than one before).
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
my @n = atomix_cluster($N, name => 'clock', conf => [ 'log_statement = none' ]);
my ($l, $stable) = wait_for_stable_leaders($n[0], 3, 20);
ok($stable, 'partition leadership settles');
my @pos = map { log_position($_) } @n;
my @pids = map { worker_pid($_) } @n;

my $resends = sub {
	return $n[0]->safe_psql('postgres', 'SELECT sum(resends) FROM atomix.partitions');
};
my @loads = map { start_load($n[$_], clients => 2, first => 2 * $_ + 1, stream => 1, round => 'k') } 0 .. $N - 1;
sub pump_all { my ($s) = @_; pump_load($_, $s / @loads) for @loads; return; }
pump_all(2);

my $r0 = $resends->();
my $v0 = $n[0]->safe_psql('postgres', "SELECT atomix.map_put('clock', 'k', 'before')");
for my $offset ('5s', '0', '-5s', '0')
{
	$n[0]->safe_psql('postgres',
		"ALTER SYSTEM SET atomix.test_clock_offset = '$offset'; SELECT pg_reload_conf();");
	pump_all(3);
	is($n[0]->safe_psql('postgres',
			"SELECT setting FROM pg_settings WHERE name = 'atomix.test_clock_offset'"),
		{ '5s' => 5000, '0' => 0, '-5s' => -5000 }->{$offset}, "node 1's clock offset is $offset");
}
my $v1 = $n[0]->safe_psql('postgres', "SELECT atomix.map_put('clock', 'k', 'after')");
cmp_ok($v1, '>', $v0, 'a put after the backward step gets a higher version than one before it');
is($resends->(), $r0, 'the clock steps made node 1 resend no forwarded request');

$_ && stop_load($_) for @loads;
my @res = map { finish_load($_, 60) } @loads;
my ($same) = wait_for_same_state(\@n, 60);
ok($same, 'all nodes end with identical partition tables');
verify_load($n[0], 'across clock steps', \@res);
for my $i (0 .. $N - 1)
{
	no_crash_since($n[$i], $pos[$i]);
	is(worker_pid($n[$i]), $pids[$i], 'node ' . ($i + 1) . ': the raft worker never restarted');
}

done_testing();
