# 109_session_close.pl — sessions that close (rather than expire) release
# what they hold at once, across nodes; waiters leave the line when they
# stop waiting.  3 nodes, atomix.session_timeout = 20s, so that "at once"
# is far from the expiry (docs/coordination.md, "Sessions", "Locks"):
#  - session_id() is NULL until a backend needs a session, then carries the
#    node id; a map write needs none; ROLLBACK does not undo an acquire;
#  - pg_terminate_backend of a holder: the lock goes to a waiter on another
#    node within 2 s, with a larger token; the same for a semaphore permit
#    and for an election's leading candidate (next candidate leads, term + 1);
#  - a holder's backend that exits normally (psql \q) releases at once;
#  - waiters on three nodes are served first come, first served;
#  - waiters stopped by statement_timeout, pg_cancel_backend and
#    pg_terminate_backend leave the line: the release goes to the one still
#    waiting; lock_acquire with a timeout returns NULL after it, and leaves;
#  - a node that crashes and restarts at once announces its new incarnation:
#    the sessions of its previous life close then, long before
#    session_timeout, and their locks pass to the waiters.
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
my $TIMEOUT = 20;    # atomix.session_timeout, seconds
my $AT_ONCE = 2;     # "at once", seconds
my @n = atomix_cluster($N, name => 'sclose',
	conf => [ "atomix.session_timeout = '${TIMEOUT}s'", 'log_statement = none' ]);

sub sess { return AtomixTest::Session->new($n[ $_[0] - 1 ]); }

sub holder
{
	my ($node, $name) = @_;
	return $node->safe_psql('postgres', "SELECT token, session, node FROM atomix.lock_holder('$name')");
}

# Polls the sessions until each answered or LIMIT s since T0 passed; sets
# {at} {out} {err} in each record ({ s => session }).
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

# Sends lock_acquire(NAME) in a new session on node NODE_ID and waits until
# that backend waits; returns the record for wait_answers.
sub waiter
{
	my ($node_id, $sql) = @_;
	my $w = { s => sess($node_id), node => $node_id };
	$w->{s}->send($sql);
	ok(wait_for_waiting_backend($n[ $node_id - 1 ], $w->{s}->pid), "a backend on node $node_id waits: $sql");
	return $w;
}

# ---- session ids ----
my $ha = sess(1);
is($ha->query_safe('SELECT atomix.session_id() IS NULL'), 't', 'session_id() is NULL in a new backend');
$ha->query_safe("SELECT atomix.map_put('m', 'k', 'v')");
is($ha->query_safe('SELECT atomix.session_id() IS NULL'), 't', 'a map write needs no session');
my $t1 = $ha->query_safe("BEGIN; SELECT atomix.lock_acquire('rb'); ROLLBACK");
like($t1, qr/^\d+$/, 'lock_acquire inside a transaction');
my $sid = $ha->query_safe('SELECT atomix.session_id()');
is($sid >> 48, 1, 'then the backend has a session with node id 1 in its top 16 bits');
is(holder($n[2], 'rb'), "$t1|$sid|1", 'ROLLBACK does not release the lock (seen from node 3)');

# ---- pg_terminate_backend of a holder ----
my $w = waiter(2, "SELECT atomix.lock_acquire('rb')");
my $t0 = time;
is($n[0]->safe_psql('postgres', 'SELECT pg_terminate_backend(' . $ha->pid . ')'), 't', 'terminate the holder on node 1');
wait_answers($t0, $TIMEOUT + 5, $w);
note sprintf('terminated holder: lock granted on node 2 after %.3fs', $w->{at} // 99);
like($w->{out} // '', qr/^\d+$/, 'the waiter on node 2 gets the lock') or diag $w->{err};
cmp_ok($w->{at} // 99, '<', $AT_ONCE, "within $AT_ONCE s (session_timeout is $TIMEOUT s)");
cmp_ok($w->{out} || 0, '>', $t1, 'with a larger token');
$ha->quit;

# ---- normal exit of a holder ----
my $q = sess(3);
my $tq = $q->query_safe("SELECT atomix.lock_acquire('qq')");
my $wq = waiter(1, "SELECT atomix.lock_acquire('qq')");
$t0 = time;
$q->quit;
wait_answers($t0, $TIMEOUT + 5, $wq);
note sprintf('holder exited (\\q): lock granted on node 1 after %.3fs', $wq->{at} // 99);
like($wq->{out} // '', qr/^\d+$/, 'a holder that exits normally: the waiter on node 1 gets the lock');
cmp_ok($wq->{at} // 99, '<', $AT_ONCE, "within $AT_ONCE s");

# ---- first come, first served across nodes ----
my $h = sess(1);
my $tf = $h->query_safe("SELECT atomix.lock_acquire('fifo')");
my @line = map { waiter($_, "SELECT atomix.lock_acquire('fifo')") } 2, 3, 1;
my $prev = $tf;
my $holder = $h;
for my $k (0 .. $#line)
{
	$t0 = time;
	is($holder->query_safe("SELECT atomix.lock_release('fifo')"), 't', 'release');
	wait_answers($t0, 10, $line[$k]);
	wait_answers(time, 0.3, @line[ $k + 1 .. $#line ]);
	like($line[$k]{out} // '', qr/^\d+$/, "waiter #$k (node $line[$k]{node}) gets the lock next");
	is(scalar(grep { exists $_->{at} } @line[ $k + 1 .. $#line ]), 0, 'the ones behind it still wait');
	cmp_ok($line[$k]{out} || 0, '>', $prev, 'with a larger token');
	$prev = $line[$k]{out} || 0;
	$holder = $line[$k]{s};
}
is($holder->query_safe("SELECT atomix.lock_release('fifo')"), 't', 'the last one releases');
is(holder($n[1], 'fifo'), '||', 'nobody holds the lock');

# ---- waiters that stop waiting leave the line ----
my $hs = sess(1);
$hs->query_safe("SELECT atomix.lock_acquire('quit')");
my $by_timeout = { s => sess(2), node => 2 };
$by_timeout->{s}->query_safe("SET statement_timeout = '1s'");
$by_timeout->{s}->send("SELECT atomix.lock_acquire('quit')");
ok(wait_for_waiting_backend($n[1], $by_timeout->{s}->pid), 'a waiter on node 2 with statement_timeout 1s');
my $by_cancel = waiter(3, "SELECT atomix.lock_acquire('quit')");
my $by_term = waiter(1, "SELECT atomix.lock_acquire('quit')");
my $stays = waiter(2, "SELECT atomix.lock_acquire('quit')");
my $by_atimeout = { s => sess(3), node => 3 };
$t0 = time;
# (the time the call took is measured by the server: clock_timestamp())
$by_atimeout->{s}->send("SELECT clock_timestamp() AS atimeout_t0 \\gset\n"
	  . "SELECT atomix.lock_acquire('quit', '1.5 seconds') IS NULL, "
	  . "extract(epoch FROM clock_timestamp() - :'atimeout_t0'::timestamptz)");
is($n[2]->safe_psql('postgres', 'SELECT pg_cancel_backend(' . $by_cancel->{s}->pid . ')'), 't', 'cancel the waiter on node 3');
is($n[0]->safe_psql('postgres', 'SELECT pg_terminate_backend(' . $by_term->{s}->pid . ')'), 't',
	'terminate the waiter on node 1');
wait_answers(time, 10, $by_timeout, $by_cancel, $by_term, $by_atimeout);
is(sqlstate_of($by_timeout->{err}), '57014', 'statement_timeout ends a wait (57014)') or diag $by_timeout->{err};
is(sqlstate_of($by_cancel->{err}), '57014', 'pg_cancel_backend ends a wait (57014)') or diag $by_cancel->{err};
ok( wait_until(10, sub {
	$n[0]->safe_psql('postgres', 'SELECT count(*) FROM pg_stat_activity WHERE pid = ' . $by_term->{s}->pid) eq '0' }),
	'the terminated waiter\'s backend is gone');
my ($timed_out, $took) = split /\|/, $by_atimeout->{out} // '';
is($timed_out, 't', "lock_acquire(name, '1.5 seconds') returns NULL when it times out")
  or diag $by_atimeout->{err};
note sprintf('lock_acquire on node 3 with a 1.5 s timeout (waiting in line behind others) returned '
	  . 'after %.3fs (measured by the server)', $took // 99);
cmp_ok($took // 0, '>=', 1.5, 'not before the timeout');
cmp_ok($took // 99, '<', 3, 'and soon after it');
wait_answers(time, 0.3, $stays);
ok(!exists $stays->{at}, 'the last waiter still waits');
$t0 = time;
is($hs->query_safe("SELECT atomix.lock_release('quit')"), 't', 'the holder releases');
wait_answers($t0, 10, $stays);
like($stays->{out} // '', qr/^\d+$/, 'the lock goes to the one still waiting (node 2), skipping those that left')
  or diag $stays->{err};
my $stays_sid = $stays->{s}->query_safe('SELECT atomix.session_id()');
like(holder($n[0], 'quit'), qr/^\d+\|$stays_sid\|2$/, 'lock_holder shows it');
is($stays->{s}->query_safe("SELECT atomix.lock_release('quit')"), 't', 'it releases');
is(holder($n[2], 'quit'), '||', 'and nobody holds the lock: no ghost of a waiter that left got it');
is($by_timeout->{s}->query_safe("SELECT atomix.lock_release('quit')"), 'f',
	'lock_release from the timed-out waiter: false');

# ---- semaphore permits and election candidates of a terminated backend ----
my $sa = sess(2);
is($sa->query_safe("SELECT atomix.semaphore_create('one', 1)"), 't', 'semaphore with 1 permit');
is($sa->query_safe("SELECT atomix.semaphore_acquire('one')"), 't', 'taken on node 2');
is($sa->query_safe("SELECT * FROM atomix.election_enter('el', 'first')"), '1|first|{first}', 'node 2 leads an election');
my $sb = sess(3);
is($sb->query_safe("SELECT * FROM atomix.election_enter('el', 'second')"), '1|first|{first,second}',
	'node 3 is next in line');
my $ws = waiter(1, "SELECT atomix.semaphore_acquire('one')");
my $el = sess(1);
$t0 = time;
is($n[1]->safe_psql('postgres', 'SELECT pg_terminate_backend(' . $sa->pid . ')'), 't', 'terminate the node 2 backend');
my $el_at;
while (time - $t0 < $TIMEOUT + 5 && (!defined $el_at || !exists $ws->{at}))
{
	if (!defined $el_at)
	{
		my ($o) = $el->query("SELECT * FROM atomix.election_get('el')");
		$el_at = time - $t0 if $o eq '2|second|{second}';
	}
	wait_answers($t0, time - $t0 + 0.02, $ws);
}
note sprintf('terminated backend: permit to node 1 after %.3fs, node 3 leads after %.3fs',
	$ws->{at} // 99, $el_at // 99);
is($ws->{out}, 't', 'its permit goes to the waiter on node 1');
cmp_ok($ws->{at} // 99, '<', $AT_ONCE, "within $AT_ONCE s");
ok(defined $el_at, 'its candidate left: node 3\'s candidate leads in term 2');
cmp_ok($el_at // 99, '<', $AT_ONCE, "within $AT_ONCE s");

# ---- a node crashes and restarts at once: new incarnation ----
my $hr = sess(3);
my $tr = $hr->query_safe("SELECT atomix.lock_acquire('reborn')");
my $wr = waiter(2, "SELECT atomix.lock_acquire('reborn')");
$t0 = time;
$n[2]->stop('immediate');
my $pos3 = log_position($n[2]);
$n[2]->start;
my $up = time - $t0;
wait_answers($t0, $TIMEOUT + 5, $wr);
note sprintf('node 3 crashed and was accepting connections again %.2fs later; its lock passed to node 2 '
	  . 'after %.2fs (session_timeout %d s)', $up, $wr->{at} // 99, $TIMEOUT);
like($wr->{out} // '', qr/^\d+$/, 'the lock of the crashed node passes to the waiter on node 2');
cmp_ok($wr->{at} // 99, '<', $up + 5, 'within 5 s of the node\'s restart');
cmp_ok($wr->{at} // 99, '<', $TIMEOUT * 0.75, 'long before session_timeout');
cmp_ok($wr->{out} || 0, '>', $tr, 'with a larger token');
$hr->quit;
wait_until_serving($n[2]);
like(holder($n[2], 'reborn'), qr/^$wr->{out}\|\d+\|2$/, 'the restarted node sees the new holder');

$_->{s}->quit for $w, $wq, @line, $by_timeout, $by_cancel, $by_term, $stays, $by_atimeout, $ws, $wr;
$_->quit for $h, $hs, $sb, $el;
no_crash_since($n[0], 0, 'node 1');
no_crash_since($n[1], 0, 'node 2');
no_crash_since($n[2], $pos3, 'node 3 since its restart');
stop_cleanly($_) for @n;
done_testing();
