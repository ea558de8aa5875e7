# 006_coordination.pl — coordination primitives on one server, with several
# backends at once (docs/coordination.md):
#  - semaphores serve waiters first come, first served: a large request at
#    the head of the line is not overtaken by a small one that would fit;
#  - next_id from 4 backends at once (small id blocks): all unique, each
#    backend's ids strictly increase; after a restart still unique and
#    larger;
#  - the raft worker restarting (SIGTERM) under an idle lock holder and a
#    waiting backend: the holder keeps its lock (or, if the contract's
#    "session expired" applies, gets 55000 once and then works); the
#    waiter's call ends with an error and its next call works.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";

use AtomixTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = atomix_node('coord', conf => [ 'atomix.id_block_size = 20', 'log_statement = none' ]);

sub answered
{
	my ($s, $wait) = @_;
	my $t0 = time;
	while (1)
	{
		my ($o, $e) = $s->poll;
		return [ $o, $e ] if defined $o;
		return undef if time - $t0 > $wait;
		usleep(10_000);
	}
}

# ---- semaphore: first come, first served ----
my ($sa, $sb, $sc) = map { AtomixTest::Session->new($node) } 1 .. 3;
is($sa->query_safe("SELECT atomix.semaphore_create('sem', 3)"), 't', 'semaphore with 3 permits');
is($sa->query_safe("SELECT atomix.semaphore_acquire('sem', 2)"), 't', 'A takes 2');
$sb->send("SELECT atomix.semaphore_acquire('sem', 3)");
ok(wait_for_waiting_backend($node, $sb->pid), 'B waits for 3');
$sc->send("SELECT atomix.semaphore_acquire('sem', 1)");
ok(wait_for_waiting_backend($node, $sc->pid), 'C waits for 1, although 1 is available: B is first');
is($node->safe_psql('postgres', "SELECT atomix.semaphore_available('sem')"), '1', '1 permit available');
ok(!answered($sc, 0.5), 'C is not served before B');
is($sa->query_safe("SELECT atomix.semaphore_release('sem', 2)"), 't', 'A releases 2');
my $rb = answered($sb, 10);
is($rb && $rb->[0], 't', 'B gets its 3');
ok(!answered($sc, 0.3), 'C still waits');
is($sb->query_safe("SELECT atomix.semaphore_release('sem', 3)"), 't', 'B releases 3');
my $rc = answered($sc, 10);
is($rc && $rc->[0], 't', 'then C gets its 1');
is($node->safe_psql('postgres', "SELECT atomix.semaphore_available('sem')"), '2', '2 available');
$sc->query_safe("SELECT atomix.semaphore_release('sem')");
$_->quit for $sa, $sb, $sc;

# ---- next_id from 4 backends ----
my @s = map { AtomixTest::Session->new($node) } 1 .. 4;
$_->send(join(";\n", ("SELECT atomix.next_id('ids')") x 300)) for @s;
my (@all, %seen);
for my $s (@s)
{
	my ($out, $err) = $s->result(120);
	is($err, '', 'a backend\'s next_id calls succeed');
	my @v = split /\n/, $out;
	ok(!grep({ $v[$_] <= $v[ $_ - 1 ] } 1 .. $#v), 'its ids strictly increase');
	push @all, @v;
}
my @dup = grep { $seen{$_}++ } @all;
is(scalar @all, 1200, '1200 ids');
is(scalar @dup, 0, 'all unique');
my ($max) = sort { $b <=> $a } @all;
$_->quit for @s;
$node->restart;
wait_until_serving($node);
my $next = $node->safe_psql('postgres', "SELECT atomix.next_id('ids')");
cmp_ok($next, '>', $max, "after a restart the next id is larger ($next > $max)");

# ---- the raft worker restarts under a holder and a waiter ----
my $h = AtomixTest::Session->new($node);
my $w = AtomixTest::Session->new($node);
my $tok = $h->query_safe("SELECT atomix.lock_acquire('wr')");
my $sid = $h->query_safe('SELECT atomix.session_id()');
$w->send("SELECT atomix.lock_acquire('wr')");
ok(wait_for_waiting_backend($node, $w->pid), 'a backend waits for the lock');
my $pid = worker_pid($node);
my $pos = log_position($node);
kill 'TERM', $pid;
my $r = answered($w, 30);
ok($r, 'the waiting call ends when the worker stops');
my $state = $r ? sqlstate_of($r->[1]) // 'none' : 'none';
note "the waiter got: " . ($r ? "$r->[0] $r->[1]" : 'nothing');
ok(grep({ $state eq $_ } qw(55000 57P03 40003)), "with 55000, 57P03 or 40003 ($state)");
ok(defined wait_for_worker($node, $pid, 30), 'a new worker starts');
wait_until_serving($node);
no_crash_since($node, $pos, 'worker stopped by SIGTERM');
my ($out, $err) = $h->query("SELECT atomix.lock_release('wr')");
note "the holder's release after the worker restart: $out $err";
if (sqlstate_of($err))
{
	is(sqlstate_of($err), '55000', 'the holder is told its session expired (55000)');
	($out, $err) = $h->query("SELECT atomix.lock_try_acquire('wr') > 0");
	is($out, 't', 'then works with a new session') or diag $err;
}
else
{
	is($out, 't', 'the holder kept its lock across the worker restart and releases it');
}
# its wait ended in doubt, so its session was closed: the next call says so
# (docs/coordination.md), the one after that works with a new session
($out, $err) = $w->query("SELECT atomix.lock_try_acquire('wr-2') > 0");
if (($err // '') ne '')
{
	is(sqlstate_of($err), '55000', 'the waiter is told its session expired (55000)');
	($out, $err) = $w->query("SELECT atomix.lock_try_acquire('wr-2') > 0");
}
is($out, 't', 'the waiter\'s next call works') or diag $err;
$_->quit for $h, $w;

# ---- the worker restarts while a backend that holds a lock waits for another ----
# docs/coordination.md: a backend whose session expired ("or the raft worker
# restarted while it waited") gets "atomix session expired" (55000) on its
# next atomix call; what it held was released.
$h = AtomixTest::Session->new($node);
$w = AtomixTest::Session->new($node);
$h->query_safe("SELECT atomix.lock_acquire('busy')");
my $held_tok = $w->query_safe("SELECT atomix.lock_acquire('held')");
$w->send("SELECT atomix.lock_acquire('busy')");
ok(wait_for_waiting_backend($node, $w->pid), 'a backend holding a lock waits for another');
$pid = worker_pid($node);
$pos = log_position($node);
kill 'TERM', $pid;
$r = answered($w, 30);
note "the waiting call got: " . ($r ? "$r->[0] $r->[1]" : 'nothing');
ok($r && sqlstate_of($r->[1]), 'its waiting call ends with an error');
ok(defined wait_for_worker($node, $pid, 30), 'a new worker starts');
wait_until_serving($node);
no_crash_since($node, $pos, 'worker stopped by SIGTERM');
my $holder_of_held = $node->safe_psql('postgres', "SELECT token FROM atomix.lock_holder('held')");
($out, $err) = $w->query("SELECT atomix.lock_release('held')");
note "then: lock_holder('held') = '$holder_of_held'; lock_release('held') = '$out' $err";
if ($holder_of_held eq $held_tok)
{
	is($out, 't', 'the session survived the worker restart: it still holds its lock and releases it')
	  or diag $err;
}
else
{
	is(sqlstate_of($err), '55000',
		'its lock was released, so its next call is told "atomix session expired" (55000)')
	  or diag "lock_release('held') returned '$out' $err";
}
($out, $err) = $w->query("SELECT atomix.lock_try_acquire('held') > 0");
is($out, 't', 'the call after that works') or diag $err;
$h->query_safe("SELECT atomix.lock_release('busy')");
$_->quit for $h, $w;

stop_cleanly($node);
done_testing();
