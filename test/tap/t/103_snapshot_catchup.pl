# 103_snapshot_catchup.pl — a node that was down while the others compacted
# their logs past it catches up from a snapshot.
#
# 3 nodes with atomix.snapshot_threshold = 64 and snapshot_trailing = 16.
# Node 3 is stopped; nodes 1 and 2 write ~3000 entries spread over every
# partition (each written on its leader, so the run is quick), which makes
# every partition snapshot and drop the log node 3 would need.  Node 3 is
# started: its log says it restored partitions from snapshots, and its
# tables become identical to the others' (values and versions).  It then
# serves reads and writes like the others, and restarts (crash) into the
# same state.
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
my @n = atomix_cluster(
	$N,
	name => 'snapc',
	conf => [
		'atomix.snapshot_threshold = 64', 'atomix.snapshot_trailing = 16',
		'log_statement = none', "atomix.unavailable_timeout = '5s'"
	]);
my ($n1, $n2, $n3) = @n;
my $P = $n1->safe_psql('postgres', 'SHOW atomix.partitions');

# something node 3 has before it goes down
$n1->safe_psql('postgres', "SELECT atomix.map_put('snapmap', 'early', 'e')");
ok(wait_until(10, sub { sequential_psql($n3, "SELECT atomix.map_get('snapmap', 'early')") eq 'e' }),
	'node 3 has the early write');
my $applied3 = $n3->safe_psql('postgres', 'SELECT max(applied_index) FROM atomix.partition_state');

stop_cleanly($n3);
wait_for_leaders([ $n1, $n2 ], 30);

# ---- counters and map keys for every partition ----
# Names are placed by hashing; write candidates (8 sessions in parallel,
# forwarded writes are slow) and look their partitions up.
my $CAND = 128;
my @s = map { AtomixTest::Session->new($n[ $_ % 2 ]) } 0 .. 7;
for my $k (0 .. 7)
{
	$s[$k]->send(join(";\n",
		map { "SELECT atomix.counter_set('ctr$_', 0); SELECT atomix.map_put('snapmap', 'key$_', 'init')" }
		  grep { $_ % 8 == $k } 1 .. $CAND));
}
for my $k (0 .. 7)
{
	my ($out, $err) = $s[$k]->result(120);
	is($err, '', "candidate writes of session $k succeeded") or diag $err;
}
$_->quit for @s;
my $cpart = counter_partitions($n1, map { "ctr$_" } 1 .. $CAND);
my %kpart = map { split /\|/ } split /\n/, $n1->safe_psql('postgres',
	"SELECT key, partition_id FROM atomix.map_data WHERE map = 'snapmap' AND key LIKE 'key%'");
my (%ctr_of, %keys_of);
for my $c (sort keys %$cpart) { $ctr_of{ $cpart->{$c} } //= $c; }
for my $k (sort keys %kpart) { push @{ $keys_of{ $kpart{$k} } }, $k; }
my @parts = grep { defined $ctr_of{$_} && $keys_of{$_} } 0 .. $P - 1;
note scalar(@parts) . " of $P partitions have a counter and map keys";
cmp_ok(scalar @parts, '>=', $P - 2, 'candidate names cover (nearly) every partition');

# ---- the model, and the writes (each partition's on its leader) ----
my (%counters, %maps);
$counters{$_} = 0 for keys %$cpart;
$maps{$_} = 'init' for keys %kpart;
$maps{early} = 'e';
my $ROUNDS = 95;    # 2 entries per round: ~190 entries per partition
my $lead = partition_leaders($n1);
my %sql_for;    # node index => statements
for my $p (@parts)
{
	my $c = $ctr_of{$p};
	my @k = @{ $keys_of{$p} };
	my @stmts;
	for my $r (1 .. $ROUNDS)
	{
		push @stmts, "SELECT atomix.counter_incr('$c', $r)";
		$counters{$c} += $r;
		my $key = $k[ $r % @k ];
		if ($r % 10 == 3 && @k > 1)
		{
			push @stmts, "SELECT atomix.map_remove('snapmap', '$key')";
			delete $maps{$key};
		}
		else
		{
			push @stmts, "SELECT atomix.map_put('snapmap', '$key', 'v$r-$p')";
			$maps{$key} = "v$r-$p";
		}
	}
	my $leader = $lead->{$p} // 1;
	push @{ $sql_for{ $leader == 2 ? 1 : 0 } }, @stmts;
}
my $entries = 0;
$entries += @$_ for values %sql_for;
my $t0 = time;
@s = map { AtomixTest::Session->new($n[$_]) } 0 .. 1;
for my $k (0 .. 1)
{
	$s[$k]->send(join(";\n", @{ $sql_for{$k} // ["SELECT 1"] }));
}
for my $k (0 .. 1)
{
	my ($out, $err) = $s[$k]->result(180);
	is($err, '', 'node ' . ($k + 1) . ': ' . scalar(@{ $sql_for{$k} // [] }) . ' writes succeeded')
	  or diag substr($err, 0, 2000);
}
$_->quit for @s;
note sprintf('%d writes on the partition leaders took %.1fs', $entries, time - $t0);

# the leaders compacted their logs: no partition keeps its first segment
my $compacted = 0;
for my $dir (glob($n1->data_dir . '/atomix/p*'))
{
	$compacted++
	  if glob("$dir/snapshot-*") && !grep { m{/0000000000000001-} } glob("$dir/*");
}
cmp_ok($compacted, '>=', scalar(@parts) / 2,
	"node 1 compacted the log of $compacted partitions past their start");

# ---- node 3 comes back ----
my $pos = log_position($n3);
$t0 = time;
$n3->start;
my $line = wait_for_log_line($n3, qr/atomix: partition \d+ restored from a snapshot/, $pos, 60);
ok(defined $line, 'node 3 restores a partition from a snapshot') and note "node 3: $line";
my ($same, $dump) = wait_for_same_state(\@n, 20);
if (!ok($same, 'node 3 catches up: partition tables identical on all nodes (values and versions)'))
{
	topology_diag(@n);
	diag "node 3 as the leaders see it (partition|leader|role|applied_index|lag):\n"
	  . join("\n", map {
			$_->safe_psql('postgres',
				"SELECT r.partition_id, p.leader_node, r.role, r.applied_index, r.lag "
				  . "FROM atomix.replicas r JOIN atomix.partitions p USING (partition_id) "
				  . "WHERE r.node_id = 3 AND p.leader_node = " . node_id($_) . " ORDER BY 1")
		} $n1, $n2);
}
note sprintf('node 3 caught up %.1fs after its start', time - $t0);
my @restored = log_since($n3, $pos) =~ /atomix: partition (\d+) restored from a snapshot/g;
my %restored = map { $_ => 1 } @restored;
note 'partitions restored from a snapshot on node 3: ' . join(' ', sort { $a <=> $b } keys %restored);
cmp_ok(scalar keys %restored, '>=', scalar(@parts) / 2,
	'node 3 restored most written partitions from snapshots');

# sequential reads on node 3 give exactly the model
sub check_model
{
	my ($node, $label) = @_;
	my $got_c = sequential_psql($node,
		"SELECT string_agg(name || '=' || value, ',' ORDER BY name) FROM atomix.counter_data "
		  . "WHERE name LIKE 'ctr%'");
	my $want_c = join(',', map { "$_=$counters{$_}" } sort keys %counters);
	is($got_c, $want_c, "$label: counters are what was written");
	my $got_m = sequential_psql($node,
		"SELECT string_agg(key || '=' || value, ',' ORDER BY key COLLATE \"C\") "
		  . "FROM atomix.map_entries('snapmap')");
	my $want_m = join(',', map { "$_=$maps{$_}" } sort keys %maps);
	is($got_m, $want_m, "$label: map entries are what was written");
	is(sequential_psql($node, "SELECT atomix.map_size('snapmap')"), scalar keys %maps,
		"$label: map_size");
	return;
}
check_model($n3, 'node 3 (sequential)');
check_model($n1, 'node 1 (sequential)');

# ---- the majority serves every partition with node 3 back ----
# (node 3 is the preferred leader of some partitions: leadership moving to
# it must not leave them without a usable leader)
my @stuck;
for my $p (@parts)
{
	my $c = $ctr_of{$p};
	my ($ret, $out, $err, $state) =
	  sql_outcome($n1, "SET statement_timeout = '15s'; SELECT atomix.counter_incr('$c', 1000)");
	if ($ret == 0 && $out =~ /^-?\d+$/)
	{
		$counters{$c} += 1000;
	}
	else
	{
		push @stuck, "partition $p: " . ($state // '?') . ' ' . (split /\n/, $err)[0];
		$counters{$c} = undef;    # in doubt
	}
}
is(scalar @stuck, 0, 'node 1 writes to every partition after node 3 is back')
  or diag join("\n", @stuck);

# ---- node 3 works normally afterwards ----
my ($ret, $out, $err) = sql_outcome($n3, "SELECT atomix.map_put('snapmap', 'from-3', 'late') > 0");
is($out, 't', 'a write on node 3 succeeds') or diag $err;
$maps{'from-3'} = 'late';
is($n1->safe_psql('postgres', "SELECT atomix.map_get('snapmap', 'from-3')"), 'late',
	'and is read on node 1');
my $c0 = $ctr_of{ $parts[0] };
($ret, $out, $err) = sql_outcome($n3, "SELECT atomix.counter_get('$c0')");
is($out, $n2->safe_psql('postgres', "SELECT atomix.counter_get('$c0')"),
	'node 3 reads (linearizable) what node 2 reads') or diag $err;

# ---- and restarts (crash) into the same state ----
$n3->stop('immediate');
$pos = log_position($n3);
$n3->start;
wait_for_leaders([$n3], 30);
($same) = wait_for_same_state(\@n, 20);
ok($same, 'after a crash and restart node 3 again holds the same tables as the others')
  or topology_diag(@n);
no_crash_since($n3, $pos, 'node 3 restart');
no_crash_since($_, 0, 'node ' . node_id($_)) for $n1, $n2;

stop_cleanly($_) for @n;
done_testing();
