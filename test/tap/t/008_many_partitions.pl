# 008_many_partitions.pl — a node with atomix.partitions = 256 (the maximum)
# serves every partition under the default open-files limit of 1024.
#
# Every partition's Raft log holds several file descriptors open for good;
# with 256 partitions a worker at the default soft limit ran out, its log
# writes failed with "too many open files" and those partitions halted for
# good.  The worker now raises its soft limit (bgworker/open_files.cpp).
# Checked: every partition serves and takes writes, nothing in the log says
# "too many open files", and the worker says it raised the limit when the
# limit it started with was too low.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";

use AtomixTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# (CREATE EXTENSION makes 256 x 4 tables and their indexes in one transaction:
# more locks than max_connections = 30 leaves room for)
my $node = atomix_node('many',
	conf => [ 'atomix.partitions = 256', 'log_statement = none', 'max_locks_per_transaction = 256' ]);
my $pos = log_position($node);
my $pid = worker_pid($node);

is($node->safe_psql('postgres',
		"SELECT count(atomix.map_put('many', 'k' || g, 'v' || g)) FROM generate_series(1, 3000) g"),
	'3000', '3000 puts over 256 partitions succeeded');
is($node->safe_psql('postgres', "SELECT count(DISTINCT partition_id) FROM atomix.map_data WHERE map = 'many'"),
	'256', 'every partition took writes');
is($node->safe_psql('postgres', "SELECT atomix.map_size('many'), atomix.map_get('many', 'k2999')"),
	'3000|v2999', 'a read over all partitions sees every entry');
ok(wait_until(30, sub {
	$node->safe_psql('postgres',
		"SELECT count(*) FILTER (WHERE status = 'serving' AND leader_node IS NOT NULL) FROM atomix.partitions")
	  eq '256' }), 'all 256 partitions serve');
is(worker_pid($node), $pid, 'the raft worker never restarted');
my $log = log_since($node, 0);
unlike($log, qr/too many open files/i, 'no "too many open files" in the server log');
my $soft = `sh -c 'ulimit -Sn'`;
chomp $soft;
SKIP:
{
	skip "the open files limit ($soft) is high enough already", 1
	  unless $soft =~ /^\d+$/ && $soft < 256 + 8 * 256;
	like($log, qr/raised the raft worker's open files limit from \d+ to \d+ for 256 partitions/,
		'the worker raised its open files limit');
}

$node->stop;
done_testing();
