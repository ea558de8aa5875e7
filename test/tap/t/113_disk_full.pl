# 113_disk_full.pl — one node's Raft log lives on a small file system that
# fills up while clients write through every node, stays full past the
# election timeout, and is freed; ten times.
#
# $PGDATA/atomix of node 2 is a directory on a tmpfs that test/run-tests
# mounts (as root) and names in ATOMIX_TAP_TMPFS; without it the test is
# skipped.  Snapshots are taken every 32 entries and node 2's log segments
# are 8 kB (atomix.test_segment_size), so fills land while a snapshot or a
# new log segment is being written.  Each round:
#  - writes through node 2 go on until its log needs new space; then a call
#    on node 2 fails at once with a clear error (SQLSTATE 57P03 or 40003
#    and the reason), never a silent timeout;
#  - the partitions node 2 led move to the others and serve within 10 s (a
#    write through node 1 to each of them succeeds);
#  - node 2 logs the failed write (partition, what failed, the error);
#  - once space returns, node 2 catches up and serves again by itself within
#    20 s.
# In the end every node holds the same tables, every acknowledged write
# exactly once, and no raft worker ever restarted.
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
my $ROUNDS = 10;

my $N = 3;
# raft_uv writes into preallocated segments and fails only when it prepares
# the next one: small segments on node 2 make the full disk bite at once
my @n = atomix_cluster($N, name => 'full', start => 0,
	conf => [ 'log_statement = none', 'atomix.snapshot_threshold = 32',
		'atomix.snapshot_trailing = 16' ],
	node_conf => { 2 => [ "atomix.test_segment_size = '8kB'" ] });
my $victim = $n[1];
my $logdir = raft_log_on_tmpfs($victim, $tmpfs);
$_->start for @n;
$_->safe_psql('postgres', 'CREATE EXTENSION atomix') for @n;
wait_for_leaders(\@n, 60);
my ($l, $stable) = wait_for_stable_leaders($n[0], 3, 20);
ok($stable, 'partition leadership settles');

my @names = map { "probe$_" } 0 .. 47;
$n[0]->safe_psql('postgres', join(";\n", map { "SELECT atomix.counter_set('$_', 0)" } @names));
my $part = counter_partitions($n[0], @names);
my %probe_of;
$probe_of{ $part->{$_} } //= $_ for sort keys %$part;

my $pos = log_position($victim);
my @pids = map { worker_pid($_) } @n;
my @loads = map { start_load($n[$_], clients => 1, first => $_ + 1, stream => 1, round => 'd') } 0 .. $N - 1;
sub pump_all { my ($s) = @_; pump_load($_, $s / @loads) for @loads; return; }
pump_all(1);

my @fillers;
# as much as fits: the next Raft log write fails with ENOSPC
sub fill { @fillers = fill_file_system($logdir); return; }
sub free_space { unlink @fillers; return; }

my (@bite, @move, @back);
for my $round (1 .. $ROUNDS)
{
	my $leaders = partition_leaders($n[0]) // {};
	my @led = grep { ($leaders->{$_} // 0) == 2 && $probe_of{$_} } sort { $a <=> $b } keys %$leaders;
	my $at = log_position($victim);
	pump_all(0.3 + 0.2 * ($round % 3));
	my $t0 = time;
	fill();
	# writes through node 2 to every partition, until its log needs space:
	# each call succeeds or fails at once with a clear error, never hangs
	my ($first_err, $unclear) = (undef, 0);
	for (my $k = 0; time - $t0 < 15 && !defined $first_err; $k++)
	{
		# 16 puts of 2 kB in different partitions: log segments fill fast
		my ($ret, $out, $err, $state) = sql_outcome($victim,
			"SET statement_timeout = '3s'; SELECT count(atomix.map_put('fill', 'k$k-' || g, repeat('x', 2000))) "
			  . 'FROM generate_series(1, 16) g');
		next if $ret == 0;
		if (defined $state && $state =~ /^(57P03|40003)$/) { $first_err = $state; }
		else { $unclear++; diag "round $round: unclear failure on node 2: $err"; last; }
	}
	my $bit = time - $t0;
	push @bite, $bit;
	ok(defined $first_err && !$unclear,
		sprintf('round %d: with its disk full, node 2 answers with a clear error (%s after %.1fs)',
			$round, $first_err // 'none', $bit));
	ok(wait_for_log_line($victim, qr/halted on this node: a Raft log write/, $at, 10),
		"round $round: node 2 logs the failed Raft log write");
	# the partitions node 2 led serve again through node 1 within 10 s
	my $t1 = time;
	my %done;
	while (time - $t1 < 15 && grep { !$done{$_} } @led)
	{
		for my $p (grep { !$done{$_} } @led)
		{
			my ($ret) = sql_outcome($n[0], "SET statement_timeout = '2s'; SELECT atomix.counter_incr('$probe_of{$p}')");
			$done{$p} = time - $t1 if $ret == 0;
		}
		pump_all(0.2);
	}
	my ($worst) = sort { $b <=> $a } map { $done{$_} // 99 } @led;
	$worst //= 0;
	push @move, $worst;
	cmp_ok($worst, '<', 10, sprintf('round %d: the %d partitions node 2 led serve through node 1 within 10 s (%.1fs)',
		$round, scalar @led, $worst));
	# hold it full past the election timeout
	pump_all(1.5);
	free_space();
	my $t2 = time;
	my $ok = wait_until(20, sub {
		pump_all(0.1);
		return $victim->safe_psql('postgres',
			"SELECT count(*) FROM atomix.partitions WHERE status <> 'serving'") eq '0'
		  && (sql_outcome($victim, "SET statement_timeout = '2s'; SELECT atomix.counter_incr('$names[$round]')"))[0] == 0;
	});
	push @back, time - $t2;
	ok($ok, sprintf('round %d: node 2 serves every partition again %.1fs after space returned', $round, time - $t2));
}
note 'seconds until a write through node 2 hit the full disk: ' . join(' ', map { sprintf '%.1f', $_ } @bite);
note 'seconds until the partitions node 2 led served elsewhere: ' . join(' ', map { sprintf '%.1f', $_ } @move);
note 'seconds until node 2 served again after space returned: ' . join(' ', map { sprintf '%.1f', $_ } @back);

pump_all(2);
$_ && stop_load($_) for @loads;
my @res = map { finish_load($_, 60) } @loads;
my ($same) = wait_for_same_state(\@n, 90);
ok($same, 'all nodes end with identical partition tables');
verify_load($n[0], "after $ROUNDS full disks", \@res);
for my $i (0 .. $N - 1)
{
	is(worker_pid($n[$i]), $pids[$i], 'node ' . ($i + 1) . ': the raft worker never restarted');
}
no_crash_since($victim, $pos);

done_testing();
