# AtomixTest.pm — helpers shared by the atomix TAP tests.
#
# Nodes are PostgreSQL::Test::Cluster instances with atomix preloaded (unless
# asked otherwise), restart_after_crash on (Cluster.pm turns it off, but the
# worker-death tests need the postmaster's crash recovery), their own free
# port for the atomix transport, and the extension created in `postgres`.
#
# Sessions (AtomixTest::Session) are long-lived psql processes fed through a
# pipe: a statement can be sent without waiting (to observe a backend that
# is blocked in an atomix call) and its outcome collected later, with
# SQLSTATEs visible (VERBOSITY verbose).

package AtomixTest;

use strict;
use warnings;

use Carp;
use Exporter 'import';
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

our @EXPORT = qw(
  atomix_node
  raft_log_on_tmpfs
  fill_file_system
  worker_pid
  wait_for_worker
  wait_until_serving
  wait_for_waiting_backend
  sql_outcome
  sqlstate_of
  wait_until
  state_dump
  log_position
  log_since
  no_crash_since
  stop_cleanly
  start_load
  pump_load
  finish_load
  stop_load
  load_stall
  load_discrepancies
  verify_load
  atomix_cluster
  node_id
  wait_for_leaders
  partition_leaders
  leader_counts
  wait_for_balanced_leaders
  sequential_psql
  wait_for_log_line
  wait_for_same_state
  counter_partitions
  topology_diag
  partition_info
  wait_for_stable_leaders
  object_partition
  wait_for_preferred_leaders
  parse_notifications
  freeze_pid
  thaw_pid
  query_no_55000
  no_session_given_up_since
);

# atomix_node(NAME, %opts) -> started node
#   preload          => 1    put atomix in shared_preload_libraries
#   create_extension => 1    CREATE EXTENSION atomix in postgres (needs preload)
#   conf             => []   extra postgresql.conf lines
#   start            => 1    start the node
sub atomix_node
{
	my ($name, %opts) = @_;
	my $preload = exists $opts{preload} ? $opts{preload} : 1;
	my $create = exists $opts{create_extension} ? $opts{create_extension} : $preload;
	my $start = exists $opts{start} ? $opts{start} : 1;

	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	my $transport_port = PostgreSQL::Test::Cluster::get_free_port();
	my @conf = (
		'restart_after_crash = on',
		"atomix.listen_address = '127.0.0.1:$transport_port'",
		'max_connections = 30',
	);
	unshift @conf, "shared_preload_libraries = 'atomix'" if $preload;
	push @conf, @{ $opts{conf} } if $opts{conf};
	$node->append_conf('postgresql.conf', join("\n", @conf));
	return $node unless $start;

	$node->start;
	if ($create)
	{
		$node->safe_psql('postgres', 'CREATE EXTENSION atomix');
		wait_until_serving($node);
	}
	return $node;
}

# Puts the (not yet started) node's $PGDATA/atomix, its Raft logs, in a
# directory of its own on the small file system TMPFS (ATOMIX_TAP_TMPFS), so
# a test can fill it; returns that directory.
sub raft_log_on_tmpfs
{
	my ($node, $tmpfs) = @_;
	my $logdir = "$tmpfs/" . $node->name;
	mkdir $logdir or die "$logdir: $!";
	symlink($logdir, $node->data_dir . '/atomix') or die "symlink: $!";
	return $logdir;
}

# Fills the file system of DIR to the last block: the next write there fails
# with ENOSPC.  Returns the files written (unlink them to free the space).
sub fill_file_system
{
	my ($dir) = @_;
	my @files = ("$dir/filler", "$dir/filler.tail");
	system('dd', 'if=/dev/zero', "of=$files[0]", 'bs=1M', 'count=1024', 'status=none');
	system('dd', 'if=/dev/zero', "of=$files[1]", 'bs=4k', 'count=100000', 'status=none');
	return @files;
}

# The pid of the node's raft worker, or undef when none is running.
sub worker_pid
{
	my ($node) = @_;
	my ($ret, $out, $err) = $node->psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'atomix raft worker'",
		timeout => 30);
	return undef if $ret != 0;
	chomp $out;
	return $out =~ /^(\d+)$/ ? $1 : undef;
}

# wait_until(TIMEOUT_SECONDS, CODE) -> true once CODE returns true, false on
# timeout.  Polls every 50 ms.
sub wait_until
{
	my ($timeout, $code) = @_;
	my $deadline = time + $timeout;
	while (1)
	{
		return 1 if $code->();
		return 0 if time > $deadline;
		usleep(50_000);
	}
}

# Waits (up to TIMEOUT seconds, default 30) for a worker whose pid differs
# from OLD_PID (undef: any worker); returns its pid or undef.
sub wait_for_worker
{
	my ($node, $old_pid, $timeout) = @_;
	$timeout //= 30;
	my $pid;
	wait_until(
		$timeout,
		sub {
			$pid = worker_pid($node);
			return defined $pid && (!defined $old_pid || $pid != $old_pid);
		});
	return (defined $pid && (!defined $old_pid || $pid != $old_pid)) ? $pid : undef;
}

# Waits until atomix calls are served (a linearizable read goes through the
# worker); dies after TIMEOUT seconds (default 60).
sub wait_until_serving
{
	my ($node, $timeout) = @_;
	$timeout //= 60;
	my $last = '';
	my $ok = wait_until(
		$timeout,
		sub {
			my ($ret, $out, $err) = $node->psql('postgres',
				"SELECT atomix.counter_get('atomix-test-probe') IS NOT NULL",
				timeout => 30);
			$last = $err;
			return $ret == 0 && $out eq 't';
		});
	croak "atomix on node " . $node->name . " is not serving after ${timeout}s: $last"
	  unless $ok;
	return 1;
}

# Waits until backend PID is inside an atomix call, asleep on its latch
# (wait_event_type Extension).  Returns true when it is.
sub wait_for_waiting_backend
{
	my ($node, $pid, $timeout) = @_;
	$timeout //= 20;
	return wait_until(
		$timeout,
		sub {
			my $out = $node->safe_psql('postgres',
				"SELECT count(*) FROM pg_stat_activity WHERE pid = $pid "
				  . "AND state = 'active' AND wait_event_type = 'Extension' "
				  . "AND query LIKE '%atomix.%'");
			return $out eq '1';
		});
}

# sql_outcome(NODE, SQL, [DB]) -> (ret, stdout, stderr, sqlstate)
# Runs SQL in a fresh psql with VERBOSITY verbose; sqlstate is that of the
# first ERROR/FATAL, or undef.
sub sql_outcome
{
	my ($node, $sql, $db) = @_;
	$db //= 'postgres';
	my ($ret, $out, $err) = $node->psql($db, $sql,
		extra_params => [ '-v', 'VERBOSITY=verbose' ],
		timeout => 60);
	return ($ret, $out, $err, sqlstate_of($err));
}

# The SQLSTATE of the first ERROR/FATAL in psql's verbose stderr, or undef.
sub sqlstate_of
{
	my ($stderr) = @_;
	return undef unless defined $stderr;
	return $stderr =~ /(?:ERROR|FATAL):\s+([0-9A-Z]{5}):/ ? $1 : undef;
}

# Everything atomix stores, as text: map rows with versions and expiry, and
# counters, in a stable order.
sub state_dump
{
	my ($node) = @_;
	return $node->safe_psql('postgres', q{
		SELECT 'map', map, key, encode(value, 'escape'), version, expires_at
		  FROM atomix.map_data ORDER BY map, key;
		SELECT 'counter', name, value FROM atomix.counter_data ORDER BY name;
	});
}

# Byte offset of the end of the node's log, for log_since().
sub log_position
{
	my ($node) = @_;
	return -s $node->logfile // 0;
}

# The node's log from byte offset POS on.
sub log_since
{
	my ($node, $pos) = @_;
	my $log = slurp_file($node->logfile);
	return substr($log, $pos // 0);
}

# Test: no process of the node crashed (and the postmaster did not shut down
# abnormally) since log offset POS.  Deliberate SIGKILLs are not excused:
# call it only over stretches where none was sent.
sub no_crash_since
{
	my ($node, $pos, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	# the last: the raft worker cannot see raft_uv's thread-pool work
	# (replication/thread_pool_work.h), which a halt must wait for
	my @bad = grep { /terminated by signal|PANIC|abnormal database system shutdown|exited with exit code [^01]|TRAP:|thread-pool work is not counted/ }
	  split /\n/, log_since($node, $pos);
	ok(!@bad, "$what: no crash in the server log") or diag join("\n", @bad);
	return !@bad;
}

# Fast shutdown that must be clean: the raft worker closes its groups on
# SIGTERM without crashing.
sub stop_cleanly
{
	my ($node) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $pos = log_position($node);
	$node->stop('fast', fail_ok => 1);
	no_crash_since($node, $pos, 'fast shutdown of ' . $node->name);
	return;
}

# ---- load clients ----
#
# start_load(NODE, clients => 4, round => 'r1', pairs => 20000, dir => DIR,
#            first => 1, stream => 0, ahead => 4)
# starts CLIENTS psql processes, numbered FIRST .. FIRST+CLIENTS-1; client i
# runs, for j = 1..PAIRS,
#     SELECT 'c', j, atomix.counter_incr('c<i>');
#     SELECT 'm', j, atomix.map_put('m', 'k<i>-<round>-<j>', '<j>');
# with ON_ERROR_STOP off.  Every line a client prints is an acknowledged
# write.  pump_load keeps the pipes drained for a while; finish_load waits
# for the clients to exit (after the server went away) and parses what each
# acknowledged.
#
# With stream => 1 the statements are not in a file: pump_load feeds them
# through psql's stdin, never more than AHEAD beyond those answered (psql
# flushes each result), without end until stop_load(LOAD); the client then
# quits after answering what it was sent, so the statements in doubt are
# exactly the ones that failed.  The arrival time of every answer is kept
# (resolution: the 20 ms pump period) for load_stall().
sub start_load
{
	my ($node, %o) = @_;
	my $clients = $o{clients} // 4;
	my $first = $o{first} // 1;
	my $round = $o{round} // 'r1';
	my $pairs = $o{pairs} // 20000;
	my $stream = $o{stream} // 0;
	my $dir = $o{dir} // PostgreSQL::Test::Utils::tempdir();
	my @c;
	local %ENV = $node->_get_env();
	for my $i ($first .. $first + $clients - 1)
	{
		my %cl = (i => $i, round => $round, pairs => $pairs, out => '', err => '',
			stream => $stream, ahead => $o{ahead} // 4, in => '', fed => 0,
			parsed => 0, answers => [], stopped => 0);
		my @cmd = (
			$node->installed_command('psql'), '-X', '-q', '-A', '-t',
			'-v', 'ON_ERROR_STOP=0', '-v', 'VERBOSITY=verbose',
			'-d', $node->connstr('postgres'));
		my @stdin;
		if ($stream)
		{
			@stdin = ('<', \$cl{in});
		}
		else
		{
			my $file = "$dir/load-$round-$i.sql";
			open my $fh, '>', $file or die "$file: $!";
			print $fh load_statement($i, $round, $_) for 0 .. 2 * $pairs - 1;
			close $fh;
			push @cmd, '-f', $file;
			@stdin = ('<', '/dev/null');
		}
		$cl{run} = IPC::Run::start(\@cmd, @stdin, '>', \$cl{out}, '2>', \$cl{err});
		push @c, \%cl;
	}
	my $load = { clients => \@c, node => $node };
	feed_load($load) if $stream;
	return $load;
}

# The statement at 0-based position POS of client I's script.
sub load_statement
{
	my ($i, $round, $pos) = @_;
	my $j = int($pos / 2) + 1;
	return $pos % 2 == 0
	  ? "SELECT 'c', $j, atomix.counter_incr('c$i');\n"
	  : "SELECT 'm', $j, atomix.map_put('m', 'k$i-$round-$j', '$j');\n";
}

# Stream mode: notes the answers that arrived and tops the clients' input up.
sub feed_load
{
	my ($load) = @_;
	my $now = time;
	for my $cl (@{ $load->{clients} })
	{
		next unless $cl->{stream};
		pos($cl->{out}) = $cl->{parsed};
		while ($cl->{out} =~ /\G[^\n]*\n/gc)
		{
			push @{ $cl->{answers} }, $now;
			$cl->{parsed} = pos($cl->{out});
		}
		my $errors = () = $cl->{err} =~ /ERROR:/g;
		my $answered = @{ $cl->{answers} } + $errors;
		while (!$cl->{stopped} && $cl->{fed} < $answered + $cl->{ahead}
			&& $cl->{fed} < 2 * $cl->{pairs})
		{
			$cl->{in} .= load_statement($cl->{i}, $cl->{round}, $cl->{fed}++);
		}
	}
	return;
}

# Drains the clients' output (and feeds stream clients) for SECONDS; returns
# how many are still running.
sub pump_load
{
	my ($load, $seconds) = @_;
	my $deadline = time + $seconds;
	while (1)
	{
		$_->{run}->pump_nb for grep { $_->{run}->pumpable } @{ $load->{clients} };
		feed_load($load);
		last if time >= $deadline;
		usleep(20_000);
	}
	return scalar grep { $_->{run}->pumpable } @{ $load->{clients} };
}

# Stream mode: feed no more; each client quits once it answered what it was
# sent.  Collect the results with finish_load.
sub stop_load
{
	my ($load) = @_;
	for my $cl (@{ $load->{clients} })
	{
		next if $cl->{stopped};
		$cl->{stopped} = 1;
		$cl->{in} .= "\\q\n";
	}
	return;
}

# Stream mode: for each client, the longest time without an answer that
# ended after time T0 (e.g. the moment a node was crashed), in seconds, and
# the largest of those: (max, { i => gap }).
sub load_stall
{
	my ($load, $t0) = @_;
	my %gap;
	for my $cl (@{ $load->{clients} })
	{
		my @a = @{ $cl->{answers} };
		my $g = 0;
		for my $k (1 .. $#a)
		{
			next if $a[$k] <= $t0;
			my $d = $a[$k] - ($a[ $k - 1 ] > $t0 ? $a[ $k - 1 ] : $t0);
			$g = $d if $d > $g;
		}
		$gap{ $cl->{i} } = $g;
	}
	my ($max) = sort { $b <=> $a } values %gap;
	return ($max // 0, \%gap);
}

# Waits (up to TIMEOUT s) for every client to exit and parses its output:
# returns a list of hashes, one per client:
#   i, round, counter => { j => value }, put => { j => version },
#   last_pos => position of the last acknowledged statement (0-based;
#               statement 2(j-1) is the j-th incr, 2(j-1)+1 the j-th put),
#   errors => number of ERROR lines, uncertain => [positions that may or
#   may not have been applied], fed => statements sent (stream mode), out, err.
# In stream mode the uncertain positions are exactly the failed ones.
sub finish_load
{
	my ($load, $timeout) = @_;
	$timeout //= 60;
	my $deadline = time + $timeout;
	my @res;
	for my $cl (@{ $load->{clients} })
	{
		while ($cl->{run}->pumpable && time < $deadline)
		{
			$cl->{run}->pump_nb;
			feed_load($load);
			usleep(20_000);
		}
		if ($cl->{run}->pumpable)
		{
			$cl->{run}->kill_kill;
			croak "load client $cl->{i} did not exit within ${timeout}s";
		}
		eval { $cl->{run}->finish; };
		my %r = (i => $cl->{i}, round => $cl->{round}, counter => {}, put => {},
			last_pos => -1, out => $cl->{out}, err => $cl->{err}, fed => $cl->{fed});
		my %acked_pos;
		for my $line (split /\n/, $cl->{out})
		{
			if ($line =~ /^c\|(\d+)\|(-?\d+)$/)
			{
				$r{counter}{$1} = $2;
				$acked_pos{ 2 * ($1 - 1) } = 1;
			}
			elsif ($line =~ /^m\|(\d+)\|(\d+)$/)
			{
				$r{put}{$1} = $2;
				$acked_pos{ 2 * ($1 - 1) + 1 } = 1;
			}
			else
			{
				croak "load client $cl->{i}: unexpected output line '$line'";
			}
		}
		my @pos = sort { $a <=> $b } keys %acked_pos;
		$r{last_pos} = @pos ? $pos[-1] : -1;
		$r{errors} = () = $cl->{err} =~ /^(?:psql:[^\n]*?)?ERROR:/mg;
		if ($cl->{stream})
		{
			$r{uncertain} = [ grep { !$acked_pos{$_} } 0 .. $cl->{fed} - 1 ];
		}
		else
		{
			my @gaps = grep { !$acked_pos{$_} } 0 .. $r{last_pos};
			my $tail = 1 + ($r{errors} > @gaps ? $r{errors} - @gaps : 0);
			$r{uncertain} = [ @gaps, map { $r{last_pos} + $_ } 1 .. $tail ];
		}
		push @res, \%r;
	}
	return @res;
}

# load_discrepancies(NODE, RESULTS, base => { i => counter before }, sequential => 0)
# -> list of what NODE's state contradicts in the load clients' results
# (RESULTS: an array ref of finish_load hashes of one round), empty when
# everything holds:
#  - client i's counter c<i> strictly increased from ack to ack, by 1 plus at
#    most the increments in doubt in between (nothing applied twice), and now
#    reads the last acknowledged value plus at most the increments in doubt
#    after it (exactly it when none is in doubt);
#  - every acknowledged key k<i>-<round>-<j> of map 'm' holds j with the
#    acknowledged version, and no other key of the round exists but ones in
#    doubt.
# State is read in one psql call (sequential => 1: from the local replica).
sub load_discrepancies
{
	my ($node, $res, %o) = @_;
	my $base = $o{base} // {};
	my $sql = '';
	$sql .= "SET atomix.read_consistency = 'sequential';\n" if $o{sequential};
	$sql .= "SELECT 'm', key, value, version FROM atomix.map_entries('m');\n";
	$sql .= "SELECT 'c', $_->{i}, atomix.counter_get('c$_->{i}');\n" for @$res;
	my ($ret, $out, $err) = $node->psql('postgres', $sql, timeout => 60);
	return ("reading the state of " . $node->name . " failed: $err") if $ret != 0;
	my (%m, %c);
	for (split /\n/, $out)
	{
		my @f = split /\|/;
		if ($f[0] eq 'm') { $m{ $f[1] } = [ $f[2], $f[3] ]; }
		elsif ($f[0] eq 'c') { $c{ $f[1] } = $f[2]; }
	}
	my @bad;
	for my $r (@$res)
	{
		my ($i, $round) = ($r->{i}, $r->{round});
		my %uncertain = map { $_ => 1 } @{ $r->{uncertain} };
		my @doubt_incr = grep { $_ % 2 == 0 } keys %uncertain;

		# counter: from ack to ack, then to the final value
		my $prev_j = 0;
		my $prev = $base->{$i} // 0;
		for my $j (sort { $a <=> $b } keys %{ $r->{counter} })
		{
			my $v = $r->{counter}{$j};
			my $doubt = grep { $_ / 2 + 1 > $prev_j && $_ / 2 + 1 < $j } @doubt_incr;
			push @bad, "c$i: increment $j acknowledged $v after $prev"
			  . " (expected " . ($prev + 1) . ($doubt ? "..+$doubt" : '') . ")"
			  if $v < $prev + 1 || $v > $prev + 1 + $doubt;
			($prev_j, $prev) = ($j, $v);
		}
		my $doubt = grep { $_ / 2 + 1 > $prev_j } @doubt_incr;
		my $final = $c{$i} // 'missing';
		push @bad, "c$i reads $final, acknowledged $prev" . ($doubt ? " (+ up to $doubt in doubt)" : '')
		  if $final eq 'missing' || $final < $prev || $final > $prev + $doubt;

		# map keys
		my ($missing, $wrong) = (0, 0);
		for my $j (sort { $a <=> $b } keys %{ $r->{put} })
		{
			my $e = $m{"k$i-$round-$j"};
			if (!$e) { $missing++; push @bad, "k$i-$round-$j missing" if $missing <= 5; next; }
			if ($e->[0] ne $j || $e->[1] != $r->{put}{$j})
			{
				$wrong++;
				push @bad, "k$i-$round-$j is ($e->[0], version $e->[1]), acknowledged ($j, version $r->{put}{$j})"
				  if $wrong <= 5;
			}
		}
		push @bad, "client $i: $missing acknowledged keys missing in all" if $missing > 5;
		push @bad, "client $i: $wrong acknowledged keys wrong in all" if $wrong > 5;
		for my $k (sort keys %m)
		{
			next unless $k =~ /^k$i-$round-(\d+)$/;
			push @bad, "$k exists but was never acknowledged nor in doubt"
			  unless exists $r->{put}{$1} || $uncertain{ 2 * ($1 - 1) + 1 };
		}
	}
	return @bad;
}

# Test: load_discrepancies finds nothing.
sub verify_load
{
	my ($node, $label, $res, %o) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my @bad = load_discrepancies($node, $res, %o);
	my ($puts, $incrs, $doubt) = (0, 0, 0);
	for my $r (@$res)
	{
		$puts += keys %{ $r->{put} };
		$incrs += keys %{ $r->{counter} };
		$doubt += @{ $r->{uncertain} };
	}
	ok(!@bad, "$label: $incrs acknowledged increments and $puts acknowledged puts "
		  . "are there exactly once ($doubt in doubt)")
	  or diag join("\n", @bad);
	return !@bad;
}

# ---- multi-node clusters ----

my %node_ids;    # node name => atomix.node_id

# atomix_cluster(N, %opts) -> (node 1, ..., node N), node k with
# atomix.node_id = k.  Every node gets its own free PG port and transport
# port (get_free_port reserves them), the same atomix.initial_cluster and
# (unless overridden) the same atomix.cluster_secret; then all are started,
# CREATE EXTENSION runs on each, and the helper waits until every partition
# has a leader as seen by atomix.partitions on each node of WAIT.
#   name               => 'node'   node names <name>1 .. <name>N
#   conf               => []       extra postgresql.conf lines, every node
#   node_conf          => {}       id => [lines] for one node (after conf)
#   secret             => 'atomix-tap-secret'
#   secrets            => {}       id => secret of that node instead
#   replication_factor => undef    atomix.replication_factor (undef: default)
#   start              => 1        0: only init and configure
#   wait               => [1..N]   node ids to wait for leaders on
#   timeout            => 90       seconds for that wait (then croak)
sub atomix_cluster
{
	my ($n, %opts) = @_;
	my $name = $opts{name} // 'node';
	my $secret = $opts{secret} // 'atomix-tap-secret';
	my @tport = map { PostgreSQL::Test::Cluster::get_free_port() } 1 .. $n;
	my $initial = join ',', map { "$_=127.0.0.1:$tport[$_ - 1]" } 1 .. $n;
	my @nodes;
	for my $id (1 .. $n)
	{
		my $node = PostgreSQL::Test::Cluster->new("$name$id");
		$node->init;
		my @conf = (
			"shared_preload_libraries = 'atomix'",
			'restart_after_crash = on',
			'max_connections = 30',
			"atomix.node_id = $id",
			"atomix.listen_address = '127.0.0.1:$tport[$id - 1]'",
			"atomix.initial_cluster = '$initial'",
			"atomix.cluster_secret = '" . ($opts{secrets}{$id} // $secret) . "'",
		);
		push @conf, "atomix.replication_factor = $opts{replication_factor}"
		  if defined $opts{replication_factor};
		push @conf, @{ $opts{conf} } if $opts{conf};
		push @conf, @{ $opts{node_conf}{$id} } if $opts{node_conf} && $opts{node_conf}{$id};
		$node->append_conf('postgresql.conf', join("\n", @conf) . "\n");
		$node_ids{ $node->name } = $id;
		push @nodes, $node;
	}
	return @nodes unless $opts{start} // 1;

	$_->start for @nodes;
	$_->safe_psql('postgres', 'CREATE EXTENSION atomix') for @nodes;
	my @wait = map { $nodes[ $_ - 1 ] } @{ $opts{wait} // [ 1 .. $n ] };
	my $t0 = time;
	wait_for_leaders(\@wait, $opts{timeout} // 90);
	note sprintf('%d-node cluster: every partition has a leader on nodes %s after %.1fs',
		$n, join(',', map { node_id($_) } @wait), time - $t0);
	return @nodes;
}

# The atomix.node_id of a node made by atomix_cluster.
sub node_id
{
	my ($node) = @_;
	return $node_ids{ $node->name };
}

# { partition_id => leader node id (undef: none) } as NODE sees it; undef
# when the query fails (node down).
sub partition_leaders
{
	my ($node) = @_;
	my ($ret, $out, $err) = $node->psql('postgres',
		'SELECT partition_id, leader_node FROM atomix.partitions ORDER BY 1',
		timeout => 30);
	return undef if $ret != 0;
	my %l;
	for (split /\n/, $out)
	{
		my ($p, $leader) = split /\|/, $_, -1;
		$l{$p} = $leader eq '' ? undef : $leader;
	}
	return \%l;
}

# { partition_id => { leader => id or undef, term, commit_index,
# applied_index } } as NODE sees it; undef when the query fails.
sub partition_info
{
	my ($node) = @_;
	my ($ret, $out, $err) = $node->psql('postgres',
		'SELECT partition_id, leader_node, term, commit_index, applied_index '
		  . 'FROM atomix.partitions ORDER BY 1',
		timeout => 30);
	return undef if $ret != 0;
	my %i;
	for (split /\n/, $out)
	{
		my ($p, $leader, $term, $commit, $applied) = split /\|/, $_, -1;
		$i{$p} = { leader => $leader eq '' ? undef : $leader, term => $term,
			commit_index => $commit, applied_index => $applied };
	}
	return \%i;
}

# Waits (up to TIMEOUT s) until NODE has seen the same leader for every
# partition, none missing, for STABLE seconds in a row (leaders move for a
# few seconds after a start while they are balanced).  Returns the leaders
# ({ partition => node id }) and whether they were stable.
sub wait_for_stable_leaders
{
	my ($node, $stable, $timeout) = @_;
	my ($since, $prev) = (time, '');
	my $l;
	my $ok = wait_until(
		$timeout,
		sub {
			$l = partition_leaders($node) // {};
			my $now = join(',', map { $_ . '=' . ($l->{$_} // '') } sort { $a <=> $b } keys %$l);
			if ($now ne $prev || $now =~ /=(,|$)/ || $now eq '')
			{
				($since, $prev) = (time, $now);
				return 0;
			}
			return time - $since >= $stable;
		});
	return ($l, $ok);
}

# { node id => number of partitions it leads } as NODE sees it.
sub leader_counts
{
	my ($node) = @_;
	my $l = partition_leaders($node) or return {};
	my %c;
	$c{$_}++ for grep { defined } values %$l;
	return \%c;
}

# Waits until each node of NODES (array ref) sees a leader for every one of
# its atomix.partitions partitions; croaks after TIMEOUT s (default 60).
# exclude => [ids]: leaders on these nodes (e.g. just crashed) do not count.
sub wait_for_leaders
{
	my ($nodes, $timeout, %o) = @_;
	$timeout //= 60;
	my $not_in = @{ $o{exclude} // [] }
	  ? ' AND bool_and(leader_node NOT IN (' . join(',', @{ $o{exclude} }) . '))'
	  : '';
	my $deadline = time + $timeout;
	for my $node (@$nodes)
	{
		my $last = '';
		my $ok = wait_until(
			$deadline - time,
			sub {
				my ($ret, $out, $err) = $node->psql('postgres',
					"SELECT count(*) = current_setting('atomix.partitions')::int "
					  . "AND bool_and(leader_node IS NOT NULL)$not_in FROM atomix.partitions",
					timeout => 30);
				$last = $err if $ret != 0;
				return $ret == 0 && $out eq 't';
			});
		next if $ok;
		my $l = partition_leaders($node);
		$last = join(' ', map { "p$_:" . ($l->{$_} // 'none') } sort { $a <=> $b } keys %$l)
		  if $l;
		croak "not every partition has a leader on " . $node->name
		  . " after ${timeout}s: $last";
	}
	return 1;
}

# Waits up to TIMEOUT s until NODE sees each of N_NODES nodes leading at
# least MIN partitions; returns the final { node id => count }.
sub wait_for_balanced_leaders
{
	my ($node, $n_nodes, $min, $timeout) = @_;
	my $counts;
	wait_until(
		$timeout,
		sub {
			$counts = leader_counts($node);
			return !grep { ($counts->{$_} // 0) < $min } 1 .. $n_nodes;
		});
	return $counts;
}

# { name => partition id } of the named counters that exist (write them
# first), from NODE's tables after a linearizable read of every partition.
sub counter_partitions
{
	my ($node, @names) = @_;
	my $list = join(',', map { "'$_'" } @names);
	$node->safe_psql('postgres', "SELECT atomix.map_size('atomix-tap-sync')");
	my %p = map { split /\|/ } split /\n/, $node->safe_psql('postgres',
		"SELECT name, partition_id FROM atomix.counter_data WHERE name IN ($list)");
	return \%p;
}

# diag()s each node's view of atomix.partitions and its local applied
# indexes (for failures).
sub topology_diag
{
	my (@nodes) = @_;
	for my $node (@nodes)
	{
		my ($ret, $out, $err) = $node->psql('postgres',
			"SELECT p.partition_id, p.leader_node, p.term, p.commit_index, p.applied_index, "
			  . "s.applied_index AS table_applied FROM atomix.partitions p "
			  . "LEFT JOIN atomix.partition_state s USING (partition_id) ORDER BY 1",
			timeout => 30);
		diag "node " . (node_id($node) // $node->name)
		  . " partitions (id|leader|term|commit|applied|table_applied):\n"
		  . ($ret == 0 ? $out : $err);
	}
	return;
}

# safe_psql with atomix.read_consistency = 'sequential' (the local replica).
sub sequential_psql
{
	my ($node, $sql) = @_;
	return $node->safe_psql('postgres',
		"SET atomix.read_consistency = 'sequential';\n$sql");
}

# Waits up to TIMEOUT s (default 30) for a line matching RE in the node's
# log after byte offset POS; returns the line, or undef on timeout.
sub wait_for_log_line
{
	my ($node, $re, $pos, $timeout) = @_;
	my $line;
	wait_until(
		$timeout // 30,
		sub {
			($line) = grep { /$re/ } split /\n/, log_since($node, $pos);
			return defined $line;
		});
	return $line;
}

# Waits up to TIMEOUT s until state_dump is the same on every node of NODES
# (array ref); returns (1, dump) or (0, [dumps]).
sub wait_for_same_state
{
	my ($nodes, $timeout) = @_;
	my @d;
	my $same = wait_until(
		$timeout,
		sub {
			@d = map { state_dump($_) } @$nodes;
			return !grep { $_ ne $d[0] } @d;
		});
	return $same ? (1, $d[0]) : (0, \@d);
}

# ---- coordination primitives (locks, elections, semaphores, watches) ----

# The partition holding coordination object NAME of KIND ('l' lock, 'e'
# election, 'm' semaphore, 'i' id generator) in NODE's local tables, or
# undef when NODE has no such row (yet).  A call on NODE has been applied on
# NODE by the time it returns, so right after it this is exact.
sub object_partition
{
	my ($node, $kind, $name) = @_;
	my ($ret, $out, $err) = $node->psql('postgres',
		"SELECT partition_id FROM atomix.object_data WHERE kind = '$kind' AND name = '$name'",
		timeout => 30);
	return ($ret == 0 && $out =~ /^(\d+)$/) ? $1 : undef;
}

# Waits up to TIMEOUT s until NODE sees every partition p led by its
# preferred node (p mod N) + 1 (N = number of nodes); returns the leaders
# ({ partition => node id }) and whether they are all placed so.
sub wait_for_preferred_leaders
{
	my ($node, $n_nodes, $timeout) = @_;
	my $l;
	my $ok = wait_until(
		$timeout,
		sub {
			$l = partition_leaders($node) // {};
			return 0 unless %$l;
			return !grep { ($l->{$_} // 0) != $_ % $n_nodes + 1 } keys %$l;
		});
	return ($l, $ok);
}

# The notifications psql printed in OUT (its stdout), in order:
# [ { channel, payload, pid, json (decoded payload, undef if not JSON) } ].
sub parse_notifications
{
	my ($out) = @_;
	require JSON::PP;
	my @n;
	for my $line (split /\n/, $out // '')
	{
		next unless $line =~
		  /^Asynchronous notification "([^"]*)" with payload "(.*)" received from server process with PID (\d+)\.$/;
		my %n = (channel => $1, payload => $2, pid => $3);
		$n{json} = eval { JSON::PP->new->decode($n{payload}) };
		push @n, \%n;
	}
	return @n;
}

# query_no_55000(SESSION, SQL, LABEL): SESSION->query_safe(SQL), except
# that "atomix session expired" (55000) fails a test (none is expected) and
# the call is tried again (the next call has a new session), so that the
# rest of the script can go on.  Passes one test when nothing was refused.
sub query_no_55000
{
	my ($s, $sql, $label) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my @refused;
	for (1 .. 50)
	{
		my ($o, $e) = $s->query($sql);
		if ((sqlstate_of($e) // '') eq '55000') { push @refused, $e; next; }
		die "query failed: $sql: $e" if $e =~ /ERROR|FATAL/;
		is(scalar @refused, 0, "$label: $sql is not refused with 55000")
		  or diag scalar(@refused) . " refusals, the first: $refused[0]";
		return $o;
	}
	die "$sql: refused with 55000 50 times";
}

# Test: NODE's raft worker did not stop vouching for any of its sessions
# since log offset POS (it logs "atomix: session N expired: partition P did
# not renew it ..." when a partition's keep-alives go unacknowledged for
# 7/8 of atomix.session_timeout, and then closes those sessions everywhere).
# A node that stayed up and connected should never do that.
sub no_session_given_up_since
{
	my ($node, $pos, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my @lines = grep { /atomix: session \d+ expired: partition/ } split /\n/, log_since($node, $pos);
	ok(!@lines, "$what: gave up none of its sessions") or diag join("\n", @lines);
	return !@lines;
}

# SIGSTOP / SIGCONT a server process (a raft worker, to cut its node off
# without killing it).  A process frozen by freeze_pid is thawed when the
# test script exits, whatever happens.
my %frozen_pids;
END { kill 'CONT', $_ for keys %frozen_pids; }

sub freeze_pid
{
	my ($pid) = @_;
	$frozen_pids{$pid} = 1;
	kill('STOP', $pid) or croak "kill STOP $pid: $!";
	return;
}

sub thaw_pid
{
	my ($pid) = @_;
	kill('CONT', $pid);
	delete $frozen_pids{$pid};
	return;
}

package AtomixTest::Session;

# A psql process kept open on a node: send() statements, then result() waits
# for everything sent so far and returns (stdout, stderr) of it.

use strict;
use warnings;

use Carp;
use IPC::Run;
use Time::HiRes qw(time);

sub new
{
	my ($class, $node, %opts) = @_;
	my $self = bless {
		stdin => '',
		stdout => '',
		stderr => '',
		count => 0,
		node => $node,
	}, $class;
	local %ENV = $node->_get_env();
	$self->{timer} = IPC::Run::timer(60);
	$self->{run} = IPC::Run::start(
		[
			$node->installed_command('psql'), '-XAtq', '-v', 'VERBOSITY=verbose',
			'-d', $node->connstr($opts{dbname} // 'postgres')
		],
		'<', \$self->{stdin},
		'>', \$self->{stdout},
		'2>', \$self->{stderr},
		$self->{timer});
	my ($out, $err) = $self->query('SELECT pg_backend_pid()', 30);
	croak "session did not start: $err" unless $out =~ /^(\d+)$/;
	$self->{pid} = $1;
	return $self;
}

sub pid { return $_[0]->{pid}; }
sub ended { return $_[0]->{ended}; }

# Sends SQL (a complete statement, ';' added) without waiting.  (Not while a
# poll() is pending: its result would come before this statement ran.)
sub send
{
	my ($self, $sql) = @_;
	croak "psql session has ended (stderr: $self->{stderr})" if $self->{ended};
	$self->{stdin} .= "$sql;\n";
	$self->{run}->pump_nb;
	return;
}

# Waits up to TIMEOUT seconds (default 30) for everything sent so far to
# finish.  Returns (stdout, stderr) produced since the last result(), or
# dies on timeout.  In scalar context returns stdout.  If psql exits
# meanwhile (connection lost), returns what it printed and ended() is true.
sub result
{
	my ($self, $timeout) = @_;
	$timeout //= 30;
	my $banner = $self->_mark;
	$self->{timer}->start($timeout);
	while (!$self->_done($banner))
	{
		croak "psql session on " . $self->{node}->name . " timed out after ${timeout}s "
		  . "(stdout: $self->{stdout}; stderr: $self->{stderr})"
		  if $self->{timer}->is_expired;
		if (!$self->{run}->pumpable)
		{
			# psql exited (e.g. the connection was lost): hand back what it said
			eval { $self->{run}->finish; };
			$self->{ended} = 1;
			last;
		}
		eval { $self->{run}->pump; };
		if ($@)
		{
			die $@ unless $@ =~ /timer expired|IPC::Run: timeout/;
		}
	}
	return $self->_take;
}

# Non-blocking result(): when everything sent so far has finished, returns
# (stdout, stderr) as result() does; otherwise an empty list.  Lets a test
# keep other work going (pump_load) while a statement waits.
sub poll
{
	my ($self) = @_;
	my $banner = $self->_mark;
	if ($self->{run}->pumpable)
	{
		$self->{timer}->start(600);    # a timer left running by result() must not fire
		eval { $self->{run}->pump_nb; };
	}
	else
	{
		eval { $self->{run}->finish; };
		$self->{ended} = 1;
		return $self->_take;
	}
	return () unless $self->_done($banner);
	return $self->_take;
}

# Both banner lines arrived, newline included: psql's \warn writes the text
# and its newline separately, and a newline left behind would show up as
# stderr of the next result.
sub _done
{
	my ($self, $banner) = @_;
	return $self->{stdout} =~ /^$banner\n/m && $self->{stderr} =~ /^$banner\n/m;
}

# The banner that marks the end of what was sent so far (queued once).
sub _mark
{
	my ($self) = @_;
	return $self->{banner} if $self->{banner};
	my $n = ++$self->{count};
	$self->{banner} = "atomix-session-done-$n";
	$self->{stdin} .= "\\echo $self->{banner}\n\\warn $self->{banner}\n";
	return $self->{banner};
}

# Hands back (and forgets) the output up to the banner.
sub _take
{
	my ($self) = @_;
	my $banner = delete $self->{banner};
	my $out = $self->{stdout};
	my $err = $self->{stderr};
	$out =~ s/^$banner\n//m;
	$err =~ s/^$banner\n//m;
	chomp $out;
	$self->{stdout} = '';
	$self->{stderr} = '';
	return wantarray ? ($out, $err) : $out;
}

# send + result.
sub query
{
	my ($self, $sql, $timeout) = @_;
	$self->send($sql);
	return $self->result($timeout);
}

# query, dying on any ERROR.
sub query_safe
{
	my ($self, $sql, $timeout) = @_;
	my ($out, $err) = $self->query($sql, $timeout);
	croak "query failed: $sql: $err" if $err =~ /ERROR|FATAL/;
	return $out;
}

# Waits until at least WANT notifications (see LISTEN) arrived on this
# session, or TIMEOUT s (default 10) passed, polling with a trivial query
# every 50 ms; returns them (parse_notifications' records), in order.
sub notifications
{
	my ($self, $want, $timeout) = @_;
	$timeout //= 10;
	my $deadline = time + $timeout;
	my @n;
	while (1)
	{
		my ($out, $err) = $self->query('SELECT 1', 30);
		push @n, AtomixTest::parse_notifications($out);
		last if @n >= $want || time > $deadline || $self->{ended};
		Time::HiRes::usleep(50_000);
	}
	return @n;
}

sub quit
{
	my ($self) = @_;
	return if $self->{ended};
	$self->{stdin} .= "\\q\n";
	$self->{timer}->start(30);
	eval { $self->{run}->finish; };
	if ($@)
	{
		eval { $self->{run}->kill_kill; };
	}
	return;
}

1;
