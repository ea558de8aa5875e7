# 002_not_preloaded.pl — CREATE EXTENSION refuses clearly when atomix cannot
# work: not preloaded (55000, with a hint), or the wrong database (0A000,
# naming atomix.database).  The server stays up in both cases.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";

use AtomixTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# ---- a server without shared_preload_libraries ----
my $plain = atomix_node('plain', preload => 0);

my ($ret, $out, $err, $state) = sql_outcome($plain, 'CREATE EXTENSION atomix');
isnt($ret, 0, 'not preloaded: CREATE EXTENSION fails');
is($state, '55000', 'not preloaded: SQLSTATE 55000 (object not in prerequisite state)')
  or diag $err;
like($err, qr/shared_preload_libraries/, 'not preloaded: message names shared_preload_libraries');
like($err, qr/HINT:.*shared_preload_libraries/, 'not preloaded: the hint says to preload it');

is($plain->safe_psql('postgres', 'SELECT 1'), '1', 'not preloaded: server still accepts queries');
is($plain->safe_psql('postgres', "SELECT count(*) FROM pg_extension WHERE extname = 'atomix'"),
	'0', 'not preloaded: nothing of the extension was left behind');
is($plain->safe_psql('postgres', "SELECT count(*) FROM pg_namespace WHERE nspname = 'atomix'"),
	'0', 'not preloaded: no atomix schema left behind');
is( $plain->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'atomix raft worker'"),
	'0', 'not preloaded: no raft worker');

# A second attempt fails the same way (the module is loaded in this backend now).
($ret, $out, $err, $state) = sql_outcome($plain, "LOAD 'atomix'; CREATE EXTENSION atomix");
is($state, '55000', 'not preloaded: LOAD then CREATE EXTENSION still fails with 55000')
  or diag $err;

my $log = slurp_file($plain->logfile);
unlike($log, qr/terminated by signal|server process .* was terminated|PANIC/,
	'not preloaded: no backend crashed');
stop_cleanly($plain);

# ---- a preloaded server, wrong database ----
my $node = atomix_node('preloaded', create_extension => 0);

ok(defined wait_for_worker($node, undef, 30),
	'preloaded: the raft worker runs before the extension exists');

($ret, $out, $err, $state) =
  sql_outcome($node, "SELECT atomix.map_get('m', 'k')");
isnt($ret, 0, 'preloaded, no extension: atomix functions do not exist yet');
ok(defined $state && ($state eq '3F000' || $state eq '42883'),
	'preloaded, no extension: undefined schema/function error') or diag $err;

$node->safe_psql('postgres', 'CREATE DATABASE other');
($ret, $out, $err, $state) = sql_outcome($node, 'CREATE EXTENSION atomix', 'other');
isnt($ret, 0, 'wrong database: CREATE EXTENSION fails');
is($state, '0A000', 'wrong database: SQLSTATE 0A000 (feature not supported)') or diag $err;
like($err, qr/atomix\.database/, 'wrong database: the error names atomix.database');
like($err, qr/"postgres"/, 'wrong database: the error names the database atomix serves');
is($node->safe_psql('other', "SELECT count(*) FROM pg_extension WHERE extname = 'atomix'"),
	'0', 'wrong database: nothing left behind');
is($node->safe_psql('other', 'SELECT 1'), '1', 'wrong database: server still up');

# The right database still works afterwards.
$node->safe_psql('postgres', 'CREATE EXTENSION atomix');
wait_until_serving($node);
is($node->safe_psql('postgres', "SELECT atomix.map_put('m', 'k', 'v') > 0"),
	't', 'right database: map_put works');
is($node->safe_psql('postgres', "SELECT atomix.map_get('m', 'k')"),
	'v', 'right database: map_get reads it back');

stop_cleanly($node);
done_testing();
