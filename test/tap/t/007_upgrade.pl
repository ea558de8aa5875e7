# 007_upgrade.pl — an atomix 0.1 installation upgrades in place to 0.2, 0.3,
# 0.4 and then 0.5 with ALTER EXTENSION atomix UPDATE, keeping its data: the
# state written under 0.1 reads back the same after each step,
# atomix.partitions gains its health columns (0.2), atomix.stats appears and
# counts (0.3) and shows hibernation (0.4), the request log gives way to
# partition_state.origins (0.5), and the upgraded schema matches a fresh 0.5
# install object for object.  0.2, 0.3 and 0.4 installations go to 0.5 in one
# step as well.  A 3-node cluster of this build on a 0.4 schema does not
# serve (it has nowhere to keep what at most once needs) and says so, until
# ALTER EXTENSION atomix UPDATE; then it serves, and remembers origins.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";

use AtomixTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = atomix_node('upgrade', create_extension => 0);
$node->safe_psql('postgres', "CREATE EXTENSION atomix VERSION '0.1'");
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'atomix'"),
	'0.1', 'installed as 0.1');
wait_until_serving($node);
$node->safe_psql('postgres',
	"SELECT atomix.map_put('m', 'k', 'v'), atomix.counter_incr('c', 7), atomix.set_add('s', 'e')");
my $before = state_dump($node);
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT status FROM atomix.partitions LIMIT 1');
isnt($ret, 0, '0.1 has no status column in atomix.partitions');

$node->safe_psql('postgres', "ALTER EXTENSION atomix UPDATE TO '0.2'");
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'atomix'"),
	'0.2', 'updated to 0.2');
is(state_dump($node), $before, 'the state written under 0.1 is unchanged');
is($node->safe_psql('postgres',
		"SELECT count(*) FILTER (WHERE status = 'serving') = count(*), sum(apply_failures) "
		  . 'FROM atomix.partitions'),
	"t|0", 'atomix.partitions shows the health columns after the update');
is($node->safe_psql('postgres', "SELECT atomix.map_get('m', 'k') || atomix.counter_get('c')"),
	'v7', 'atomix works after the update');
($ret, $out, $err) = $node->psql('postgres', 'SELECT count(*) FROM atomix.stats');
isnt($ret, 0, '0.2 has no atomix.stats');

$node->safe_psql('postgres', "ALTER EXTENSION atomix UPDATE TO '0.3'");
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'atomix'"),
	'0.3', 'updated to 0.3');
is(state_dump($node), $before, 'the state written under 0.1 is still unchanged');
$node->safe_psql('postgres', "SELECT atomix.map_put('m', 'k2', 'w')");
is($node->safe_psql('postgres',
		'SELECT count(*), sum(entries_applied) > 0, sum(commands_applied) > 0, sum(proposals) > 0, '
		  . 'sum(log_writes) > 0, sum(reads_served) > 0 FROM atomix.stats'),
	'16|t|t|t|t|t', 'atomix.stats shows every partition, with its work counted');
is($node->safe_psql('postgres', "SELECT atomix.map_get('m', 'k2') || atomix.map_get('m', 'k')"),
	'wv', 'atomix works after the update to 0.3');

($ret, $out, $err) = $node->psql('postgres', 'SELECT hibernating FROM atomix.stats');
isnt($ret, 0, '0.3 has no hibernating column in atomix.stats');

my $before_04 = state_dump($node);
$node->safe_psql('postgres', "ALTER EXTENSION atomix UPDATE TO '0.4'");
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'atomix'"),
	'0.4', 'updated to 0.4');
is(state_dump($node), $before_04, 'the state written under 0.1 and 0.3 is unchanged after 0.4');
is($node->safe_psql('postgres',
		'SELECT count(*), count(hibernating), count(hibernations), sum(raft_messages) >= 0, '
		  . 'sum(proposals) > 0 FROM atomix.stats'),
	'16|16|16|t|t', 'atomix.stats shows hibernation after the update to 0.4');
is($node->safe_psql('postgres', "SELECT atomix.map_get('m', 'k2') || atomix.map_get('m', 'k')"),
	'wv', 'atomix works after the update to 0.4');
is($node->safe_psql('postgres', "SELECT to_regclass('atomix.request_log') IS NOT NULL"),
	't', '0.4 still has the request log');

my $before_05 = state_dump($node);
$node->safe_psql('postgres', 'ALTER EXTENSION atomix UPDATE');
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'atomix'"),
	'0.5', 'updated to 0.5 (the default version)');
is(state_dump($node), $before_05, 'the state written under 0.1, 0.3 and 0.4 is unchanged after 0.5');
is($node->safe_psql('postgres',
		"SELECT to_regclass('atomix.request_log') IS NULL, count(*), count(*) FILTER (WHERE origins = '') "
		  . 'FROM atomix.partition_state'),
	't|16|16', 'the request log is gone; every partition has an (empty: one node) origins column');
$node->safe_psql('postgres', "SELECT atomix.map_put('m', 'k3', 'x'), atomix.counter_incr('c', 1)");
is($node->safe_psql('postgres',
		"SELECT atomix.map_get('m', 'k3') || atomix.map_get('m', 'k2') || atomix.counter_get('c')"),
	'xw8', 'atomix works after the update to 0.5');

# the upgraded schema equals a fresh install
my $describe = q{
	SELECT c.relname || ':' || string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
	  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
	 WHERE n.nspname = 'atomix' GROUP BY c.relname ORDER BY c.relname};
my $functions = q{
	SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
	 WHERE n.nspname = 'atomix' ORDER BY 1};
my ($upgraded_rel, $upgraded_fn) = map { $node->safe_psql('postgres', $_) } $describe, $functions;
$node->stop;
my $fresh = atomix_node('fresh');
is($fresh->safe_psql('postgres', $describe), $upgraded_rel, 'tables and columns match a fresh 0.5 install');
is($fresh->safe_psql('postgres', $functions), $upgraded_fn, 'functions match a fresh 0.5 install');
$fresh->stop;

# 0.2 -> 0.5, 0.3 -> 0.5 and 0.4 -> 0.5 in one step, with data
my $from2 = atomix_node('from02', create_extension => 0);
$from2->safe_psql('postgres', "CREATE EXTENSION atomix VERSION '0.2'");
wait_until_serving($from2);
$from2->safe_psql('postgres', "SELECT atomix.map_put('m', 'k', 'v'), atomix.counter_incr('c', 3)");
my $before2 = state_dump($from2);
$from2->safe_psql('postgres', 'ALTER EXTENSION atomix UPDATE');
is($from2->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'atomix'"),
	'0.5', '0.2 updated to 0.5');
is(state_dump($from2), $before2, 'the state written under 0.2 is unchanged');
is($from2->safe_psql('postgres', $describe), $upgraded_rel, 'and its schema matches a fresh 0.5 install');
$from2->stop;

my $from3 = atomix_node('from03', create_extension => 0);
$from3->safe_psql('postgres', "CREATE EXTENSION atomix VERSION '0.3'");
wait_until_serving($from3);
$from3->safe_psql('postgres', "SELECT atomix.map_put('m', 'k', 'v'), atomix.counter_incr('c', 3)");
my $before3 = state_dump($from3);
$from3->safe_psql('postgres', 'ALTER EXTENSION atomix UPDATE');
is($from3->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'atomix'"),
	'0.5', '0.3 updated to 0.5');
is(state_dump($from3), $before3, 'the state written under 0.3 is unchanged');
is($from3->safe_psql('postgres', $describe), $upgraded_rel, 'and its schema matches a fresh 0.5 install');
is($from3->safe_psql('postgres', $functions), $upgraded_fn, 'and its functions too');
$from3->stop;

my $from4 = atomix_node('from04', create_extension => 0);
$from4->safe_psql('postgres', "CREATE EXTENSION atomix VERSION '0.4'");
wait_until_serving($from4);
$from4->safe_psql('postgres', "SELECT atomix.map_put('m', 'k', 'v'), atomix.counter_incr('c', 3)");
my $before4 = state_dump($from4);
$from4->safe_psql('postgres', 'ALTER EXTENSION atomix UPDATE');
is($from4->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'atomix'"),
	'0.5', '0.4 updated to 0.5');
is(state_dump($from4), $before4, 'the state written under 0.4 is unchanged');
is($from4->safe_psql('postgres', $describe), $upgraded_rel, 'and its schema matches a fresh 0.5 install');
is($from4->safe_psql('postgres', $functions), $upgraded_fn, 'and its functions too');
$from4->stop;

# The update refuses on a server whose running atomix is not the installed
# one (here: not preloaded, so the backend loads the library afresh, as it
# does after the file was replaced without a restart): the old raft worker
# would go on writing the request log the update drops.
my $stale = atomix_node('stale', create_extension => 0);
$stale->safe_psql('postgres', "CREATE EXTENSION atomix VERSION '0.4'");
$stale->append_conf('postgresql.conf', "shared_preload_libraries = ''\n");
$stale->restart;
($ret, $out, $err) = $stale->psql('postgres', 'ALTER EXTENSION atomix UPDATE');
isnt($ret, 0, 'the update refuses on a server not running the installed build');
like($err, qr/still runs an older atomix build.*\n.*HINT:\s+Restart the server/s, 'and says to restart it first');
is($stale->safe_psql('postgres',
		"SELECT extversion, to_regclass('atomix.request_log') IS NOT NULL FROM pg_extension WHERE extname = 'atomix'"),
	'0.4|t', 'nothing of it was applied');
$stale->append_conf('postgresql.conf', "shared_preload_libraries = 'atomix'\n");
$stale->restart;
$stale->safe_psql('postgres', 'ALTER EXTENSION atomix UPDATE');
is($stale->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'atomix'"),
	'0.5', 'after the restart the update goes through');
$stale->stop;

# A cluster on a 0.4 schema: this build will not serve it (a partition could
# not keep its request origins across restarts) and says what to do.
my @nodes = atomix_cluster(3, name => 'old', start => 0);
$_->start for @nodes;
$_->safe_psql('postgres', "CREATE EXTENSION atomix VERSION '0.4'") for @nodes;
wait_for_log_line($nodes[0], qr/tables predate this build of atomix; not serving/, 0, 60);
my ($rc, $stdout, $stderr) = $nodes[0]->psql('postgres', "SELECT atomix.map_put('m', 'k', 'v')");
isnt($rc, 0, 'a write on the 0.4 schema fails');
like($stderr, qr/ALTER EXTENSION atomix UPDATE/, 'and says to run ALTER EXTENSION atomix UPDATE');
$_->safe_psql('postgres', 'ALTER EXTENSION atomix UPDATE') for @nodes;
wait_for_leaders(\@nodes, 90);
for my $i (0 .. 2)
{
	$nodes[$i]->safe_psql('postgres', "SELECT atomix.counter_incr('shared', 1) FROM generate_series(1, 20)");
}
wait_for_same_state(\@nodes, 30);
is($nodes[2]->safe_psql('postgres', "SELECT atomix.counter_get('shared')"),
	'60', 'after the update the cluster serves every node');
is($nodes[1]->safe_psql('postgres',
		"SELECT count(*) > 0 FROM atomix.partition_state WHERE origins <> ''"),
	't', 'and its partitions remember request origins');
$_->stop for @nodes;

done_testing();
