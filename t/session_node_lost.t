# Dead workers leave nothing live: two nginx nodes share one database; a
# worker killed with SIGKILL has the rows of its live sessions ended as
# node_lost by the fleet within segura_node_lost_timeout (+ one heartbeat
# interval), while the sessions of living workers, idle or not, and of a
# worker exiting gracefully stay live; a failing heartbeat is logged once
# per outage and comes back by itself; at the SQL level the reaper is
# idempotent, never touches an ended row, and never double-ends a row when
# several workers run it at once.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time);
use SeguraTest;
use SeguraTest::Pg;
use SeguraTest::Session;
use SeguraTest::WS;

my $WINDOW = 3;                  # segura_node_lost_timeout, seconds
my $INTERVAL = $WINDOW / 3;      # the heartbeat interval

my $http = "segura_node_lost_timeout ${WINDOW}s;\n"
           . SeguraTest::Session::config();

# node A: its own database and sshd; node B: the same database and key
my $na = SeguraTest->new(sshd => 1);
$na->run($http);
my $db = $na->db;
my $dbh = $db->dbh;

my $nb = SeguraTest->new(no_db => 1);
my $conninfo = $db->conninfo;
my $key_file = $na->master_key_file;
$nb->run(<<"EOF" . $http, no_defaults => 1);
    segura_database    "$conninfo";
    segura_master_key  $key_file;
    segura_thread_pool segura;
EOF

sub worker_row {
    my ($pid) = @_;
    return $dbh->selectrow_hashref(
        'select id, node, pid, started_at, heartbeat_at, lost_after
           from segura_workers where pid = ?', undef, $pid);
}

sub session_row {
    my ($id) = @_;
    # the start row is written through the outbox, a moment after the
    # connected event: wait for it
    return SeguraTest::wait_for(sub {
        $dbh->selectrow_hashref(
            'select worker_id, started_at, ended_at, end_reason
               from ssh_sessions where id = ?', undef, $id) }, 10) || {};
}

# a session that is open and echoing, with its audit row
sub live { SeguraTest::Session::live(@_, db => $db) }

sub still_alive {
    my ($ws, $what) = @_;
    my $mark = 'still-' . int(rand(1e9));
    $ws->send_binary("echo $mark\n");
    ok($ws->wait_for(sub { $ws->output =~ /\Q$mark\E\r?\n/ }, 10),
       "$what: still echoes");
}

my ($wa) = $na->workers;
my ($wb) = $nb->workers;
ok(SeguraTest::wait_for(sub { worker_row($wa) && worker_row($wb) }, 10,
                        'both workers registered'),
   'each worker has a row in segura_workers');
my $ra = worker_row($wa);
my $rb = worker_row($wb);
like($ra->{id}, qr/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
     'a worker id is a lower-case UUID v4');
isnt($ra->{id}, $rb->{id}, 'each worker has its own id');
is($ra->{lost_after}, '00:00:03', 'the row carries the worker\'s window');
ok(length $ra->{node}, 'and the node\'s host name');

my $t0 = $dbh->selectrow_array('select heartbeat_at from segura_workers where pid = ?',
                               undef, $wa);
ok(SeguraTest::wait_for(sub {
    $dbh->selectrow_array('select heartbeat_at > ? from segura_workers where pid = ?',
                          undef, $t0, $wa)
}, 5 * $INTERVAL, 'a heartbeat'), 'the heartbeat comes every interval');

# --- two sessions on A's worker, one on B's -------------------------------

my $f = SeguraTest::Session::fixture($na);
my ($ws1, $s1) = live($na, $f, 'a1');
my ($ws2, $s2) = live($na, $f, 'a2');
my ($ws3, $s3) = live($nb, $f, 'b1');

is(session_row($s1)->{worker_id}, $ra->{id}, 'the audit row names the worker (A)');
is(session_row($s2)->{worker_id}, $ra->{id}, 'the audit row names the worker (A, 2)');
is(session_row($s3)->{worker_id}, $rb->{id}, 'the audit row names the worker (B)');

# living workers, idle sessions: every worker heartbeats (and so reaps) at
# least once after the sessions are older than the window + one interval
my $margin = $WINDOW + $INTERVAL;
ok(SeguraTest::wait_for(sub {
    $dbh->selectrow_array(q{
        select min(w.heartbeat_at) > max(s.started_at) + make_interval(secs => ?)
          from segura_workers w, ssh_sessions s
         where s.id in (?, ?, ?)}, undef, $margin, $s1, $s2, $s3)
}, 4 * $WINDOW, 'heartbeats past the window'), 'idle past the window');
is(scalar $dbh->selectrow_array(
       'select count(*) from ssh_sessions where ended_at is null and id in (?, ?, ?)',
       undef, $s1, $s2, $s3), 3,
   'sessions of living workers are never ended, idle as they are');
still_alive($ws1, 'a1 after the window');

# --- kill -9 the worker of A -------------------------------------------------

my $killed_at = $dbh->selectrow_array('select clock_timestamp()');
my $t_kill = time;
ok(kill('KILL', $wa), "kill -9 worker $wa of node A");
ok($ws1->wait_eof(10) && $ws2->wait_eof(10),
   'the killed worker\'s clients lose their connections');

my $ended = SeguraTest::wait_for(sub {
    $dbh->selectrow_array(q{select count(*) = 2 from ssh_sessions
                             where id in (?, ?) and ended_at is not null},
                          undef, $s1, $s2)
}, 4 * $WINDOW, 'the rows of the dead worker ended');
my $latency = time - $t_kill;
ok($ended, sprintf('the rows of the dead worker are ended (%.1f s after the kill)',
                   $latency));
cmp_ok($latency, '<=', $WINDOW + $INTERVAL + 1.5,
       'within the window and one interval (+ polling)');

for my $s ($s1, $s2) {
    my $r = session_row($s);
    is($r->{end_reason}, 'node_lost', "$s: end_reason node_lost");
    ok($dbh->selectrow_array(q{
        select ?::timestamptz <= ?::timestamptz
           and ?::timestamptz > ?::timestamptz - make_interval(secs => ?)},
        undef, $r->{ended_at}, $killed_at, $r->{ended_at}, $killed_at,
        $INTERVAL + 1.5),
       "$s: ended at the dead worker's last heartbeat, before the kill");
}

my $r3 = session_row($s3);
ok(!defined $r3->{ended_at}, 'the session on the living node is untouched');
still_alive($ws3, 'b1 after the kill');

ok(SeguraTest::wait_for(sub {
    !$dbh->selectrow_array('select 1 from segura_workers where id = ?', undef, $ra->{id})
}, 4 * $WINDOW, 'the dead worker forgotten'), 'the dead worker\'s row is deleted');

# the master respawned a worker: a new id, never the dead one's
my $wa2;
ok(SeguraTest::wait_for(sub { ($wa2) = grep { $_ != $wa } $na->workers; $wa2 }, 10,
                        'a new worker'), 'the master respawns a worker');
ok(SeguraTest::wait_for(sub { worker_row($wa2) }, 10, 'its row'),
   'the new worker registers');
my $ra2 = worker_row($wa2);
isnt($ra2->{id}, $ra->{id}, 'with an id of its own');

my ($ws4, $s4) = live($na, $f, 'a3');
is(session_row($s4)->{worker_id}, $ra2->{id}, 'its sessions carry the new id');

# exactly one reaper ended the two rows, once
my $logs = SeguraTest::slurp($na->error_log) . SeguraTest::slurp($nb->error_log);
my @lines = $logs =~ /segura fleet: ended (\d+) live sessions of lost workers as node_lost: [^\n]*pid $wa \(worker $ra->{id}\)/g;
is(scalar(@lines), 1, 'one worker logs the end of the dead worker\'s sessions');
is($lines[0], 2, 'both of them');
is(scalar $dbh->selectrow_array(q{select count(*) from ssh_sessions
                                  where end_reason = 'node_lost'}), 2,
   'nothing else is ended as node_lost');

# --- a graceful exit keeps the heartbeat while sessions live -------------

my $reload_at = $dbh->selectrow_array('select clock_timestamp()');
$nb->reload;
ok(SeguraTest::wait_for(sub {
    SeguraTest::slurp($nb->error_log) =~ /\b$wb#\d+: gracefully shutting down/
}, 20), 'reload: the old worker of B is shutting down');
ok(SeguraTest::wait_for(sub {
    $dbh->selectrow_array(q{select heartbeat_at > ?::timestamptz + make_interval(secs => ?)
                              from segura_workers where id = ?},
                          undef, $reload_at, $margin, $rb->{id})
}, 4 * $WINDOW, 'the old worker heartbeats'),
   'reload: the exiting worker heartbeats past the window');
ok(!defined session_row($s3)->{ended_at}, 'reload: its live session is not ended');
still_alive($ws3, 'b1 after the reload');

$ws3->send_binary("exit\n");
is($ws3->wait_close(10), 1000, 'reload: the session ends');
ok(SeguraTest::wait_for(sub { !kill(0, $wb) || `ps -o stat= -p $wb` =~ /Z/ }, 10),
   'reload: then the old worker exits');
ok(SeguraTest::wait_for(sub {
    !$dbh->selectrow_array('select 1 from segura_workers where id = ?', undef, $rb->{id})
}, 4 * $WINDOW), 'reload: its row is gone');
is(session_row($s3)->{end_reason}, 'exit', 'reload: the session ended as itself');

$ws4->send_binary("exit\n");
is($ws4->wait_close(10), 1000, 'the session on the new worker ends');

# --- a failing heartbeat is logged once, and comes back ------------------

my ($wb2) = grep { $_ != $wb } $nb->workers;
ok(SeguraTest::wait_for(sub { worker_row($wb2) }, 10), 'the new worker of B registered');
my @ids = ($ra2->{id}, worker_row($wb2)->{id});
my ($ws5, $s5) = live($nb, $f, 'b2');

# longer than the window: every worker misses beats, none may be taken for
# dead when the database answers again

$dbh->do($_) for
    q{alter function segura_worker_heartbeat(uuid, text, integer, interval)
          rename to segura_worker_heartbeat_away},
    q{create sequence t_heartbeat_attempts},
    q{create function segura_worker_heartbeat(uuid, text, integer, interval)
      returns table (lost_worker uuid, lost_node text, lost_pid integer,
                     ended integer)
      language plpgsql as $$
      begin
          perform nextval('t_heartbeat_attempts');
          raise exception 'the test refuses the heartbeat';
      end; $$};
ok(SeguraTest::wait_for(sub {
    $dbh->selectrow_array(q{select last_value >= ? from t_heartbeat_attempts},
                          undef, 2 * ($WINDOW + $INTERVAL) / ($INTERVAL / 3))
}, 10 * $WINDOW, 'failed heartbeats'),
   'the heartbeats fail and are retried, for longer than the window');
my $back_at = $dbh->selectrow_array('select clock_timestamp()');
$dbh->do($_) for
    q{drop function segura_worker_heartbeat(uuid, text, integer, interval)},
    q{alter function segura_worker_heartbeat_away(uuid, text, integer, interval)
          rename to segura_worker_heartbeat};

for my $id (@ids) {
    ok(SeguraTest::wait_for(sub {
        ($logs = SeguraTest::slurp($na->error_log) . SeguraTest::slurp($nb->error_log))
            =~ /\[notice\].*segura fleet: heartbeat of worker \Q$id\E is back/
    }, 10), "$id: the heartbeat is back, and says so");
    my @e = $logs =~ /^(.*\[error\].*segura fleet: heartbeat of worker \Q$id\E failed, retrying: .*the test refuses the heartbeat.*)$/mg;
    is(scalar @e, 1, "$id: the failure is logged once");
}
ok(SeguraTest::wait_for(sub {
    $dbh->selectrow_array(q{
        select count(*) = 2
               and min(heartbeat_at) > ?::timestamptz + make_interval(secs => ?)
          from segura_workers where id in (?, ?)}, undef, $back_at, $margin, @ids)
}, 4 * $WINDOW, 'heartbeats after the outage'), 'both workers heartbeat again');
ok(!defined session_row($s5)->{ended_at},
   'a live session is not taken for lost after the outage');
is(scalar $dbh->selectrow_array(q{select count(*) from ssh_sessions
                                  where end_reason = 'node_lost'}), 2,
   'nothing is ended as node_lost after the outage');
still_alive($ws5, 'b2 after the outage');
$ws5->send_binary("exit\n");
is($ws5->wait_close(10), 1000, 'b2 ends');

# --- the reaper at the SQL level -------------------------------------------

{
    my $sdb = SeguraTest::Pg->new_database;
    my $h = $sdb->dbh;
    my $live = '11111111-1111-4111-8111-111111111111';
    my $dead = '22222222-2222-4222-8222-222222222222';
    my $gone = '33333333-3333-4333-8333-333333333333';
    my $other = '55555555-5555-4555-8555-555555555555';

    sub beat {
        my ($h, $id, $pid) = @_;
        return $h->selectall_arrayref(
            q{select lost_worker, lost_pid, ended
                from segura_worker_heartbeat(?, 'sql', ?, interval '3 s')},
            undef, $id, $pid);
    }

    sub sessions {
        my ($h) = @_;
        return $h->selectall_arrayref(
            q{select id, worker_id, ended_at, end_reason, started_at
                from ssh_sessions order by id});
    }

    sub add_session {
        my ($sdb, $worker, %o) = @_;
        return $sdb->insert_ssh_session(username => 'u', key_name => 'k',
                                        device_name => 'd', device_address => 'a',
                                        device_port => 22, worker_id => $worker, %o);
    }

    is_deeply(beat($h, $live, 100), [], 'a first heartbeat ends nothing');
    is_deeply(beat($h, $dead, 200), [], 'another worker');
    is_deeply(beat($h, $other, 500), [], 'a third one');
    $h->do(q{update segura_workers set up_since = now() - interval '1 minute'});

    my $old = q{now() - interval '1 minute'};
    my $x1 = add_session($sdb, $dead);
    my $x2 = add_session($sdb, $dead);
    my $done = add_session($sdb, $dead);
    $h->do(qq{update ssh_sessions set started_at = $old});
    $h->do(q{update ssh_sessions set ended_at = now() - interval '30 s',
                                     end_reason = 'exit' where id = ?}, undef, $done);
    my $orphan = add_session($sdb, $gone);
    my $fresh_orphan = add_session($sdb, $gone);
    my $nobody = add_session($sdb, undef);
    $h->do(qq{update ssh_sessions set started_at = $old where id in (?, ?)},
           undef, $orphan, $nobody);
    my $mine = add_session($sdb, $live);

    # the dead worker's last heartbeat, 10 s ago: beyond its window
    $h->do(q{update segura_workers set heartbeat_at = now() - interval '10 s'
              where id = ?}, undef, $dead);
    my $last = $h->selectrow_array('select heartbeat_at from segura_workers where id = ?',
                                   undef, $dead);

    # a reaper that missed a beat itself vouches for nobody yet
    $h->do(q{update segura_workers set heartbeat_at = now() - interval '2 s'
              where id = ?}, undef, $live);
    my $before = sessions($h);
    is_deeply(beat($h, $live, 100), [],
              'a worker that missed a beat ends nothing (a database outage silences all)');
    is_deeply(sessions($h), $before, 'no row changed');
    $h->do(q{update segura_workers set up_since = now() - interval '1 minute'
              where id = ?}, undef, $live);
    $h->do(q{update segura_workers set heartbeat_at = now() where id = ?},
           undef, $other);

    # two reapers at once: the first holds the dead worker's row, the second
    # skips it and waits for nothing
    my $h2 = $sdb->new_dbh;
    $h2->begin_work;
    is_deeply(beat($h2, $live, 100), [[$dead, 200, 2], [undef, undef, 1]],
              'the first reaper ends the dead worker\'s 2 live rows and the orphan');
    my $t = time;
    is_deeply(beat($h, $other, 500), [], 'a concurrent reaper ends nothing');
    cmp_ok(time - $t, '<', 2, 'and does not wait');
    $h2->commit;

    my %r = map { $_->[0] => $_ } @{ sessions($h) };
    for my $x ($x1, $x2) {
        is($r{$x}[3], 'node_lost', "$x: node_lost");
        is($r{$x}[2], $last, "$x: ended at the last heartbeat");
    }
    is($r{$orphan}[3], 'node_lost', 'an old row whose worker has no row: node_lost');
    is($r{$orphan}[2], $r{$orphan}[4], 'ended at its start');
    is($r{$done}[3], 'exit', 'a row already ended is never touched');
    ok(!defined $r{$fresh_orphan}[2], 'a young row whose worker has no row yet stays live');
    ok(!defined $r{$nobody}[2], 'a row without a worker (before 014) stays live');
    ok(!defined $r{$mine}[2], 'the reaper\'s own row stays live');
    is(scalar $h->selectrow_array('select count(*) from segura_workers where id = ?',
                                  undef, $dead), 0,
       'the dead worker, with nothing live left, is forgotten');

    $before = sessions($h);
    is_deeply(beat($h, $live, 100), [], 'the reaper a second time: nothing more');
    is_deeply(sessions($h), $before, 'no row changed the second time');

    # a restarted node: new workers, new ids; the old rows are ended once
    is_deeply(beat($h, '44444444-4444-4444-8444-444444444444', 300), [],
              'a restarted node ends nothing that is already ended');
    is_deeply(sessions($h), $before, 'and changes nothing');

    # a goodbye deletes the row only with nothing live left
    $h->do(q{update segura_workers set heartbeat_at = now() - interval '1 s'
              where id = ?}, undef, $live);
    ok(!$h->selectrow_array('select segura_worker_goodbye(?)', undef, $live),
       'goodbye with a live row: the row stays');
    ok($h->selectrow_array(q{select heartbeat_at > now() - interval '0.5 s' from segura_workers
                              where id = ?}, undef, $live),
       'and is stamped: the closing worker is alive');
    $h->do(q{update ssh_sessions set ended_at = now(), end_reason = 'exit'
              where id = ?}, undef, $mine);
    ok($h->selectrow_array('select segura_worker_goodbye(?)', undef, $live),
       'goodbye with nothing live: the row goes');

    for my $bad ([q{insert into segura_workers (id, node, pid) values (gen_random_uuid(), null, 1)},
                  'a worker without a node'],
                 [q{insert into segura_workers (id, node, pid) values (gen_random_uuid(), repeat('n', 257), 1)},
                  'a node name of 257 characters'],
                 [q{insert into segura_workers (id, node, pid, lost_after) values (gen_random_uuid(), 'n', 1, '0 s')},
                  'a window of 0']) {
        local $h->{PrintError} = 0;
        ok(!eval { $h->do($bad->[0]); 1 }, "$bad->[1]: rejected");
    }
    $h2->disconnect;
}

# the master's alert about the worker this test killed is expected: check
# it, and leave the harness's checks everything else
$na->stop;
my $log = SeguraTest::slurp($na->error_log);
my @killed = $log =~ /^(.*\[alert\].*worker process $wa exited on signal 9.*)$/mg;
is(scalar @killed, 1, 'the master reports the killed worker');
$log =~ s/^.*\[alert\].*worker process $wa exited on signal 9.*\n//mg;
open my $fh, '>', $na->error_log or die $!;
print $fh $log;
close $fh;

$logs = SeguraTest::slurp($na->error_log) . SeguraTest::slurp($nb->error_log);
$logs =~ s/^.*\[error\].*segura fleet: heartbeat of worker .* the test refuses the heartbeat.*\n//mg;
unlike($logs, qr/\[error\]/, 'no other [error] in either log');

SeguraTest::done();
