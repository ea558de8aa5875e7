# 003_worker_death.pl — backends waiting on the raft worker never hang:
#  (a) worker stopped (SIGTERM) while a request waits: the caller gets an
#      ERROR at once (57P03 not proposed / 40003 in doubt), the worker comes
#      back by itself and the data is intact;
#  (b) statement_timeout and pg_cancel_backend end a wait on a frozen worker,
#      and the same session works normally afterwards;
#  (c) SIGKILL of the worker: crash recovery, then everything acknowledged
#      before is still there.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";

use AtomixTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = atomix_node('death');

# Make sure a frozen worker never outlives a failed test.
my @frozen;
END { kill 'CONT', $_ for @frozen; }

sub freeze { my ($pid) = @_; push @frozen, $pid; kill('STOP', $pid) or die "kill STOP $pid: $!"; }
sub thaw { my ($pid) = @_; kill('CONT', $pid); @frozen = grep { $_ != $pid } @frozen; }

$node->safe_psql('postgres', q{
	SELECT atomix.map_put('m', 'before', 'b1');
	SELECT atomix.counter_set('ctr', 41);
	SELECT atomix.counter_incr('ctr');
});

# ---- (a) SIGTERM while a request waits ----
my $pid = worker_pid($node);
ok(defined $pid, 'worker is running');

my $s = AtomixTest::Session->new($node);
freeze($pid);
$s->send("SELECT atomix.map_put('m', 'during-term', 'v')");
ok(wait_for_waiting_backend($node, $s->pid), '(a) the backend waits on the frozen worker');

kill 'TERM', $pid;
my $t0 = time;
thaw($pid);
my ($out, $err) = $s->result(30);
my $elapsed = time - $t0;
my $state = sqlstate_of($err);
ok(defined $state && ($state eq '57P03' || $state eq '40003'),
	'(a) the waiting call fails with 57P03 or 40003')
  or diag "stdout: $out\nstderr: $err";
like($err, qr/worker stopped/, '(a) the message says the worker stopped');
cmp_ok($elapsed, '<', 5, '(a) the error comes promptly') or diag "took ${elapsed}s";

my $t1 = time;
my $new_pid = wait_for_worker($node, $pid, 30);
ok(defined $new_pid, '(a) a new worker started by itself');
cmp_ok(time - $t1, '<', 6, '(a) within ~5 seconds') or diag 'took ' . (time - $t1) . 's';
no_crash_since($node, 0, '(a) worker stopped by SIGTERM');
wait_until_serving($node, 30);

is($node->safe_psql('postgres', "SELECT atomix.map_get('m', 'before')"), 'b1',
	'(a) data written before is intact');
is($node->safe_psql('postgres', "SELECT atomix.counter_get('ctr')"), '42',
	'(a) counter written before is intact');
if (defined $state && $state eq '57P03')
{
	is($node->safe_psql('postgres', "SELECT atomix.map_get('m', 'during-term') IS NULL"), 't',
		'(a) a request reported as not proposed was not applied');
}
if ($s->ended)
{
	fail('(a) the session survived the worker stopping');
	$s = AtomixTest::Session->new($node);
}
($out, $err) = $s->query("SELECT atomix.map_put('m', 'after-term', 'v2') > 0");
is($out, 't', '(a) the same session works with the new worker') or diag $err;
is($node->safe_psql('postgres', "SELECT atomix.map_get('m', 'after-term')"), 'v2',
	'(a) a new write is readable');
$s->quit;

# ---- (b) statement_timeout while the worker is frozen ----
$pid = worker_pid($node);
$s = AtomixTest::Session->new($node);
$s->query_safe("SET statement_timeout = '200ms'");
freeze($pid);
$t0 = time;
($out, $err) = $s->query("SELECT atomix.map_put('m', 'timed-out', 'x')", 20);
$elapsed = time - $t0;
is(sqlstate_of($err), '57014', '(b) statement_timeout ends the wait with 57014') or diag $err;
like($err, qr/statement timeout/, '(b) message is the statement timeout');
cmp_ok($elapsed, '>=', 0.15, '(b) not before the timeout');
cmp_ok($elapsed, '<', 3, '(b) shortly after the timeout') or diag "took ${elapsed}s";

# Again while the worker is still frozen: the slot was given back.
($out, $err) = $s->query("SELECT atomix.counter_incr('timed-out-ctr')", 20);
is(sqlstate_of($err), '57014', '(b) a second call times out the same way') or diag $err;

thaw($pid);
$s->query_safe('RESET statement_timeout');
($out, $err) = $s->query("SELECT atomix.map_put('m', 'after-timeout', 'y') > 0", 30);
is($out, 't', '(b) after SIGCONT the same session writes again') or diag $err;
is($s->query("SELECT atomix.map_get('m', 'after-timeout')", 30), 'y',
	'(b) and reads its write');
is($s->query("SELECT atomix.map_get('m', 'timed-out') IS NULL", 30), 't',
	'(b) the timed-out request (abandoned before being taken) was never applied');
is($s->query("SELECT atomix.counter_get('timed-out-ctr')", 30), '0',
	'(b) nor was the second one');
is(worker_pid($node), $pid, '(b) the worker survived being frozen');

# ---- (b') pg_cancel_backend of a waiting backend ----
freeze($pid);
$s->send("SELECT atomix.map_put('m', 'cancelled', 'z')");
ok(wait_for_waiting_backend($node, $s->pid), "(b') the backend waits on the frozen worker");
$t0 = time;
is($node->safe_psql('postgres', 'SELECT pg_cancel_backend(' . $s->pid . ')'), 't',
	"(b') cancel sent");
($out, $err) = $s->result(20);
$elapsed = time - $t0;
is(sqlstate_of($err), '57014', "(b') cancel ends the wait with 57014") or diag $err;
like($err, qr/canceling statement due to user request/, "(b') message is the cancel");
cmp_ok($elapsed, '<', 3, "(b') promptly") or diag "took ${elapsed}s";
thaw($pid);
($out, $err) = $s->query("SELECT atomix.map_put('m', 'after-cancel', 'w') > 0", 30);
is($out, 't', "(b') after SIGCONT the same session writes again") or diag $err;
is($s->query("SELECT atomix.map_get('m', 'cancelled') IS NULL", 30), 't',
	"(b') the cancelled request was never applied");
$s->quit;

# ---- (c) SIGKILL: the postmaster's crash recovery ----
$node->safe_psql('postgres', join("\n",
	map { "SELECT atomix.map_put('k9', 'key$_', 'val$_'); SELECT atomix.counter_incr('k9ctr');" }
	  1 .. 100));
my $before = state_dump($node);
like($before, qr/counter\|k9ctr\|100/, '(c) writes before the kill are visible');

$pid = worker_pid($node);
my $logpos = -s $node->logfile;
kill('KILL', $pid) or die "kill KILL $pid: $!";
$new_pid = wait_for_worker($node, $pid, 60);
ok(defined $new_pid, '(c) a new worker runs after crash recovery');
wait_until_serving($node);
my $log = substr(slurp_file($node->logfile), $logpos);
like($log, qr/terminated by signal 9/, '(c) the postmaster saw the worker killed');
like($log, qr/all server processes terminated; reinitializing/, '(c) and did crash recovery');

my $after = state_dump($node);
is($after, $before, '(c) state after crash recovery equals state before');
is($node->safe_psql('postgres', "SELECT atomix.counter_incr('k9ctr')"), '101',
	'(c) counters continue');
is($node->safe_psql('postgres', "SELECT atomix.map_get('k9', 'key77')"), 'val77',
	'(c) maps read');

stop_cleanly($node);
done_testing();
