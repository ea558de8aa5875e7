# 108_watch_cluster.pl — watches and id generators on a 3-node cluster
# (docs/coordination.md, "Watches" and "Id generators"):
#  - watch('x') returns the same channel on every node; backends LISTENing
#    on nodes 2 and 3 are told of changes made on other nodes: map put and
#    remove, value set and delete, set add, ttl expiry, lock acquired and
#    released (version = the token); payloads are JSON with kind, name, key,
#    event and version (the version the write returned); puts of one key
#    arrive in log order; the notifying process is the node's raft worker;
#  - next_id from 6 sessions on 3 nodes at once (small id blocks, so blocks
#    are reserved concurrently): every id is unique, each session's ids
#    strictly increase; after a restart a node's ids are still unique and
#    larger than the ones it handed out before.
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
my $BLOCK = 50;
my @n = atomix_cluster($N, name => 'watch',
	conf => [ "atomix.id_block_size = $BLOCK", 'log_statement = none' ]);

# ======================================================================
# watches
# ======================================================================
my @chan = map { $_->safe_psql('postgres', "SELECT atomix.watch('x')") } @n;
like($chan[0], qr/^atomix_watch_[0-9a-f]{16}$/, "watch('x') returns atomix_watch_<16 hex>: $chan[0]");
is_deeply(\@chan, [ ($chan[0]) x $N ], 'the same channel on every node');
my $chan_l = $n[1]->safe_psql('postgres', "SELECT atomix.watch('wl')");
isnt($chan_l, $chan[0], 'another primitive has another channel');

my $l2 = AtomixTest::Session->new($n[1]);
my $l3 = AtomixTest::Session->new($n[2]);
for my $l ($l2, $l3)
{
	is($l->query_safe("SELECT atomix.watch('x') = '$chan[0]'"), 't', 'watch() in the listening session');
	$l->query_safe(qq{LISTEN "$chan[0]"});
}
$l2->query_safe("SELECT atomix.watch('wl')");
$l2->query_safe(qq{LISTEN "$chan_l"});
my %worker = map { node_id($_) => worker_pid($_) } @n;

# Checks that LISTENER got exactly the expected notifications (in order):
# each [ kind, name, key, event, version ] (key or version undef: any)
sub expect_events
{
	my ($label, $l, $want, $channel, $worker_pid, $timeout) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my @got = $l->notifications(scalar @$want, $timeout // 10);
	# anything else that comes shortly after is unexpected
	push @got, $l->notifications(1, 0.3) if @got >= @$want;
	my @payloads = map { $_->{payload} } @got;
	my $ok = is(scalar @got, scalar @$want, "$label: " . scalar(@$want) . ' notification(s)');
	for my $i (0 .. $#$want)
	{
		my $g = $got[$i] or last;
		my $j = $g->{json};
		ok($j, "$label #$i: the payload is JSON") or (diag($g->{payload}), next);
		my @w = @{ $want->[$i] };
		my @f = map { $j->{$_} } qw(kind name key event version);
		$f[2] = $w[2] unless defined $w[2];    # key not checked
		$f[4] = $w[4] unless defined $w[4];    # version not checked
		is_deeply(\@f, \@w, "$label #$i: kind, name, key, event, version")
		  or diag "payload: $g->{payload}";
		is($g->{channel}, $channel, "$label #$i: on the watched channel");
		is($g->{pid}, $worker_pid, "$label #$i: sent by the listener's node's raft worker")
		  if defined $worker_pid;
	}
	diag "got:\n" . join("\n", @payloads) unless $ok;
	return @got;
}

# map put on node 1 → nodes 2 and 3
my $v1 = $n[0]->safe_psql('postgres', "SELECT atomix.map_put('x', 'k1', 'v1')");
expect_events('map_put on node 1, seen on node 2', $l2, [ [ 'map', 'x', 'k1', 'put', $v1 ] ], $chan[0], $worker{2});
expect_events('map_put on node 1, seen on node 3', $l3, [ [ 'map', 'x', 'k1', 'put', $v1 ] ], $chan[0], $worker{3});

# remove on node 3 → node 2
is($n[2]->safe_psql('postgres', "SELECT atomix.map_remove('x', 'k1')"), 't', 'map_remove on node 3');
my @got = expect_events('map_remove on node 3, seen on node 2', $l2, [ [ 'map', 'x', 'k1', 'remove', undef ] ],
	$chan[0], $worker{2});
cmp_ok(($got[0] && $got[0]{json} ? $got[0]{json}{version} : 0) // 0, '>', $v1, 'the remove\'s version is larger');
$l3->notifications(1, 2);    # drain node 3

# several puts of one key from node 1: in log order
my @vs = split /\n/, $n[0]->safe_psql('postgres',
	join(";\n", map { "SELECT atomix.map_put('x', 'k2', 'v$_')" } 1 .. 5));
is(scalar @vs, 5, '5 puts of one key on node 1');
ok(!grep({ $vs[$_] <= $vs[ $_ - 1 ] } 1 .. 4), 'their versions increase');
expect_events('5 puts, seen on node 3 in order', $l3, [ map { [ 'map', 'x', 'k2', 'put', $_ ] } @vs ], $chan[0]);
$l2->notifications(5, 5);    # drain node 2

# value on node 3 → node 2
my $vv = $n[2]->safe_psql('postgres', "SELECT atomix.value_set('x', 'hello')");
like($vv, qr/^\d+$/, 'value_set on node 3 returns a version');
@got = expect_events('value_set on node 3, seen on node 2', $l2, [ [ 'value', 'x', undef, 'put', $vv ] ], $chan[0]);
note 'a value\'s key in the payload: ' . (@got && $got[0]{json} ? ($got[0]{json}{key} // 'null') : '?');
is($n[0]->safe_psql('postgres', "SELECT atomix.value_delete('x')"), 't', 'value_delete on node 1');
expect_events('value_delete on node 1, seen on node 2', $l2, [ [ 'value', 'x', undef, 'remove', undef ] ], $chan[0]);

# set element on node 1 → node 2
is($n[0]->safe_psql('postgres', "SELECT atomix.set_add('x', 'e1')"), 't', 'set_add on node 1');
expect_events('set_add on node 1, seen on node 2', $l2, [ [ 'set', 'x', 'e1', 'put', undef ] ], $chan[0]);

# ttl expiry
my $vt = $n[0]->safe_psql('postgres', "SELECT atomix.map_put('x', 'k3', 'gone soon', ttl => '1 second')");
my $t0 = time;
expect_events('a put with ttl on node 1, seen on node 2', $l2, [ [ 'map', 'x', 'k3', 'put', $vt ] ], $chan[0]);
expect_events('its expiry, seen on node 2', $l2, [ [ 'map', 'x', 'k3', 'expire', undef ] ], $chan[0], undef, 15);
note sprintf('expire event %.1fs after the put (ttl 1 s)', time - $t0);
$l3->notifications(20, 1);    # drain node 3

# locks: acquired / released with the token as version
my $ls = AtomixTest::Session->new($n[2]);
my $tok = $ls->query_safe("SELECT atomix.lock_acquire('wl')");
like($tok, qr/^\d+$/, 'lock_acquire on node 3');
expect_events('lock acquired on node 3, seen on node 2', $l2, [ [ 'lock', 'wl', undef, 'acquired', $tok ] ], $chan_l);
is($ls->query_safe("SELECT atomix.lock_release('wl')"), 't', 'lock_release on node 3');
expect_events('lock released on node 3, seen on node 2', $l2, [ [ 'lock', 'wl', undef, 'released', $tok ] ], $chan_l);
$ls->quit;

# a change to another primitive is not reported on these channels
$n[0]->safe_psql('postgres', "SELECT atomix.map_put('y', 'k1', 'v')");
is(scalar($l2->notifications(1, 1)), 0, 'a change to an unwatched map is not reported');

# a listener that reconnects missed what happened meanwhile, and hears the next change
$l3->quit;
$n[0]->safe_psql('postgres', "SELECT atomix.map_put('x', 'k4', 'while away')");
$l3 = AtomixTest::Session->new($n[2]);
$l3->query_safe(qq{LISTEN "$chan[0]"});
my $v5 = $n[1]->safe_psql('postgres', "SELECT atomix.map_put('x', 'k5', 'back')");
expect_events('after LISTEN again on node 3', $l3, [ [ 'map', 'x', 'k5', 'put', $v5 ] ], $chan[0]);
$_->quit for $l2, $l3;

# ======================================================================
# next_id from three nodes at once
# ======================================================================
my $EACH = 400;
my @ids;
my @gen = map { { node => ($_ % $N) + 1, s => AtomixTest::Session->new($n[ $_ % $N ]) } } 0 .. 2 * $N - 1;
$_->{s}->send(join(";\n", ("SELECT atomix.next_id('ids')") x $EACH)) for @gen;
my $t_ids = time;
for my $g (@gen)
{
	my ($out, $err) = $g->{s}->result(120);
	is($err, '', "session on node $g->{node}: every next_id succeeded");
	$g->{ids} = [ split /\n/, $out ];
	push @ids, @{ $g->{ids} };
}
note sprintf('%d next_id calls from %d sessions on %d nodes in %.2fs (id_block_size %d)',
	scalar @ids, scalar @gen, $N, time - $t_ids, $BLOCK);
is(scalar @ids, $EACH * @gen, 'every call returned an id');
is(scalar(grep { !/^\d+$/ } @ids), 0, 'ids are integers');
my %seen;
my @dup = grep { $seen{$_}++ } @ids;
is(scalar @dup, 0, 'all ids are unique cluster-wide')
  or diag scalar(@dup) . ' duplicates, e.g. ' . join(' ', @dup[ 0 .. ($#dup < 9 ? $#dup : 9) ]);
for my $g (@gen)
{
	my @v = @{ $g->{ids} };
	ok(!grep({ $v[$_] <= $v[ $_ - 1 ] } 1 .. $#v), "node $g->{node}: a session's ids strictly increase");
}
my %by_node;
push @{ $by_node{ $_->{node} } }, @{ $_->{ids} } for @gen;
my %max = map { my @v = sort { $a <=> $b } @{ $by_node{$_} }; ($_ => $v[-1]) } keys %by_node;

# a restart of node 3: its next ids are still unique and larger
$_->{s}->quit for @gen;
my $pos3 = log_position($n[2]);
$n[2]->restart;
wait_until_serving($n[2]);
my @after = split /\n/, $n[2]->safe_psql('postgres', join(";\n", ("SELECT atomix.next_id('ids')") x 20));
is(scalar(grep { $seen{$_} } @after), 0, 'ids of restarted node 3 are new');
cmp_ok($after[0], '>', $max{3}, "and larger than node 3's before the restart ($after[0] > $max{3})");
note "node 3 before its restart: up to $max{3}; after: $after[0] (gap " . ($after[0] - $max{3} - 1) . ')';
my @more = map { $_->safe_psql('postgres', "SELECT atomix.next_id('ids')") } @n[ 0, 1 ];
my %after = map { $_ => 1 } @after;
is(scalar(grep { $seen{$_} || $after{$_} } @more), 0, 'nodes 1 and 2 go on with unique ids');
is($n[0]->safe_psql('postgres', "SELECT atomix.next_id('other-ids') > 0"), 't', 'another generator works');

no_crash_since($n[0], 0, 'node 1');
no_crash_since($n[1], 0, 'node 2');
no_crash_since($n[2], $pos3, 'node 3 since its restart');
stop_cleanly($_) for @n;
done_testing();
