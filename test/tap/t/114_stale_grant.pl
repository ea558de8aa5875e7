# 114_stale_grant.pl — no call that grants something bound to a session
# returns success once that session may have been closed.
#
# 3 nodes, atomix.session_timeout = 2s.  A backend W on node 2 waits for a
# lock held by A on node 1, with B on node 3 queued behind it.  Node 2 is
# frozen (SIGSTOP of the postmaster and every child, or of its raft worker
# only, alternately); A releases, so the log grants the lock to W; node 2's
# lease runs out, W's session is closed and the lock passes to B.  Then
# node 2 resumes, with the grant to W and its session's close waiting in its
# backlog: W's lock_acquire must fail with 55000 (session expired), never
# return a token, while B holds the lock.  20 rounds.  The same for a
# semaphore permit (4 rounds), and for an election candidacy sent while
# node 2's worker is frozen that would make W the leader (4 rounds).  Last, a
# release sent while W's session expires must fail with 55000 (W must learn
# it lost what it held), for a lock and a permit.
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
my @n = atomix_cluster($N, name => 'stale',
	conf => [ 'log_statement = none', "atomix.session_timeout = '2s'" ]);
my ($l, $stable) = wait_for_stable_leaders($n[0], 3, 20);
ok($stable, 'partition leadership settles');
my $FREEZE = 2.8;    # past atomix.session_timeout

# a name of KIND whose partition node 1 leads and keeps leading (no election
# is involved): node 1 must also be its preferred leader, or the worker hands
# leadership back to the preferred node (node 2, say) as soon as it is
# connected again after a freeze — and the next freeze then stops the leader
sub name_led_by_node1
{
	my ($kind, $create, $cleanup) = @_;
	my $leaders = partition_leaders($n[0]);
	my %preferred = map { split /\|/ } split /\n/,
	  $n[0]->safe_psql('postgres', 'SELECT partition_id, replicas[1] FROM atomix.partitions');
	$leaders->{$_} = 0 for grep { ($preferred{$_} // 0) != 1 } keys %$leaders;
	for my $k (1 .. 200)
	{
		my $name = "stale-$kind-$k";
		# one session: a lock's row exists only while it is held
		my $out = $n[0]->safe_psql('postgres', $create->($name) . ";\n"
			  . "SELECT partition_id FROM atomix.object_data WHERE kind = '$kind' AND name = '$name';\n"
			  . ($cleanup ? $cleanup->($name) . ";\n" : ''));
		my $p = (split /\n/, $out)[1];    # what the create printed, then the partition
		return $name if defined $p && ($leaders->{$p} // 0) == 1;
	}
	die "no $kind name in a partition node 1 leads";
}

# every process of node 2 (postmaster first), or only its raft worker
sub node2_pids
{
	my ($worker_only) = @_;
	return (worker_pid($n[1])) if $worker_only;
	my $pm = $n[1]->{_pid};
	my @kids = split /\s+/, `pgrep -P $pm`;
	return ($pm, grep { /^\d+$/ } @kids);
}

sub outcome
{
	my ($s, $timeout) = @_;
	my ($out, $err) = $s->result($timeout // 30);
	my $state = AtomixTest::sqlstate_of($err);
	return ($out, $err, $state);
}

# sends SQL on session S and waits for its outcome
sub ask
{
	my ($s, $sql, $timeout) = @_;
	$s->send($sql);
	return outcome($s, $timeout);
}

my $pos2 = log_position($n[1]);

# ---- locks ----
my $L = name_led_by_node1('l', sub { "SELECT atomix.lock_acquire('$_[0]')" },
	sub { "SELECT atomix.lock_release('$_[0]')" });
my $A = AtomixTest::Session->new($n[0]);
my $W = AtomixTest::Session->new($n[1]);
my $B = AtomixTest::Session->new($n[2]);
my ($tokens_seen, $refused) = (0, 0);
for my $round (1 .. 20)
{
	my $worker_only = $round % 2 == 0;
	my $how = $worker_only ? 'its raft worker' : 'the whole node';
	my ($ta) = ask($A, "SELECT atomix.lock_acquire('$L')");
	$W->send("SELECT atomix.lock_acquire('$L', timeout => '30 s')");
	ok(wait_for_waiting_backend($n[1], $W->pid), "round $round: W waits on node 2");
	$B->send("SELECT atomix.lock_acquire('$L', timeout => '30 s')");
	ok(wait_for_waiting_backend($n[2], $B->pid), "round $round: B waits on node 3");
	usleep(200_000);    # B's acquire is applied behind W's

	my @pids = node2_pids($worker_only);
	freeze_pid($_) for @pids;
	my ($rel) = ask($A, "SELECT atomix.lock_release('$L')");
	is($rel, 't', "round $round: A releases while node 2 ($how) is frozen");
	my $t0 = time;
	my ($tb, $eb) = outcome($B, 20);
	like($tb, qr/^\d+$/, sprintf("round %d: the lock passes to B once node 2's session expired (%.1fs)",
		$round, time - $t0)) or diag $eb;
	usleep(1_000_000 * ($FREEZE - (time - $t0))) if time - $t0 < $FREEZE;
	thaw_pid($_) for reverse @pids;

	my ($tw, $ew, $sw) = outcome($W, 30);
	$tokens_seen++ if $tw =~ /^\d+$/;
	$refused++ if ($sw // '') eq '55000';
	is($sw, '55000', "round $round: W's lock_acquire fails with 55000 after node 2 resumes")
	  or diag "W got '$tw' / $ew";
	my ($holder) = ask($A, "SELECT session FROM atomix.lock_holder('$L')");
	my ($bsession) = ask($B, 'SELECT atomix.session_id()');
	is($holder, $bsession, "round $round: B holds the lock");
	ask($B, "SELECT atomix.lock_release('$L')");
	# W's next call starts a new session and works
	my ($again, $eagain) = ask($W, "SELECT atomix.lock_try_acquire('$L')");
	like($again, qr/^\d+$/, "round $round: W's next call works with a new session") or diag $eagain;
	ask($W, "SELECT atomix.lock_release('$L')");
}
is($tokens_seen, 0, "no frozen waiter ever got a token (55000 in $refused of 20 rounds)");

# ---- semaphores ----
my $S = name_led_by_node1('m', sub { "SELECT atomix.semaphore_create('$_[0]', 1)" });
for my $round (1 .. 4)
{
	my $worker_only = $round % 2 == 0;
	my ($a) = ask($A, "SELECT atomix.semaphore_acquire('$S')");
	is($a, 't', "semaphore round $round: A holds the permit");
	$W->send("SELECT atomix.semaphore_acquire('$S', timeout => '30 s')");
	ok(wait_for_waiting_backend($n[1], $W->pid), "semaphore round $round: W waits");
	$B->send("SELECT atomix.semaphore_acquire('$S', timeout => '30 s')");
	ok(wait_for_waiting_backend($n[2], $B->pid), "semaphore round $round: B waits");
	usleep(200_000);
	my @pids = node2_pids($worker_only);
	freeze_pid($_) for @pids;
	ask($A, "SELECT atomix.semaphore_release('$S')");
	my $t0 = time;
	my ($b) = outcome($B, 20);
	is($b, 't', "semaphore round $round: the permit passes to B");
	usleep(1_000_000 * ($FREEZE - (time - $t0))) if time - $t0 < $FREEZE;
	thaw_pid($_) for reverse @pids;
	my ($w, $ew, $sw) = outcome($W, 30);
	is($sw, '55000', "semaphore round $round: W's semaphore_acquire fails with 55000")
	  or diag "W got '$w' / $ew";
	my ($avail) = ask($A, "SELECT atomix.semaphore_available('$S')");
	is($avail, '0', "semaphore round $round: one permit, held by B: never over-granted");
	ask($B, "SELECT atomix.semaphore_release('$S')");
	ask($W, 'SELECT 1');
}

# ---- elections ----
for my $round (1 .. 4)
{
	my $E = "stale-election-$round";
	my ($term) = ask($A, "SELECT term FROM atomix.election_enter('$E', 'a')");
	like($term, qr/^\d+$/, "election round $round: A leads");
	# W's candidacy is sent while node 2's worker is frozen; A withdraws, so
	# W would lead if it entered; node 2's sessions expire meanwhile
	my ($wpid) = node2_pids(1);
	freeze_pid($wpid);
	$W->send("SELECT leader FROM atomix.election_enter('$E', 'w')");
	ask($A, "SELECT atomix.election_withdraw('$E', 'a')");
	usleep(1_000_000 * $FREEZE);
	thaw_pid($wpid);
	my ($w, $ew, $sw) = outcome($W, 30);
	isnt($w, 'w', "election round $round: W is never told it leads after its session expired");
	is($sw, '55000', "election round $round: W's election_enter fails with 55000") or diag "W got '$w' / $ew";
	my ($leader) = ask($A, "SELECT coalesce(leader, '') FROM atomix.election_get('$E')");
	isnt($leader, 'w', "election round $round: the cluster does not have W as leader either");
	ask($W, 'SELECT 1');
}

# ---- a release in flight while its session expires ----
# W holds the lock (the permit); its release is sent while node 2's worker is
# frozen, node 2's sessions expire meanwhile, and the worker applies the
# session's close before the release: the release must say 55000 (W lost
# what it held and must learn it), not "false" as if W never held it.
for my $kind ('lock', 'semaphore')
{
	my ($acquire, $release) = $kind eq 'lock'
	  ? ("SELECT atomix.lock_acquire('$L')", "SELECT atomix.lock_release('$L')")
	  : ("SELECT atomix.semaphore_acquire('$S')", "SELECT atomix.semaphore_release('$S')");
	my ($got, $eg) = ask($W, $acquire);
	ok($got =~ /^(\d+|t)$/, "$kind in flight: W holds it") or diag $eg;
	my ($wpid) = node2_pids(1);
	freeze_pid($wpid);
	$W->send($release);
	usleep(1_000_000 * $FREEZE);
	thaw_pid($wpid);
	my ($out, $err, $state) = outcome($W, 30);
	is($state, '55000', "$kind in flight: W's release after its session expired fails with 55000")
	  or diag "W got '$out' / $err";
	ask($W, 'SELECT 1');
}

my @refusals = grep { /grant to session \d+ in partition \d+ was not delivered/ } split /\n/, log_since($n[1], $pos2);
note scalar(@refusals) . ' grants refused at delivery on node 2 (the rest were refused by the state machine or '
  . 'the backend)';
$_->quit for $A, $W, $B;

done_testing();
