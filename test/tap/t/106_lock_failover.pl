# 106_lock_failover.pl — locks across node failures on a 3-node cluster
# with atomix.session_timeout = 5s (docs/coordination.md, "Sessions" and
# "Locks"):
#  (a) a backend on node 2 holds two locks, one in a partition led by a
#      survivor and one in a partition node 2 leads; waiters on nodes 3 and 1
#      wait; node 2 crashes (pg_ctl stop -m immediate).  Each lock passes to
#      its waiter once node 2's sessions expired: within session_timeout +
#      2 s (+ 2 s more for the lock whose partition also had to elect a new
#      leader), never before most of session_timeout has passed, with a
#      larger fencing token; lock_holder shows the new holder everywhere.
#  (b) a node cut off (its raft worker frozen with SIGSTOP) loses its
#      sessions after session_timeout: the lock passes to a waiter on
#      another node, and once the node is back the holder's next atomix
#      call fails with "atomix session expired" (55000); the call after that
#      starts a new session.
#  (c) fencing tokens keep increasing across a leader failover of the
#      lock's partition: a lock held on node 1 (partition led by node 3)
#      stays held while node 3 crashes and a new leader takes over (the
#      holder's session survives the leader change); its release grants it
#      to a waiter on node 2; acquire/release again through the new leader,
#      then through node 3 once it is back and leads again: every token is
#      larger than the one before.
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
my @n = atomix_cluster($N, name => 'lockfo',
	conf => [ "atomix.session_timeout = '${TIMEOUT}s'", 'log_statement = none' ]);
my ($ret, $out, $err) = $n[0]->psql('postgres', 'SHOW atomix.session_timeout');
is($ret, 0, "atomix.session_timeout exists ($out)") or diag $err;
my ($lead, $placed) = wait_for_preferred_leaders($n[0], $N, 30);
ok($placed, 'partition leadership settles on the preferred placement');

# ---- helpers ----

# Takes (lock_try_acquire) a lock named PREFIX<i> in SESSION on NODE whose
# partition is led (as LEADERS says) by a node for which WANT returns true;
# releases the names that do not fit.  Returns (name, token, partition).
sub take_lock_where
{
	my ($s, $node, $prefix, $leaders, $want) = @_;
	for my $i (0 .. 99)
	{
		my $name = "$prefix$i";
		my ($tok, $err) = $s->query("SELECT atomix.lock_try_acquire('$name')");
		die "lock_try_acquire('$name') returned '$tok' $err" unless $tok =~ /^\d+$/;
		my $p = object_partition($node, 'l', $name);
		die "no object_data row for lock $name on " . $node->name unless defined $p;
		return ($name, $tok, $p) if $want->($leaders->{$p} // 0);
		$s->query_safe("SELECT atomix.lock_release('$name')");
	}
	die "no lock name with prefix $prefix in a wanted partition";
}

# A new psql session on NODE whose backend has opened its atomix session
# (with a throwaway lock).  Test: that first call is not refused with
# "atomix session expired" (a new backend has no old session to lose);
# should it be, the following calls are tried until one is not, so that
# the rest of the script can go on.
sub fresh_session
{
	my ($node, $label) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $s = AtomixTest::Session->new($node);
	my @refused;
	for my $try (1 .. 50)
	{
		my ($o, $e) = $s->query("SELECT atomix.lock_try_acquire('warm-up-$try')");
		if ((sqlstate_of($e) // '') eq '55000') { push @refused, $e; next; }
		die "warm-up lock on " . $node->name . ": $o $e" unless $o =~ /^\d+$/;
		$s->query_safe("SELECT atomix.lock_release('warm-up-$try')");
		last;
	}
	is(scalar @refused, 0, "$label: a new backend's first session call is not refused with 55000")
	  or diag scalar(@refused) . " refusals, the first: $refused[0]";
	return $s;
}

# "token|session|node" of lock NAME as NODE sees it ("||" or "" when free)
sub holder
{
	my ($node, $name) = @_;
	return $node->safe_psql('postgres',
		"SELECT token, session, node FROM atomix.lock_holder('$name')");
}

# Polls the sessions of WAITS ([{ s => session }]) until each has answered
# (or LIMIT s since T0 passed); sets {at} (s since T0), {out}, {err}.
sub wait_answers
{
	my ($t0, $limit, @w) = @_;
	while (time - $t0 < $limit && grep { !exists $_->{at} } @w)
	{
		for my $w (grep { !exists $_->{at} } @w)
		{
			my ($o, $e) = $w->{s}->poll;
			next unless defined $o;
			@$w{qw(at out err)} = (time - $t0, $o, $e);
		}
		usleep(5_000);
	}
	return;
}

# ======================================================================
# (a) the holder's node crashes
# ======================================================================
my $victim = $n[1];    # node 2
my $h = AtomixTest::Session->new($victim);
my ($lock_a, $tok_a, $part_a) = take_lock_where($h, $victim, 'fo-a-', $lead, sub { $_[0] != 2 });
my ($lock_b, $tok_b, $part_b) = take_lock_where($h, $victim, 'fo-b-', $lead, sub { $_[0] == 2 });
my $h_session = $h->query_safe('SELECT atomix.session_id()');
like($h_session, qr/^\d+$/, '(a) the holder has a session');
is($h_session >> 48, 2, '(a) its id carries node id 2 in the top 16 bits');
note "(a) node 2 holds $lock_a (partition $part_a, led by node $lead->{$part_a}, token $tok_a) "
  . "and $lock_b (partition $part_b, led by node 2, token $tok_b)";
is(holder($n[0], $lock_a), "$tok_a|$h_session|2", '(a) node 1 sees node 2 holding the first lock');
is(holder($n[2], $lock_b), "$tok_b|$h_session|2", '(a) node 3 sees node 2 holding the second lock');

my @w = (
	{ s => AtomixTest::Session->new($n[2]), lock => $lock_a, tok => $tok_a, node => 3,
		limit => $TIMEOUT + 2, what => 'partition led by a survivor' },
	{ s => AtomixTest::Session->new($n[0]), lock => $lock_b, tok => $tok_b, node => 1,
		limit => $TIMEOUT + 4, what => 'partition led by the crashed node' });
for my $x (@w)
{
	$x->{s}->send("SELECT atomix.lock_acquire('$x->{lock}')");
	ok(wait_for_waiting_backend($n[ $x->{node} - 1 ], $x->{s}->pid),
		"(a) a backend on node $x->{node} waits for $x->{lock}");
}
wait_answers(time, 0.5, @w);
is(scalar(grep { exists $_->{at} } @w), 0, '(a) neither waiter got its lock while node 2 was up')
  or diag join("\n", map { "$_->{lock}: " . ($_->{out} // '') . ' ' . ($_->{err} // '') } @w);

my @pos_surv = map { log_position($_) } @n[ 0, 2 ];
my $t0 = time;
$victim->stop('immediate');
my $stop_took = time - $t0;
wait_answers($t0, 30, @w);
for my $x (@w)
{
	my $at = $x->{at} // 99;
	note sprintf('(a) %s (%s) granted on node %d %.2fs after the crash began '
		  . '(pg_ctl stop -m immediate took %.2fs)',
		$x->{lock}, $x->{what}, $x->{node}, $at, $stop_took);
	like($x->{out} // '', qr/^\d+$/, "(a) the waiter on node $x->{node} gets $x->{lock}")
	  or diag "stdout: " . ($x->{out} // '(none)') . "\nstderr: " . ($x->{err} // '');
	cmp_ok($at, '<', $x->{limit},
		"(a) $x->{lock} ($x->{what}) passes within session_timeout + " . ($x->{limit} - $TIMEOUT) . ' s');
	cmp_ok($at, '>', 0.6 * $TIMEOUT, "(a) $x->{lock} did not pass before the session could have expired");
	cmp_ok($x->{out} // 0, '>', $x->{tok}, "(a) the new fencing token of $x->{lock} is larger");
	my $sess = $x->{s}->query_safe('SELECT atomix.session_id()');
	is(holder($n[ $x->{node} == 1 ? 2 : 0 ], $x->{lock}), "$x->{out}|$sess|$x->{node}",
		"(a) the other survivor sees node $x->{node}'s session holding $x->{lock}");
}
$h->quit;
no_session_given_up_since($n[0], $pos_surv[0], '(a) surviving node 1 (its waiter\'s lock is in a partition node 2 led)');
no_session_given_up_since($n[2], $pos_surv[1], '(a) surviving node 3');

# node 2 comes back: it sees the new holders and cannot take the locks
my $pos2 = log_position($victim);
$victim->start;
wait_until_serving($victim);
for my $x (@w)
{
	like(holder($victim, $x->{lock}), qr/^$x->{out}\|\d+\|$x->{node}$/,
		"(a) restarted node 2 sees node $x->{node} holding $x->{lock}");
	# the first session-opening call of a new backend on the restarted node
	my ($r, $o, $e) = $victim->psql('postgres', "SELECT atomix.lock_try_acquire('$x->{lock}') IS NULL");
	is($o, 't', "(a) lock_try_acquire('$x->{lock}') in a new backend on restarted node 2 returns NULL")
	  or diag "stderr: $e";
	is($x->{s}->query_safe("SELECT atomix.lock_release('$x->{lock}')"), 't',
		"(a) node $x->{node} releases $x->{lock}");
}
($lead, $placed) = wait_for_preferred_leaders($n[0], $N, 30);
ok($placed, 'leadership returns to the preferred placement after node 2 restarted');

# ======================================================================
# (b) node 2 cut off: its raft worker frozen for longer than the timeout
# ======================================================================
my $h2 = fresh_session($victim, '(b) node 2 after its restart');
my ($lock_c, $tok_c, $part_c) = take_lock_where($h2, $victim, 'cut-', $lead, sub { $_[0] != 2 });
my $old_session = $h2->query_safe('SELECT atomix.session_id()');
my $wc = { s => AtomixTest::Session->new($n[2]) };
$wc->{s}->send("SELECT atomix.lock_acquire('$lock_c')");
ok(wait_for_waiting_backend($n[2], $wc->{s}->pid), "(b) a backend on node 3 waits for $lock_c");
my $wpid = worker_pid($victim);
ok(defined $wpid, '(b) node 2 has a raft worker');
$t0 = time;
freeze_pid($wpid);
wait_answers($t0, 30, $wc);
my $cut_at = $wc->{at} // 99;
note sprintf('(b) %s passed to node 3 %.2fs after node 2 was cut off', $lock_c, $cut_at);
like($wc->{out} // '', qr/^\d+$/, '(b) the waiter on node 3 gets the lock of the cut-off node')
  or diag 'stderr: ' . ($wc->{err} // '');
cmp_ok($cut_at, '<', $TIMEOUT + 2, '(b) within session_timeout + 2 s');
cmp_ok($wc->{out} // 0, '>', $tok_c, '(b) with a larger token');
usleep(500_000);
thaw_pid($wpid);
is(worker_pid($victim), $wpid, '(b) node 2 keeps its raft worker');
wait_until_serving($victim);
($out, $err) = $h2->query("SELECT atomix.lock_release('$lock_c')", 30);
is(sqlstate_of($err), '55000', '(b) the holder\'s next call fails with 55000') or diag "out: $out\nerr: $err";
like($err, qr/atomix session expired/, '(b) "atomix session expired"');
($out, $err) = $h2->query("SELECT atomix.lock_try_acquire('$lock_c') IS NULL, "
	  . "atomix.lock_try_acquire('$lock_c-2') > 0", 30);
is($out, 't|t', '(b) the call after that works (a new session: the old lock is gone, a new one is taken)')
  or diag $err;
my $new_session = $h2->query_safe('SELECT atomix.session_id()');
isnt($new_session, $old_session, '(b) with a new session id');
like(holder($n[0], "$lock_c-2"), qr/^\d+\|$new_session\|2$/, '(b) the new session holds the new lock');
like(holder($n[0], $lock_c), qr/^$wc->{out}\|\d+\|3$/, '(b) node 3 still holds the old lock');
$h2->query_safe("SELECT atomix.lock_release('$lock_c-2')");
$wc->{s}->query_safe("SELECT atomix.lock_release('$lock_c')");
$h2->quit;
$wc->{s}->quit;
($lead, $placed) = wait_for_preferred_leaders($n[0], $N, 30);
ok($placed, 'leadership returns to the preferred placement after node 2 was thawed');

# ======================================================================
# (c) fencing tokens across a leader failover of the lock's partition
# ======================================================================
my $x_node = $n[2];    # node 3 leads the partition, and crashes
my $y = AtomixTest::Session->new($n[0]);    # holder on node 1
my $z = { s => AtomixTest::Session->new($n[1]) };    # waiter on node 2
my ($lock_f, $t1, $part_f) = take_lock_where($y, $n[0], 'fence-', $lead, sub { $_[0] == 3 });
my $term_before = partition_info($n[0])->{$part_f}{term};
$z->{s}->send("SELECT atomix.lock_acquire('$lock_f')");
ok(wait_for_waiting_backend($n[1], $z->{s}->pid), "(c) a backend on node 2 waits for $lock_f");
note "(c) $lock_f in partition $part_f (led by node 3, term $term_before), token $t1 held on node 1";

my @pos_c = map { log_position($_) } @n[ 0, 1 ];
$t0 = time;
$x_node->stop('immediate');
my $elected = wait_until(20, sub {
	my $i = partition_info($n[0]) or return 0;
	my $p = $i->{$part_f};
	return defined $p->{leader} && $p->{leader} != 3 && $p->{term} > $term_before;
});
ok($elected, "(c) partition $part_f elects a new leader after node 3 crashed");
note sprintf('(c) new leader of partition %d seen %.2fs after the crash', $part_f, time - $t0);
# longer than a session_timeout after the failover: the holder's session
# was renewed through the new leader, the lock stays where it is
usleep(1_000_000 * ($TIMEOUT + 1));
is(holder($n[1], $lock_f), "$t1|" . $y->query_safe('SELECT atomix.session_id()') . '|1',
	'(c) after the failover and a session_timeout, node 1 still holds the lock with its token');
no_session_given_up_since($n[0], $pos_c[0], '(c) node 1 (the holder) during the failover');
no_session_given_up_since($n[1], $pos_c[1], '(c) node 2 (the waiter) during the failover');
wait_answers(time, 0.1, $z);
ok(!exists $z->{at}, '(c) the waiter on node 2 is still waiting')
  or diag 'it got: ' . ($z->{out} // '') . ' ' . ($z->{err} // '');

my $t_rel = time;
is($y->query_safe("SELECT atomix.lock_release('$lock_f')"), 't', '(c) node 1 releases through the new leader');
wait_answers($t_rel, 20, $z);
my $t2 = $z->{out} // '';
like($t2, qr/^\d+$/, '(c) the waiter on node 2 is granted the lock') or diag $z->{err};
note sprintf('(c) granted on node 2 %.3fs after the release', ($z->{at} // 99));
cmp_ok($t2 || 0, '>', $t1, "(c) token after the failover ($t2) > token before ($t1)");
is($y->query_safe("SELECT atomix.lock_try_acquire('$lock_f') IS NULL"), 't',
	'(c) node 1 cannot take it meanwhile');
is($z->{s}->query_safe("SELECT atomix.lock_release('$lock_f')"), 't', '(c) node 2 releases');
my $t3 = $y->query_safe("SELECT atomix.lock_acquire('$lock_f')");
cmp_ok($t3, '>', $t2, "(c) acquired again on node 1 through the new leader: $t3 > $t2");
is($y->query_safe("SELECT atomix.lock_acquire('$lock_f')"), $t3,
	'(c) acquiring a held lock again returns the same token (not reentrant)');
is($y->query_safe("SELECT atomix.lock_release('$lock_f')"), 't', '(c) node 1 releases');
is($y->query_safe("SELECT atomix.lock_release('$lock_f')"), 'f', '(c) a second release returns false');

# node 3 comes back, leads its partition again: tokens still increase
my $pos3 = log_position($x_node);
$x_node->start;
wait_until_serving($x_node);
($lead, $placed) = wait_for_preferred_leaders($n[0], $N, 30);
ok($placed && $lead->{$part_f} == 3, "(c) node 3 leads partition $part_f again after its restart");
my $x = fresh_session($x_node, '(c) node 3 after its restart');
my $t4 = query_no_55000($x, "SELECT atomix.lock_acquire('$lock_f')", '(c) node 3 after its restart');
cmp_ok($t4, '>', $t3, "(c) acquired on the restarted node 3: $t4 > $t3");
my $xs = $x->query_safe('SELECT atomix.session_id()');
is(holder($_, $lock_f), "$t4|$xs|3", '(c) node ' . node_id($_) . ' agrees on the holder')
  for @n;
is($x->query_safe("SELECT atomix.lock_release('$lock_f')"), 't', '(c) node 3 releases');
my $t5 = $z->{s}->query_safe("SELECT atomix.lock_try_acquire('$lock_f')");
cmp_ok($t5, '>', $t4, "(c) and node 2 takes it with $t5 > $t4");
$z->{s}->query_safe("SELECT atomix.lock_release('$lock_f')");
note "(c) tokens of $lock_f: $t1 $t2 $t3 $t4 $t5";

$_->quit for $y, $z->{s}, $x, map { $_->{s} } @w;
no_crash_since($n[0], 0, 'node 1');
no_crash_since($victim, $pos2, 'node 2 since its restart');
no_crash_since($x_node, $pos3, 'node 3 since its restart');
stop_cleanly($_) for @n;
done_testing();
