# 117_full_disk_restart.pl — a node restarts while the disk of its Raft log
# is full (test/chaos found it: a disk fault, then a crash).
#
# $PGDATA/atomix of node 2 is a directory on the tmpfs test/run-tests mounts
# (ATOMIX_TAP_TMPFS; without it the test is skipped).  The tmpfs is filled,
# node 2 crashes and starts again while it is full: raft_uv cannot even
# create its I/O probe file, so no partition's Raft group can start.  Then:
#  - the raft worker stays up (it used to exit with "atomix internal error"
#    and be restarted by the postmaster every second while the disk was full);
#  - atomix.partitions on node 2 shows every partition halted, with the
#    reason and the next retry;
#  - a call on node 2 fails at once with 57P03 and the reason;
#  - nodes 1 and 3 serve every partition;
#  - once space returns, node 2 starts its groups by itself within 20 s,
#    catches up and serves the writes made meanwhile, with the same worker.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";

use AtomixTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $tmpfs = $ENV{ATOMIX_TAP_TMPFS};
plan skip_all => 'needs a small tmpfs for the Raft log (test/run-tests mounts one as root)'
  unless $tmpfs && -d $tmpfs && -w $tmpfs;

my @n = atomix_cluster(3, name => 'fullstart', start => 0, conf => [ 'log_statement = none' ]);
my $victim = $n[1];
my $logdir = raft_log_on_tmpfs($victim, $tmpfs);
$_->start for @n;
$_->safe_psql('postgres', 'CREATE EXTENSION atomix') for @n;
wait_for_leaders(\@n, 60);

# one counter per partition, so every partition is checked
my @names = map { "probe$_" } 0 .. 63;
$n[0]->safe_psql('postgres', join(";\n", map { "SELECT atomix.counter_set('$_', 0)" } @names));
my $part = counter_partitions($n[0], @names);
my %probe_of;
$probe_of{ $part->{$_} } //= $_ for sort keys %$part;
my @probes = map { $probe_of{$_} } sort { $a <=> $b } keys %probe_of;
is(scalar @probes, 16, 'a probe counter in each of the 16 partitions');
$n[0]->safe_psql('postgres', join(";\n", map { "SELECT atomix.counter_set('$_', 1)" } @probes));

my @fillers = fill_file_system($logdir);

$victim->stop('immediate');
my $pos = log_position($victim);
$victim->start;

ok(wait_for_log_line($victim, qr/partition \d+ could not start on this node/, $pos, 20),
	'node 2 logs that its partitions cannot start on the full disk');
my $pid = worker_pid($victim);
ok(defined $pid, 'the raft worker runs');
sleep 3;
is(worker_pid($victim), $pid, 'the raft worker stays up while the disk is full');
unlike(log_since($victim, $pos), qr/atomix raft worker" \(PID \d+\) exited/,
	'the raft worker never exited');
is($victim->safe_psql('postgres',
		"SELECT count(*) FILTER (WHERE status = 'halted' AND last_error LIKE '%starting its Raft group%' "
		  . 'AND retry_at IS NOT NULL) FROM atomix.partitions'),
	'16', 'atomix.partitions on node 2 shows every partition halted, why, and the next retry');

my $t0 = time;
my ($ret, $out, $err, $state) = sql_outcome($victim,
	"SET statement_timeout = '10s'; SELECT atomix.counter_incr('$probes[0]')");
is($state, '57P03', 'a call on node 2 fails with 57P03');
like($err, qr/halted on this node/, '... saying why');
cmp_ok(time - $t0, '<', 3, '... at once');

# the other two serve every partition, also those node 2 led
my $served = wait_until(15, sub {
	my $ok = 1;
	for my $p (@probes)
	{
		my ($r) = sql_outcome($n[0], "SET statement_timeout = '2s'; SELECT atomix.counter_incr('$p')");
		$ok = 0 if $r != 0;
	}
	return $ok;
});
ok($served, 'nodes 1 and 3 serve every partition while node 2 cannot');

unlink @fillers;
my $t1 = time;
my $back = wait_until(20, sub {
	return $victim->safe_psql('postgres',
		"SELECT count(*) FROM atomix.partitions WHERE status <> 'serving'") eq '0';
});
ok($back, sprintf('node 2 serves every partition %.1fs after space returned', time - $t1));
my ($want) = $n[0]->safe_psql('postgres',
	'SELECT string_agg(atomix.counter_get(p)::text, \',\' ORDER BY p) FROM unnest(ARRAY['
	  . join(',', map { "'$_'" } @probes) . ']) p');
is($victim->safe_psql('postgres',
		'SELECT string_agg(atomix.counter_get(p)::text, \',\' ORDER BY p) FROM unnest(ARRAY['
		  . join(',', map { "'$_'" } @probes) . ']) p'),
	$want, 'node 2 reads every write made while it could not start');
($ret) = sql_outcome($victim, "SET statement_timeout = '5s'; SELECT atomix.counter_incr('$probes[0]')");
is($ret, 0, 'node 2 takes writes again');
is(worker_pid($victim), $pid, 'with the same raft worker');
no_crash_since($victim, $pos, 'node 2');

done_testing();
