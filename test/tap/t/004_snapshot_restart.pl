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

# ---- ~2000 writes, and a model of what they must leave ----
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

# ... ending with a run of writes to one counter and one map key, so that
# the crash below hits while the last few entries of that partition may not
# be in the tables yet and must be replayed from the Raft log
for my $n (1 .. 100)
{
	push @sql, "SELECT atomix.counter_incr('hot')";
	$counters{hot}++;
	push @sql, "SELECT atomix.map_put('hot', 'key', 'h$n')";
	$maps{hot}{key} = "h$n";
}

# five batches (one psql session, one batch at a time)
{
	my $s = AtomixTest::Session->new($node);
	my $per = 500;
	for (my $b = 0; $b * $per < @sql; $b++)
	{
		my $last = ($b + 1) * $per - 1;
		$last = $#sql if $last > $#sql;
		my ($out, $err) = $s->query(join(";\n", @sql[ $b * $per .. $last ]), 120);
		is($err, '', "batch $b: all writes succeeded");
	}
	$s->quit;
}

# The dump must hold exactly the model: every counter and every map entry.
sub check_model
{
	my ($label, $dump) = @_;
	my (%c, %m);
	for (split /\n/, $dump)
	{
		my @f = split /\|/;
		$c{ $f[1] } = $f[2] if $f[0] eq 'counter';
		$m{ $f[1] }{ $f[2] } = $f[3] if $f[0] eq 'map';
	}
	delete $c{'atomix-test-probe'};
	is_deeply(\%c, \%counters, "$label: counters hold exactly what was written");
	is_deeply(\%m, \%maps, "$label: maps hold exactly what was written");
	return;
}

my $SIZES = "SELECT atomix.map_size('map0'), atomix.map_size('map1'), "
  . "atomix.map_size('map2'), atomix.map_size('map3')";

# ---- crash right after the last write was acknowledged ----
$node->stop('immediate');

my @snaps = glob($node->data_dir . '/atomix/p*/snapshot-*');
ok(scalar @snaps >= 2, 'snapshot files exist (' . scalar(@snaps) . ')');
my $compacted = 0;
for my $dir (glob($node->data_dir . '/atomix/p*'))
{
	$compacted++
	  if glob("$dir/snapshot-*") && !grep { m{/0000000000000001-} } glob("$dir/*");
}
ok($compacted >= 1, "log compacted: $compacted partitions dropped their first segment");

my $pos = log_position($node);
$node->start;
wait_until_serving($node);
# linearizable reads on every partition: everything committed is applied
is($node->safe_psql('postgres', $SIZES),
	join('|', map { scalar keys %{ $maps{"map$_"} } } 0 .. 3),
	'after crash: map sizes are those written');
my $before = state_dump($node);
check_model('after crash', $before);
no_crash_since($node, $pos, 'restart after crash');

# ---- the same again, comparing full dumps (versions included) ----
my $sizes = $node->safe_psql('postgres', $SIZES);
$node->stop('immediate');
$pos = log_position($node);
$node->start;
wait_until_serving($node);
is($node->safe_psql('postgres', $SIZES), $sizes, 'second crash: map sizes unchanged');
my $api = join("\n",
	map { "counter|$_|" . $node->safe_psql('postgres', "SELECT atomix.counter_get('$_')") }
	  sort keys %counters);
my $after = state_dump($node);
is($after, $before, 'second crash: state equals state before (values and versions)');
if ($after ne $before)
{
	my %b = map { $_ => 1 } split /\n/, $before;
	my %a = map { $_ => 1 } split /\n/, $after;
	diag "only before: $_" for grep { !$a{$_} } sort keys %b;
	diag "only after:  $_" for grep { !$b{$_} } sort keys %a;
}
is($api, join("\n", grep { /^counter\|/ } split /\n/, $before),
	'second crash: counter_get returns the values from before');
no_crash_since($node, $pos, 'restart after second crash');

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
