# 001_durability.pl — acknowledged writes survive a crash under load.
#
# Four psql clients each increment their own counter and put fresh map keys
# as fast as they can; the server is stopped with `immediate` mid-load.
# After the restart every acknowledged write is there, at most the one
# request each client had in flight may additionally have been applied, and
# nothing was applied twice.  A clean restart then changes nothing (log
# replay is idempotent), and a second round under load with a plain
# `pg_ctl restart` (fast shutdown) keeps everything acknowledged too.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";

use AtomixTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $CLIENTS = 4;

my $node = atomix_node('durable', conf => [ 'log_statement = none' ]);

# Counter value per client before the round (counters never set read 0).
my %base = map { $_ => 0 } 1 .. $CLIENTS;
# Map size before the round.
my $base_size = 0;

# Every map entry of 'm': key => [value, version].
sub map_contents
{
	my %m;
	my $out = $node->safe_psql('postgres',
		"SELECT key, value, version FROM atomix.map_entries('m')");
	for (split /\n/, $out)
	{
		my ($k, $v, $ver) = split /\|/;
		$m{$k} = [ $v, $ver ];
	}
	return %m;
}

# Checks one round's acknowledgements against the node's state; updates
# %base and $base_size.
sub verify_round
{
	my ($label, @res) = @_;
	my %m = map_contents();
	my ($acked_puts, $uncertain_puts) = (0, 0);

	for my $r (@res)
	{
		my ($i, $round) = ($r->{i}, $r->{round});
		my %uncertain = map { $_ => 1 } @{ $r->{uncertain} };

		# counter c<i>: the last acknowledged value, plus at most the
		# increments that were in flight (or failed in doubt) after it
		my @cj = sort { $a <=> $b } keys %{ $r->{counter} };
		my $last_j = @cj ? $cj[-1] : 0;
		my $acked = @cj ? $r->{counter}{$last_j} : $base{$i};
		my $slack = grep { $_ % 2 == 0 && $_ / 2 + 1 > $last_j } keys %uncertain;
		my $final = $node->safe_psql('postgres', "SELECT atomix.counter_get('c$i')");
		ok($final >= $acked && $final <= $acked + $slack,
			"$label: client $i counter is the acknowledged $acked (+ up to $slack in flight)")
		  or diag "counter c$i = $final";
		my $mono = 1;
		my $prev = $base{$i};
		for my $j (@cj)
		{
			$mono = 0 if $r->{counter}{$j} <= $prev;
			$prev = $r->{counter}{$j};
		}
		ok($mono, "$label: client $i saw its counter strictly increase");

		# map keys: all acknowledged ones, with their value and version
		my ($missing, $wrong) = (0, 0);
		for my $j (keys %{ $r->{put} })
		{
			my $e = $m{"k$i-$round-$j"};
			if (!$e) { $missing++; next; }
			$wrong++ if $e->[0] ne $j || $e->[1] != $r->{put}{$j};
		}
		is($missing, 0, "$label: client $i: all acknowledged keys present");
		is($wrong, 0, "$label: client $i: with the acknowledged value and version");

		# ... and nothing else but a put that was in flight
		my @extra;
		for my $k (keys %m)
		{
			next unless $k =~ /^k$i-$round-(\d+)$/;
			push @extra, $k unless exists $r->{put}{$1} || $uncertain{ 2 * ($1 - 1) + 1 };
		}
		is(scalar @extra, 0, "$label: client $i: no key appeared that was not written")
		  or diag "unexpected keys: @extra";

		$acked_puts += keys %{ $r->{put} };
		$uncertain_puts += grep { $_ % 2 == 1 } keys %uncertain;
		$base{$i} = $final;
	}

	my $size = $node->safe_psql('postgres', "SELECT atomix.map_size('m')");
	ok( $size >= $base_size + $acked_puts
		  && $size <= $base_size + $acked_puts + $uncertain_puts,
		"$label: map_size $size is the $acked_puts acknowledged (+ up to $uncertain_puts in flight)"
	);
	$base_size = $size;

	# a few point reads through map_get
	my ($checked, $bad) = (0, 0);
	for my $r (@res)
	{
		my @j = (sort { $a <=> $b } keys %{ $r->{put} })[ 0, -1 ];
		for my $j (grep { defined } @j)
		{
			$checked++;
			my $v = $node->safe_psql('postgres',
				"SELECT atomix.map_get('m', 'k$r->{i}-$r->{round}-$j')");
			$bad++ if $v ne $j;
		}
	}
	is($bad, 0, "$label: map_get reads acknowledged keys ($checked checked)");
	return;
}

# Each client acknowledged enough to make the round meaningful.
sub check_progress
{
	my ($label, @res) = @_;
	for my $r (@res)
	{
		my $n = keys(%{ $r->{counter} }) + keys(%{ $r->{put} });
		cmp_ok($n, '>=', 20, "$label: client $r->{i} had $n writes acknowledged")
		  or diag "stderr of client $r->{i}: $r->{err}";
		note "$label: client $r->{i}: $n acked, $r->{errors} errors, uncertain @{ $r->{uncertain} }";
	}
	return;
}

# ---- round 1: immediate stop under load ----
my $load = start_load($node, clients => $CLIENTS, round => 'r1', pairs => 50000);
my $running = pump_load($load, 3);
is($running, $CLIENTS, 'round 1: all clients still running when the server stops');
$node->stop('immediate');
my @r1 = finish_load($load);
check_progress('round 1', @r1);

my $pos = log_position($node);
$node->start;
wait_until_serving($node);
verify_round('after immediate stop', @r1);
no_crash_since($node, $pos, 'restart after immediate stop');

# ---- clean restart: nothing changes, nothing is applied twice ----
my $dump = state_dump($node);
$pos = log_position($node);
$node->restart;
wait_until_serving($node);
no_crash_since($node, $pos, 'clean restart');
is(state_dump($node), $dump, 'clean restart: state (values and versions) unchanged');
is($node->safe_psql('postgres', "SELECT atomix.map_size('m')"), $base_size,
	'clean restart: map_size unchanged');
for my $i (1 .. $CLIENTS)
{
	is($node->safe_psql('postgres', "SELECT atomix.counter_get('c$i')"), $base{$i},
		"clean restart: counter c$i unchanged");
}

# ---- round 2: pg_ctl restart (fast shutdown) under load ----
$load = start_load($node, clients => $CLIENTS, round => 'r2', pairs => 50000);
$running = pump_load($load, 2);
is($running, $CLIENTS, 'round 2: all clients still running when the server restarts');
$pos = log_position($node);
$node->restart;
my @r2 = finish_load($load);
check_progress('round 2', @r2);
wait_until_serving($node);
no_crash_since($node, $pos, 'restart (fast) under load');
verify_round('after fast restart', @r2);

# round 1's keys are all still there
my %m = map_contents();
my $lost = 0;
for my $r (@r1)
{
	for my $j (keys %{ $r->{put} })
	{
		my $e = $m{"k$r->{i}-r1-$j"};
		$lost++ unless $e && $e->[0] eq $j && $e->[1] == $r->{put}{$j};
	}
}
is($lost, 0, 'after fast restart: round 1 keys intact');

stop_cleanly($node);
done_testing();
