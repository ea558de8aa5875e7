# 004_snapshot_restart.pl — with a small snapshot threshold, ~2000 writes
# make every busy partition take snapshots and compact its log; a crash
# (immediate stop) and restart then restores snapshot + remaining log into
# exactly the state that was written, and versions keep increasing.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";

use AtomixTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = atomix_node(
	'snap',
	conf => [
		'atomix.snapshot_threshold = 64', 'atomix.snapshot_trailing = 16',
		'log_statement = none'
	]);

# ---- writes, and a model of what they must leave ----
my (%maps, %counters);    # map => { key => value }, name => value
my @sql;
for my $n (1 .. 2000)
{
	my $k = $n % 7;
	if ($k <= 2)
	{
		my ($m, $key) = ('map' . ($n % 3), 'key' . ($n % 150));
		push @sql, "SELECT atomix.map_put('$m', '$key', 'v$n')";
		$maps{$m}{$key} = "v$n";
	}
	elsif ($k == 3 || $k == 4)
	{
		my $c = 'ctr' . ($n % 10);
		my $d = $k == 3 ? $n % 5 + 1 : 1;
		push @sql, "SELECT atomix.counter_incr('$c', $d)";
		$counters{$c} += $d;
	}
	elsif ($k == 5)
	{
		my ($m, $key) = ('map' . ($n % 3), 'key' . (($n * 7) % 150));
		push @sql, "SELECT atomix.map_remove('$m', '$key')";
		delete $maps{$m}{$key};
	}
	elsif ($n % 100 == 6)
	{
		my $c = 'ctr' . ($n % 10);
		push @sql, "SELECT atomix.counter_set('$c', $n)";
		$counters{$c} = $n;
	}
	else
	{
		push @sql, "SELECT atomix.map_insert('map3', 'ins$n', 'i$n')";
		$maps{map3}{"ins$n"} = "i$n";
	}
}

# four batches, in parallel sessions so commands also get packed together
{
	my @s = map { AtomixTest::Session->new($node) } 1 .. 4;
	for my $b (0 .. 3)
	{
		$s[$b]->send(join(";\n", @sql[ $b * 500 .. $b * 500 + 499 ]));
	}
	for my $b (0 .. 3)
	{
		my ($out, $err) = $s[$b]->result(120);
		is($err, '', "batch $b: all writes succeeded");
		$s[$b]->quit;
	}
}

# The batches ran concurrently, so the model is checked only where order
# does not matter: counters that were only incremented (increments commute)
# and map3's inserts (unique keys).  The full dump, versions included, is
# compared across the restart.
sub check_model
{
	my ($label) = @_;
	my $ok_c = 1;
	for my $c (sort keys %counters)
	{
		next if grep { /counter_set\('$c'/ } @sql;    # order-dependent
		my $v = $node->safe_psql('postgres', "SELECT atomix.counter_get('$c')");
		if ($v != $counters{$c})
		{
			$ok_c = 0;
			diag "$label: counter $c = $v, expected $counters{$c}";
		}
	}
	ok($ok_c, "$label: counters that were only incremented hold the sum of all increments");

	my %ins = map { $_->[0] => $_->[1] } map { [ split /\|/ ] }
	  split /\n/, $node->safe_psql('postgres',
		"SELECT key, value FROM atomix.map_entries('map3')");
	is_deeply(\%ins, $maps{map3}, "$label: every inserted key of map3 is there");
	return;
}

check_model('after the writes');

my @snaps = glob($node->data_dir . '/atomix/p*/snapshot-*');
ok(scalar @snaps >= 2, 'snapshot files exist (' . scalar(@snaps) . ')');
my $compacted = 0;
for my $dir (glob($node->data_dir . '/atomix/p*'))
{
	$compacted++
	  if glob("$dir/snapshot-*") && !grep { m{/0000000000000001-} } glob("$dir/*");
}
ok($compacted >= 1, "log compacted: $compacted partitions dropped their first segment");

my $before = state_dump($node);
my $sizes = $node->safe_psql('postgres',
	"SELECT atomix.map_size('map0'), atomix.map_size('map1'), atomix.map_size('map2'), atomix.map_size('map3')");

# ---- crash right after the writes, restart ----
$node->stop('immediate');
my $pos = log_position($node);
$node->start;
wait_until_serving($node);
# a linearizable read on every partition: everything committed is applied
$node->safe_psql('postgres', "SELECT atomix.map_size('map$_')") for 0 .. 3;

my $after = state_dump($node);
is($after, $before, 'state after crash + restart equals state before (values and versions)');
if ($after ne $before)
{
	my %b = map { $_ => 1 } split /\n/, $before;
	my %a = map { $_ => 1 } split /\n/, $after;
	diag "only before: $_" for grep { !$a{$_} } sort keys %b;
	diag "only after:  $_" for grep { !$b{$_} } sort keys %a;
}
is( $node->safe_psql('postgres',
		"SELECT atomix.map_size('map0'), atomix.map_size('map1'), atomix.map_size('map2'), atomix.map_size('map3')"),
	$sizes, 'map sizes unchanged');
check_model('after restart');
like(log_since($node, $pos), qr/restored from a snapshot/, 'partitions were restored from snapshots');
no_crash_since($node, $pos, 'restart');

# ---- versions keep increasing after the restart ----
my $new = $node->safe_psql('postgres', "SELECT atomix.map_put('map0', 'key0', 'again')");
my %ver = map { split /\|/ } split /\n/, $node->safe_psql('postgres',
	"SELECT partition_id, max(version) FROM atomix.map_data GROUP BY 1");
my $key0_part = $node->safe_psql('postgres',
	"SELECT partition_id FROM atomix.map_data WHERE map = 'map0' AND key = 'key0'");
is($ver{$key0_part}, $new, 'the new version is the highest of its partition');
my $prev_max = $node->safe_psql('postgres',
	"SELECT max(version) FROM atomix.map_data WHERE partition_id = $key0_part "
	  . "AND NOT (map = 'map0' AND key = 'key0')");
cmp_ok($new, '>', $prev_max, 'and greater than any version written before the restart');

# a clean restart changes nothing
$before = state_dump($node);
$pos = log_position($node);
$node->restart;
wait_until_serving($node);
$node->safe_psql('postgres', "SELECT atomix.map_size('map$_')") for 0 .. 3;
is(state_dump($node), $before, 'clean restart: state unchanged');
no_crash_since($node, $pos, 'clean restart');

stop_cleanly($node);
done_testing();
