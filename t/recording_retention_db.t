# Retention while PostgreSQL is away: the failing runs are logged once,
# the worker goes on, and once the database is back the next run works,
# says so, and deletes what is due.
use strict;
use warnings;
use Test::More;
use SeguraTest;
use SeguraTest::Session;

my $t = SeguraTest->new(private_pg => 1);
$t->run("segura_recording_retention 2s;\n" . SeguraTest::Session::config());
my $log = $t->error_log;

sub log_count {
    my ($re) = @_;
    my @m = SeguraTest::slurp($log) =~ /$re/g;
    return scalar @m;
}

ok(SeguraTest::wait_for(sub {
    log_count(qr/segura retention: recordings are kept 2000 ms after their session ended, checked every 1000 ms/)
}, 10), 'the worker says how long recordings are kept and how often it looks');

$t->pg->stop;
ok(!$t->pg->running, 'PostgreSQL is stopped');
ok(SeguraTest::wait_for(sub {
    log_count(qr/\[error\].*segura retention: the run failed, retrying/)
        && log_count(qr/segura fleet: heartbeat of worker \S+ failed/)
}, 20), 'a failing run is logged (and the heartbeat fails too)');
# the heartbeat fails only every 10 s: by then about ten retention runs
# (one a second) have failed too
$t->pg->start;
ok($t->pg->running, 'PostgreSQL is back');

my $dbh = $t->db->dbh;
my ($id) = $dbh->selectrow_array(q{
    insert into ssh_sessions (username, key_name, device_name, device_address,
                              device_port, started_at, ended_at, end_reason)
    values ('planted', 'k', 'd', '127.0.0.1', 22, now() - interval '2 hours',
            now() - interval '1 hour', 'exit') returning id});
$dbh->do(q{insert into ssh_session_recordings (session_id, width, height, input,
                                               started_at, ended_at)
           select id, 80, 24, false, started_at, ended_at from ssh_sessions
            where id = ?}, undef, $id);
$dbh->do(q{insert into ssh_session_chunks (session_id, seq, t_first, t_last,
                                           plain_size, data)
           select ?, g, g, g, 1, '\x00' from generate_series(0, 2) g}, undef, $id);

ok(SeguraTest::wait_for(sub {
    $dbh->selectrow_array(q{select expired_at is not null
                              from ssh_session_recordings where session_id = ?},
                          undef, $id)
}, 30), 'once the database is back, the due recording expires');
is(scalar $dbh->selectrow_array(
       'select count(*) from ssh_session_chunks where session_id = ?', undef, $id),
   0, 'its chunks are deleted');
ok(SeguraTest::wait_for(sub { log_count(qr/segura retention: runs work again/) }, 10),
   'the log says runs work again');
is(log_count(qr/segura retention: the run failed, retrying/), 1,
   'the outage was logged once, however many runs failed');
is(scalar $dbh->selectrow_array(q{select count(*) from audit_log
                                  where action = 'recording_retention'
                                    and (detail->>'chunks')::int = 3}),
   1, 'the run is audited');

done_testing();
