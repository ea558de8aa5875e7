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
	my @bad = grep { /terminated by signal|PANIC|abnormal database system shutdown|exited with exit code [^01]|TRAP:/ }
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
# start_load(NODE, clients => 4, round => 'r1', pairs => 20000, dir => DIR)
# starts CLIENTS psql processes; client i runs, for j = 1..PAIRS,
#     SELECT 'c', j, atomix.counter_incr('c<i>');
#     SELECT 'm', j, atomix.map_put('m', 'k<i>-<round>-<j>', '<j>');
# with ON_ERROR_STOP off.  Every line a client prints is an acknowledged
# write.  pump_load keeps the pipes drained for a while; finish_load waits
# for the clients to exit (after the server went away) and parses what each
# acknowledged.
sub start_load
{
	my ($node, %o) = @_;
	my $clients = $o{clients} // 4;
	my $round = $o{round} // 'r1';
	my $pairs = $o{pairs} // 20000;
	my $dir = $o{dir} // PostgreSQL::Test::Utils::tempdir();
	my @c;
	local %ENV = $node->_get_env();
	for my $i (1 .. $clients)
	{
		my $file = "$dir/load-$round-$i.sql";
		open my $fh, '>', $file or die "$file: $!";
		for my $j (1 .. $pairs)
		{
			print $fh "SELECT 'c', $j, atomix.counter_incr('c$i');\n";
			print $fh "SELECT 'm', $j, atomix.map_put('m', 'k$i-$round-$j', '$j');\n";
		}
		close $fh;
		my %cl = (i => $i, round => $round, pairs => $pairs, out => '', err => '');
		$cl{run} = IPC::Run::start(
			[
				$node->installed_command('psql'), '-X', '-q', '-A', '-t',
				'-v', 'ON_ERROR_STOP=0', '-v', 'VERBOSITY=verbose',
				'-d', $node->connstr('postgres'), '-f', $file
			],
			'<', '/dev/null', '>', \$cl{out}, '2>', \$cl{err});
		push @c, \%cl;
	}
	return { clients => \@c, node => $node };
}

# Drains the clients' output for SECONDS; returns how many are still running.
sub pump_load
{
	my ($load, $seconds) = @_;
	my $deadline = time + $seconds;
	while (time < $deadline)
	{
		$_->{run}->pump_nb for grep { $_->{run}->pumpable } @{ $load->{clients} };
		usleep(20_000);
	}
	return scalar grep { $_->{run}->pumpable } @{ $load->{clients} };
}

# Waits (up to TIMEOUT s) for every client to exit and parses its output:
# returns a list of hashes, one per client:
#   i, round, counter => { j => value }, put => { j => version },
#   last_pos => position of the last acknowledged statement (0-based;
#               statement 2(j-1) is the j-th incr, 2(j-1)+1 the j-th put),
#   errors => number of ERROR lines, uncertain => [positions that may or
#   may not have been applied], out, err.
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
			usleep(20_000);
		}
		if ($cl->{run}->pumpable)
		{
			$cl->{run}->kill_kill;
			croak "load client $cl->{i} did not exit within ${timeout}s";
		}
		eval { $cl->{run}->finish; };
		my %r = (i => $cl->{i}, round => $cl->{round}, counter => {}, put => {},
			last_pos => -1, out => $cl->{out}, err => $cl->{err});
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
		my @gaps = grep { !$acked_pos{$_} } 0 .. $r{last_pos};
		my $tail = 1 + ($r{errors} > @gaps ? $r{errors} - @gaps : 0);
		$r{uncertain} = [ @gaps, map { $r{last_pos} + $_ } 1 .. $tail ];
		push @res, \%r;
	}
	return @res;
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

# Sends SQL (a complete statement, ';' added) without waiting.
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
	my $n = ++$self->{count};
	my $banner = "atomix-session-done-$n";
	$self->{stdin} .= "\\echo $banner\n\\warn $banner\n";
	$self->{timer}->start($timeout);
	while (!($self->{stdout} =~ /^$banner$/m && $self->{stderr} =~ /^$banner$/m))
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
