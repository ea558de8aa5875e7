# 111_apply_failure.pl — a machine failure stops one partition on one node,
# never the node, and the partition comes back by itself.
#
# On a 3-node cluster under load, node 2 injects a persistent failure into
# every apply of one partition P (atomix.test_fail_apply).  Then:
#  - P halts on node 2 alone: atomix.partitions there shows it halted, with
#    the error, a next retry time and a growing failure count (the back-off
#    retries, and fails again while the cause lasts);
#  - a call on node 2 for P fails at once with 57P03 naming the halt, not a
#    silent timeout; every other partition keeps serving on node 2, and P
#    keeps serving on nodes 1 and 3 (they elect a leader among themselves if
#    node 2 led it);
#  - node 2's raft worker never restarts;
#  - once the cause is cleared, P resumes on node 2 by itself, applies what
#    it missed, and all three nodes end with identical tables, every
#    acknowledged write present exactly once.
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
my @n = atomix_cluster($N, name => 'halt', conf => [ 'log_statement = none' ]);
my ($l, $stable) = wait_for_stable_leaders($n[0], 3, 20);
ok($stable, 'partition leadership settles');
my $victim = $n[1];

# counters spread over the partitions; P is the partition of 'probe0'
my @names = map { "probe$_" } 0 .. 39;
$n[0]->safe_psql('postgres', join(";\n", map { "SELECT atomix.counter_set('$_', 0)" } @names));
my $part = counter_partitions($n[0], @names);
my $P = $part->{probe0};
my ($other) = grep { $part->{$_} != $P } @names;
my ($sibling) = grep { $_ ne 'probe0' && $part->{$_} == $P } @names;
note "failing partition $P on node 2 (probe0; another key there: " . ($sibling // 'none')
  . "; a key elsewhere: $other)";

my $pos = log_position($victim);
my $pid = worker_pid($victim);
my @loads = map { start_load($n[$_], clients => 1, first => $_ + 1, stream => 1, round => 'x') } 0 .. $N - 1;
sub pump_all { my ($s) = @_; pump_load($_, $s / @loads) for @loads; return; }
pump_all(1);

$victim->safe_psql('postgres',
	"ALTER SYSTEM SET atomix.test_fail_apply = '$P'; SELECT pg_reload_conf();");
# the next write to P makes node 2 apply an entry of P
$n[0]->safe_psql('postgres', "SELECT atomix.counter_incr('probe0')");
my $line = wait_for_log_line($victim, qr/partition $P halted on this node/, $pos, 20);
ok($line, "node 2 logs that partition $P halted") or diag log_since($victim, $pos);
like($line // '', qr/injected apply failure/, 'the log line says what failed');

my $status = sub {
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT status, coalesce(last_error, ''), retry_at IS NOT NULL, apply_failures "
		  . "FROM atomix.partitions WHERE partition_id = $P");
};
my ($st, $err, $has_retry, $fails) = split /\|/, $status->($victim);
is($st, 'halted', "atomix.partitions on node 2 shows partition $P halted");
like($err, qr/injected apply failure/, 'with its last error');
is($has_retry, 't', 'and when it retries');
my $others_halted = $victim->safe_psql('postgres',
	"SELECT count(*) FROM atomix.partitions WHERE status <> 'serving' AND partition_id <> $P");
is($others_halted, '0', 'every other partition on node 2 is serving');

# the back-off retries (and fails again while the cause lasts)
ok(wait_until(15, sub { (split /\|/, $status->($victim))[3] >= 3 }),
	'the halted partition retries with a back-off and fails again while the cause lasts');

# clients on node 2: P refuses at once with the reason; others serve
my $t = time;
my ($ret, $out, $stderr, $sqlstate) = sql_outcome($victim, "SELECT atomix.counter_incr('probe0')");
my $took = time - $t;
is($sqlstate, '57P03', 'a call on node 2 for the halted partition fails with 57P03');
like($stderr, qr/partition $P is halted on this node/, 'naming the halt');
cmp_ok($took, '<', 3, sprintf('at once (%.2fs), not after atomix.unavailable_timeout', $took));
is((sql_outcome($victim, "SELECT atomix.counter_incr('$other')"))[0], 0,
	'node 2 serves a key in another partition');
# nodes 1 and 3 serve P
for my $i (0, 2)
{
	my $ok = wait_until(15, sub { (sql_outcome($n[$i], "SELECT atomix.counter_incr('probe0')"))[0] == 0 });
	ok($ok, 'node ' . ($i + 1) . " serves partition $P");
}
pump_all(2);
is(worker_pid($victim), $pid, "node 2's raft worker never restarted");

# clear the cause: P resumes on node 2 by itself
my $cleared = time;
$victim->safe_psql('postgres', "ALTER SYSTEM RESET atomix.test_fail_apply; SELECT pg_reload_conf();");
ok(wait_for_log_line($victim, qr/partition $P resumed/, $pos, 90), "partition $P resumes on node 2");
ok(wait_until(30, sub { (split /\|/, $status->($victim))[0] eq 'serving' }),
	'atomix.partitions shows it serving again');
note sprintf('resumed %.1fs after the cause was cleared', time - $cleared);
ok(wait_until(20, sub { (sql_outcome($victim, "SELECT atomix.counter_incr('probe0')"))[0] == 0 }),
	"node 2 serves partition $P again");

pump_all(2);
$_->{clients} && stop_load($_) for @loads;
my @res = map { finish_load($_, 60) } @loads;
my ($same) = wait_for_same_state(\@n, 60);
ok($same, 'all nodes end with identical partition tables');
verify_load($n[1], 'across the halt', \@res);
is(worker_pid($victim), $pid, "node 2's raft worker still never restarted");
no_crash_since($victim, $pos);

done_testing();
