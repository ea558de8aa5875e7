# 005_shared_counter.pl — concurrent increments of one counter are never
# lost: four clients incrementing the same counter (their commands land in
# the same loop turns, often in the same packed entry) end at the total,
# and every increment returned a distinct value.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";

use AtomixTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $CLIENTS = 4;
my $EACH = 300;

my $node = atomix_node('shared', conf => [ 'log_statement = none' ]);

my @s = map { AtomixTest::Session->new($node) } 1 .. $CLIENTS;
for my $s (@s)
{
	$s->send(join(";\n", ("SELECT atomix.counter_incr('shared')") x $EACH));
}
my @values;
for my $i (0 .. $#s)
{
	my ($out, $err) = $s[$i]->result(120);
	is($err, '', "client $i: all increments succeeded");
	push @values, split /\n/, $out;
}

my $total = $CLIENTS * $EACH;
is(scalar @values, $total, "$total increments acknowledged");
is($node->safe_psql('postgres', "SELECT atomix.counter_get('shared')"), $total,
	'the counter holds the number of increments');
my %seen;
my @dup = grep { $seen{$_}++ } @values;
is(scalar @dup, 0, 'every increment returned a distinct value')
  or diag scalar(@dup) . ' duplicates, e.g. ' . join(' ', @dup[ 0 .. ($#dup < 9 ? $#dup : 9) ]);
my @sorted = sort { $a <=> $b } @values;
is_deeply([ $sorted[0], $sorted[-1] ], [ 1, $total ], 'values run from 1 to the total');

# counter_cas from all clients at once, all expecting the current value:
# exactly one wins
my $cur = $node->safe_psql('postgres', "SELECT atomix.counter_get('shared')");
for my $s (@s)
{
	$s->send("SELECT atomix.counter_cas('shared', $cur, -1)");
}
my $wins = 0;
for my $s (@s)
{
	my ($out, $err) = $s->result(60);
	$wins++ if $out eq 't';
}
is($wins, 1, 'concurrent counter_cas with the same expectation: exactly one succeeds');
is($node->safe_psql('postgres', "SELECT atomix.counter_get('shared')"), '-1',
	'and its value is stored');

$_->quit for @s;
stop_cleanly($node);
done_testing();
