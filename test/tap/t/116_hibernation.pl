# 116_hibernation.pl — idle partitions hibernate (no Raft heartbeats while
# nothing happens), and wake for everything that needs them.
#
# 3 nodes, 16 partitions.
#   1. Left alone, every replica on every node hibernates, and no Raft
#      message is sent for two seconds; the nodes still see each other.
#   2. Linearizable reads on every node are served without waking anything,
#      and at once: a worker whose partitions all sleep skips its walks over
#      them (quiet turns) until something arrives, and what arrives must end
#      that at once, not at its next tick (500 ms).
#   3. Writes through every node succeed at once and read back on the
#      others; the partitions then go back to sleep.
#   4. A node's raft worker is frozen while its partitions sleep: the other
#      two notice its silence and elect leaders for every partition it led,
#      and writes to those partitions succeed through them.  Thawed, it
#      follows, and the cluster sleeps again.
#   5. A node restarts while the others sleep: it learns every partition's
#      leader and serves linearizable reads.
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
my @n = atomix_cluster($N, name => 'hibernate',
	conf => [ 'log_statement = none', "atomix.unavailable_timeout = '5s'" ]);
my (undef, $stable) = wait_for_stable_leaders($n[0], 3, 30);
ok($stable, 'partition leadership settles');

sub sleeping
{
	my ($node) = @_;
	my ($ret, $out) = $node->psql('postgres',
		'SELECT count(*) FILTER (WHERE hibernating) || \'/\' || count(*) FROM atomix.stats', timeout => 30);
	return $ret == 0 ? $out : 'error';
}

sub all_asleep
{
	return !grep { sleeping($_) ne '16/16' } @n;
}

sub messages_sent
{
	my ($node) = @_;
	return $node->safe_psql('postgres', 'SELECT sum(raft_messages) FROM atomix.stats');
}

sub hibernations
{
	my ($node) = @_;
	return $node->safe_psql('postgres', 'SELECT sum(hibernations) FROM atomix.stats');
}

# ---- 1. an idle cluster sleeps ----
ok(wait_until(20, \&all_asleep), 'every replica on every node hibernates once the cluster is idle')
  or diag join(' ', map { sleeping($_) } @n);
my @sent = map { messages_sent($_) } @n;
sleep 2;
is_deeply([ map { messages_sent($_) } @n ], \@sent, 'no Raft message was sent in two idle seconds');
is($n[0]->safe_psql('postgres', "SELECT string_agg(state, ',' ORDER BY node_id) FROM atomix.nodes"),
	'up,up,up', 'the nodes still see each other');

# ---- 2. linearizable reads do not wake anything ----
$n[0]->safe_psql('postgres', "SELECT atomix.map_put('h', 'k' || i, 'v' || i) FROM generate_series(1, 16) i");
ok(wait_until(20, \&all_asleep), 'asleep again after the first writes');
my @naps = map { hibernations($_) } @n;
my $reads = 0;
my @read_ms;
for my $i (1 .. 48)
{
	my $k = $i % 16 + 1;
	# timed inside the server: psql's own start-up is not the read's
	my $out = $n[ $i % $N ]->safe_psql('postgres',
		"SELECT atomix.map_get('h', 'k$k') || ' ' || (extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000)::int");
	my ($v, $ms) = split / /, $out;
	$reads++ if $v eq "v$k";
	push @read_ms, $ms;
}
is($reads, 48, '48 linearizable reads over the three nodes returned the latest values');
my @sorted = sort { $a <=> $b } @read_ms;
cmp_ok($sorted[24], '<', 100, "their median took $sorted[24] ms (slowest $sorted[-1] ms): a sleeping cluster answers at once");
ok(all_asleep(), 'the reads woke no partition') or diag join(' ', map { sleeping($_) } @n);
is_deeply([ map { hibernations($_) } @n ], \@naps, 'no partition slept again: none had woken');

# ---- 3. writes wake what they need, at once ----
my ($ok, $slowest) = (0, 0);
my @write_ms;
for my $i (1 .. 30)
{
	my $t0 = time;
	my $out = $n[ $i % $N ]->safe_psql('postgres',
		"SELECT (atomix.map_put('h', 'w$i', 'x$i') > 0)::text || ' ' || (extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000)::int");
	my ($t, $ms) = split / /, $out;
	$ok++ if $t eq 'true';
	push @write_ms, $ms;
	my $took = time - $t0;
	$slowest = $took if $took > $slowest;
}
is($ok, 30, '30 writes through the three nodes on a sleeping cluster succeeded');
cmp_ok($slowest, '<', 1.0, sprintf('the slowest took %.0f ms (no election, no timeout)', $slowest * 1000));
@sorted = sort { $a <=> $b } @write_ms;
cmp_ok($sorted[15], '<', 100, "their median took $sorted[15] ms inside the server");
my $seen = 0;
for my $i (1 .. 30)
{
	$seen++ if $n[ ($i + 1) % $N ]->safe_psql('postgres', "SELECT atomix.map_get('h', 'w$i')") eq "x$i";
}
is($seen, 30, 'each write read back on another node');
ok(wait_until(20, \&all_asleep), 'the cluster sleeps again after the writes');

# ---- 4. a sleeping leader goes silent: the others replace it ----
my $victim = $n[1];
my $vid = node_id($victim);
my $led = partition_leaders($n[0]);
my @its = grep { ($led->{$_} // 0) == $vid } sort { $a <=> $b } keys %$led;
cmp_ok(scalar(@its), '>=', 1, "node $vid leads partitions " . join(',', @its));
my $pid = worker_pid($victim);
my $t0 = time;
AtomixTest::freeze_pid($pid);
my $replaced = wait_until(20, sub {
	my $l = partition_leaders($n[0]) // {};
	return !grep { !defined $l->{$_} || $l->{$_} == $vid } @its;
});
ok($replaced, sprintf("every partition node $vid led has another leader %.1f s after its worker froze", time - $t0));
my $written = 0;
for my $i (1 .. 40)
{
	my ($ret, $out) = $n[ $i % 2 ? 0 : 2 ]->psql('postgres',
		"SELECT atomix.map_put('h', 'f$i', 'y$i') > 0", timeout => 30);
	$written++ if $ret == 0 && $out eq 't';
}
is($written, 40, 'writes through the other two nodes, to every partition, succeed');
AtomixTest::thaw_pid($pid);
ok(wait_until(30, sub { $victim->safe_psql('postgres', "SELECT atomix.map_get('h', 'f1')") eq 'y1' }),
	"thawed, node $vid reads what was written without it");
ok(wait_until(30, \&all_asleep), 'and the cluster sleeps again') or diag join(' ', map { sleeping($_) } @n);

# ---- 5. a node restarts while the others sleep ----
my $back = $n[2];
$back->stop('fast');
$back->start;
wait_for_worker($back);
my $knows = wait_until(20, sub {
	my $l = partition_leaders($back) // {};
	return scalar(keys %$l) == 16 && !grep { !defined } values %$l;
});
ok($knows, 'the restarted node learns the leader of every partition from sleeping leaders');
my $fresh_reads = 0;
for my $i (1 .. 16)
{
	my ($ret, $out) = $back->psql('postgres', "SELECT atomix.map_get('h', 'w$i')", timeout => 30);
	$fresh_reads++ if $ret == 0 && $out eq "x$i";
}
is($fresh_reads, 16, 'and serves linearizable reads');
ok(wait_until(30, \&all_asleep), 'the whole cluster sleeps again') or diag join(' ', map { sleeping($_) } @n);

$_->stop('immediate') for @n;
done_testing();
