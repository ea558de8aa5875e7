# 107_election_failover.pl — leader elections and semaphores across nodes
# and across a node crash, on a 3-node cluster with atomix.session_timeout
# = 5s (docs/coordination.md, "Leader elections", "Semaphores", "Watches"):
#  - candidates entered from three nodes line up in order, every node reads
#    the same state; entering again changes nothing, a candidate id owned by
#    another session is refused (23505); promote reorders the line without a
#    new term;
#  - the node of the leading candidate crashes: the next candidate leads,
#    the term grows by one, within session_timeout + 2 s (+ 2 s when the
#    election's partition was led by the crashed node too); a watcher on a
#    surviving node is told (event "leader", version = the new term);
#  - permits held by a session of the crashed node return to the semaphore
#    and go to a waiter on another node within the same bound;
#  - withdraw / anoint / evict from other nodes; the restarted node sees the
#    state, its old candidate is gone, and a new session of it can enter.
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
my $TIMEOUT = 5;    # atomix.session_timeout, seconds (comfortably above a leader election, ~1-2 s)
my @n = atomix_cluster($N, name => 'elect',
	conf => [ "atomix.session_timeout = '${TIMEOUT}s'", 'log_statement = none' ]);
my ($lead, $placed) = wait_for_preferred_leaders($n[0], $N, 30);
ok($placed, 'partition leadership settles on the preferred placement');

my @s = map { AtomixTest::Session->new($_) } @n;    # one candidate session per node

sub eget
{
	my ($node, $e) = @_;
	return $node->safe_psql('postgres', "SELECT * FROM atomix.election_get('$e')");
}

# An election name E<i> whose partition is led by a node for which WANT is
# true: node 1 enters candidate c1 (leaving again where the name does not
# fit).  Returns (name, partition).
sub election_where
{
	my ($prefix, $want) = @_;
	for my $i (0 .. 99)
	{
		my $e = "$prefix$i";
		my $st = $s[0]->query_safe("SELECT * FROM atomix.election_enter('$e', 'c1')");
		die "election_enter('$e', 'c1') returned '$st'" unless $st eq '1|c1|{c1}';
		my $p = object_partition($n[0], 'e', $e);
		die "no object_data row for election $e" unless defined $p;
		return ($e, $p) if $want->($lead->{$p} // 0);
		$s[0]->query_safe("SELECT atomix.election_withdraw('$e', 'c1')");
	}
	die "no election name with prefix $prefix in a wanted partition";
}

# ---- line up: c1 (node 1), c2 (node 2), c3 (node 3) ----
my ($ea, $pa) = election_where('el-a-', sub { $_[0] != 1 });
my ($eb, $pb) = election_where('el-b-', sub { $_[0] == 1 });
note "$ea in partition $pa (led by node $lead->{$pa}), $eb in partition $pb (led by node 1)";
for my $e ($ea, $eb)
{
	is($s[1]->query_safe("SELECT * FROM atomix.election_enter('$e', 'c2')"), '1|c1|{c1,c2}',
		"$e: c2 enters from node 2, c1 leads in term 1");
	is($s[2]->query_safe("SELECT * FROM atomix.election_enter('$e', 'c3')"), '1|c1|{c1,c2,c3}',
		"$e: c3 enters from node 3");
	is(eget($_, $e), '1|c1|{c1,c2,c3}', "$e: node " . node_id($_) . ' reads the same state') for @n;
}
is($s[1]->query_safe("SELECT * FROM atomix.election_enter('$ea', 'c2')"), '1|c1|{c1,c2,c3}',
	'entering again from the same session changes nothing');
my ($out, $err) = $s[2]->query("SELECT * FROM atomix.election_enter('$ea', 'c1')");
is(sqlstate_of($err), '23505', 'a candidate id entered by another session (on another node) is refused with 23505')
  or diag "out: $out\nerr: $err";
is($n[1]->safe_psql('postgres', "SELECT * FROM atomix.election_promote('$ea', 'c3')"), '1|c1|{c1,c3,c2}',
	'promote c3 (from another session): next in line, same term');
is($n[2]->safe_psql('postgres', "SELECT * FROM atomix.election_promote('$ea', 'c2')"), '1|c1|{c1,c2,c3}',
	'promote c2 back');
is($n[2]->safe_psql('postgres', "SELECT * FROM atomix.election_anoint('$ea', 'nobody')"), '1|c1|{c1,c2,c3}',
	'anoint of an unknown candidate changes nothing');

# ---- a watcher on node 2, a semaphore held by node 1 and awaited on node 3 ----
my $l = AtomixTest::Session->new($n[1]);
my $chan = $l->query_safe("SELECT atomix.watch('$ea')");
like($chan, qr/^atomix_watch_[0-9a-f]{16}$/, "watch('$ea') returns a channel");
$l->query_safe(qq{LISTEN "$chan"});

my ($sem, $psem);
for my $i (0 .. 99)
{
	$sem = "sem-$i";
	die "semaphore_create('$sem', 2) did not return true"
	  unless $s[0]->query_safe("SELECT atomix.semaphore_create('$sem', 2)") eq 't';
	$psem = object_partition($n[0], 'm', $sem);
	die "no object_data row for semaphore $sem" unless defined $psem;
	last if ($lead->{$psem} // 1) != 1;
}
note "semaphore $sem in partition $psem (led by node $lead->{$psem})";
is($n[1]->safe_psql('postgres', "SELECT atomix.semaphore_create('$sem', 5)"), 'f',
	'semaphore_create of an existing semaphore: false');
is($n[2]->safe_psql('postgres', "SELECT atomix.semaphore_available('$sem')"), '2',
	'and it is unchanged (2 available, seen from node 3)');
is($s[0]->query_safe("SELECT atomix.semaphore_acquire('$sem', 2)"), 't', "node 1 takes both permits of $sem");
is($n[2]->safe_psql('postgres', "SELECT atomix.semaphore_available('$sem')"), '0', 'node 3 sees 0 available');
my $sw = AtomixTest::Session->new($n[2]);
$sw->send("SELECT atomix.semaphore_acquire('$sem', 1)");
ok(wait_for_waiting_backend($n[2], $sw->pid), 'a backend on node 3 waits for a permit');

# ---- crash node 1 (the node of c1 and of the permits) ----
# one polling session per election on node 3 (a read of the partition the
# crashed node led waits for its new leader: it must not delay the others)
my %poll = map { $_ => AtomixTest::Session->new($n[2]) } $ea, $eb;
my %at;
my @pos_surv = map { log_position($_) } @n[ 1, 2 ];
my $t0 = time;
$n[0]->stop('immediate');
my $stop_took = time - $t0;
$poll{$_}->send("SELECT * FROM atomix.election_get('$_')") for keys %poll;
while (time - $t0 < 30 && keys %at < 3)
{
	for my $e (grep { !$at{$_} } $ea, $eb)
	{
		my ($o, $err) = $poll{$e}->poll;
		next unless defined $o;
		if ($o ne '1|c1|{c1,c2,c3}') { $at{$e} = [ time - $t0, $err eq '' ? $o : $err ]; }
		else { $poll{$e}->send("SELECT * FROM atomix.election_get('$e')"); }
	}
	if (!$at{sem})
	{
		my ($o, $e) = $sw->poll;
		$at{sem} = [ time - $t0, $o, $e ] if defined $o;
	}
	usleep(10_000);
}
note sprintf('pg_ctl stop -m immediate took %.2fs', $stop_took);
# the survivors' own sessions (c2, c3, the semaphore waiter) live through
# the failover of the partitions node 1 led
no_session_given_up_since($n[$_], $pos_surv[ $_ - 1 ], 'surviving node ' . ($_ + 1) . ' during the failover')
  for 1, 2;
for ([ $ea, 2, "partition led by node $lead->{$pa}" ], [ $eb, 4, 'partition led by node 1' ])
{
	my ($e, $slack, $what) = @$_;
	my ($when, $st) = @{ $at{$e} // [ 99, 'unchanged' ] };
	note sprintf('%s (%s): %s seen on node 3 %.2fs after the crash began', $e, $what, $st, $when);
	is($st, '2|c2|{c2,c3}', "$e: c2 leads in term 2 after c1's node crashed");
	cmp_ok($when, '<', $TIMEOUT + $slack, "$e ($what): within session_timeout + $slack s");
	cmp_ok($when, '>', 0.6 * $TIMEOUT, "$e: not before c1's session could have expired");
}
my ($when, $o, $e) = @{ $at{sem} // [ 99, '', 'no answer' ] };
note sprintf('%s: node 3 got a permit %.2fs after the crash began', $sem, $when);
is($o, 't', "node 3 gets a permit of $sem once node 1's session expired") or diag $e;
cmp_ok($when, '<', $TIMEOUT + 2, 'within session_timeout + 2 s');
is($n[1]->safe_psql('postgres', "SELECT atomix.semaphore_available('$sem')"), '1',
	'node 1\'s permits returned: 1 available (node 3 holds 1)');

my (@ev, @leader);
my $t_ev = time;
while (!@leader && time - $t_ev < 10)
{
	push @ev, $l->notifications(1, 1);
	@leader = grep { $_->{json} && ($_->{json}{event} // '') eq 'leader' } @ev;
}
note 'watcher on node 2 got: ' . join(' ', map { $_->{payload} } @ev);
ok(scalar @leader, 'the watcher on node 2 is told of the new leader')
  or diag 'got: ' . join("\n", map { $_->{payload} } @ev);
if (@leader)
{
	my $j = $leader[-1]{json};
	is_deeply([ @$j{qw(kind name event version)} ], [ 'election', $ea, 'leader', 2 ],
		'its payload: kind election, the election, event leader, version 2 (the term)')
	  or diag $leader[-1]{payload};
	is($leader[-1]{channel}, $chan, 'on the channel watch() returned');
}

# ---- more changes from the survivors ----
is($s[1]->query_safe("SELECT * FROM atomix.election_withdraw('$ea', 'c2')"), '3|c3|{c3}',
	'the leader c2 withdraws: c3 leads in term 3');
is($s[1]->query_safe("SELECT * FROM atomix.election_enter('$ea', 'c2')"), '3|c3|{c3,c2}', 'c2 enters again');
is($n[2]->safe_psql('postgres', "SELECT * FROM atomix.election_anoint('$ea', 'c2')"), '4|c2|{c2,c3}',
	'anoint c2 (from node 3): term 4');
is($n[1]->safe_psql('postgres', "SELECT * FROM atomix.election_evict('$ea', 'c3')"), '4|c2|{c2}',
	'evict c3 (from node 2): same leader, same term');
is($s[2]->query_safe("SELECT * FROM atomix.election_enter('$ea', 'c3')"), '4|c2|{c2,c3}', 'c3 enters again');

# ---- node 1 restarts: c1 is gone for good, node 1 reads the state ----
my $pos1 = log_position($n[0]);
$n[0]->start;
wait_until_serving($n[0]);
is(eget($n[0], $ea), '4|c2|{c2,c3}', "restarted node 1 reads $ea: c1 is not back");
is(eget($n[0], $eb), '2|c2|{c2,c3}', "restarted node 1 reads $eb");
my $s1 = AtomixTest::Session->new($n[0]);
is(query_no_55000($s1, "SELECT * FROM atomix.election_enter('$ea', 'c1')", 'a new backend on restarted node 1'),
	'4|c2|{c2,c3,c1}',
	'a new session on node 1 enters c1 at the end of the line');
is(query_no_55000($s1, "SELECT atomix.semaphore_acquire('$sem', 1, '0s')", 'the same backend'), 't',
	'and takes the free permit');
is($s1->query_safe("SELECT atomix.semaphore_acquire('$sem', 1, '0.2s')"), 'f',
	'a third permit times out (false)');
is($sw->query_safe("SELECT atomix.semaphore_release('$sem')"), 't', 'node 3 releases its permit');
is($sw->query_safe("SELECT atomix.semaphore_release('$sem')"), 'f', 'releasing more than held: false');

$_->quit for @s, $l, values %poll, $sw, $s1;
no_crash_since($n[1], 0, 'node 2');
no_crash_since($n[2], 0, 'node 3');
no_crash_since($n[0], $pos1, 'node 1 since its restart');
stop_cleanly($_) for @n;
done_testing();
