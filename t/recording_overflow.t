# Recording when the database cannot keep up: PostgreSQL (the test's own
# cluster) stops for 10 s while a session prints random base64.  With
# segura_recording_overflow pause the session stops being read once the
# outbox passes its bound, resumes by itself once the database is back,
# and the recording is complete (SHA-256); with drop the session never
# stalls and the recording says where its gap is.
use strict;
use warnings;
use Test::More;
use Digest::SHA qw(sha256_hex);
use JSON::PP;
use Time::HiRes qw(time sleep);
use SeguraTest;
use SeguraTest::Api;
use SeguraTest::Session;
use SeguraTest::WS;

my $t = SeguraTest->new(sshd => 1, private_pg => 1);
$t->run(SeguraTest::Session::config(q{
        location = /session-drop { segura_session; segura_recording_overflow drop; }
}));
my $db = $t->db;

my $f = SeguraTest::Session::fixture($t);
SeguraTest::Api::add_user($db, 'auditor', 'auditor-password-1', admin => 1);
my $admin = SeguraTest::Api->new($t);
is($admin->login('auditor', 'auditor-password-1')->code, 200,
   'the administrator logs in');

sub ws_at {
    my ($path) = @_;
    return SeguraTest::WS->connect($t->port, "$path?key=$f->{key}"
                                   . "&device=$f->{device}",
                                   Cookie => $f->{cookie});
}

sub recording_row {
    my ($id) = @_;
    my $row;
    SeguraTest::wait_for(sub {
        $row = eval { $db->dbh->selectrow_hashref(q{select * from
            ssh_session_recordings where session_id = ?
            and ended_at is not null}, undef, $id) };
    }, 60);
    return $row;
}

# 16 MB of base64: more than the outbox's bound once compressed (0.75)
my $CMD = "head -c 12000000 /dev/urandom | base64; printf '\\104\\117\\116\\105\\n'\n";
my $DONE = qr/\r?\nDONE\r?\n/;

sub session {
    my ($path, $what) = @_;
    my $ws = ws_at($path);
    my $c = $ws->wait_event('connected', 20);
    ok($c, "$what: connected");
    $ws->send_binary("echo up\n");
    ok($ws->wait_for(sub { $ws->output =~ /\bup\r?\n/ }, 10), "$what: answers");
    # its rows are written before the database goes
    ok(SeguraTest::wait_for(sub {
        $db->dbh->selectrow_array(q{select count(*) from ssh_session_recordings
                                    where session_id = ?}, undef, $c->{session})
    }, 10), "$what: the recording's row is written");
    return ($ws, $c->{session});
}


# --- pause -------------------------------------------------------------------

my ($ws, $id) = session('/session', 'pause');
my $down = time;
$t->pg->stop;
ok(!$t->pg->running, 'pause: PostgreSQL is stopped');
$ws->send_binary($CMD);

# the client reads all along: only the recording may hold the session
sub read_until_log {
    my ($ws, $re, $secs) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) {
        $ws->wait_for(sub { 0 }, 0.3);
        return 1 if SeguraTest::slurp($t->error_log) =~ $re;
    }
    return 0;
}

ok(read_until_log($ws, qr/the device is not read until it catches up/, 60),
   'pause: the session pauses its device');
$ws->wait_for(sub { 0 }, 1);
my $at_pause = length $ws->output;
$ws->wait_for(sub { 0 }, 2);
is(length $ws->output, $at_pause, 'pause: no output while paused');
unlike($ws->output, $DONE, 'pause: the stream is not through');

sleep 0.2 while time - $down < 10;
$t->pg->start;
ok($t->pg->running, 'pause: PostgreSQL is back after 10 s');

ok($ws->wait_for(sub { $ws->output =~ $DONE }, 120),
   'pause: the session resumes by itself and the stream gets through');
like(SeguraTest::slurp($t->error_log), qr/the device is read again after \d+ ms/,
     'pause: the log says when it resumed');
$ws->send_binary("exit\n");
is($ws->wait_close(20), 1000, 'pause: the shell exits');
my $received = $ws->output;

my $row = recording_row($id);
ok($row, 'pause: the recording is complete in the database');
ok($row && !$row->{incomplete}, 'pause: not marked incomplete');
my $raw = $admin->get("/api/sessions/$id/recording?format=raw");
is($raw->code, 200, 'pause: the recording is served');
is(length $raw->body, length $received, 'pause: as many bytes as the client got');
is(sha256_hex($raw->body), sha256_hex($received),
   'pause: nothing went unrecorded (SHA-256)');


# --- drop --------------------------------------------------------------------

($ws, $id) = session('/session-drop', 'drop');
$down = time;
$t->pg->stop;
ok(!$t->pg->running, 'drop: PostgreSQL is stopped');
$ws->send_binary($CMD);
ok($ws->wait_for(sub { $ws->output =~ $DONE }, 60),
   'drop: the stream gets through while the database is down');
ok(time - $down < 60, sprintf('drop: in %.1f s, no stall', time - $down));
ok($t->pg->running == 0, 'drop: the database was down all along');
like(SeguraTest::slurp($t->error_log), qr/events are dropped/,
     'drop: the log says events are dropped');

sleep 0.2 while time - $down < 10;
$t->pg->start;
ok($t->pg->running, 'drop: PostgreSQL is back');

# something after the gap, recorded again
ok(SeguraTest::wait_for(sub { !$t->pg->running ? 0 : eval {
    $db->dbh->selectrow_array('select 1') } }, 20), 'drop: the database answers');
sleep 0.2 while time - $down < 12;
$ws->send_binary("echo after-gap\n");
ok($ws->wait_for(sub { $ws->output =~ /after-gap\r?\n/ }, 10), 'drop: the session goes on');
$ws->send_binary("exit\n");
is($ws->wait_close(20), 1000, 'drop: the shell exits');
$received = $ws->output;

$row = recording_row($id);
ok($row, 'drop: the recording is complete in the database');
ok($row && $row->{incomplete}, 'drop: marked incomplete');
my $gaps = $row ? decode_json($row->{gaps} // '[]') : [];
ok(@$gaps >= 1 && $gaps->[0][1] >= $gaps->[0][0], 'drop: with its gap')
    or diag(explain $gaps);

my $cast = $admin->get("/api/sessions/$id/recording");
is($cast->code, 200, 'drop: the recording is served');
my @ev = map { decode_json($_) } grep { /^\[/ } split /\n/, $cast->body;
my ($gap) = grep { $_->[1] eq 'm' && $_->[2] =~ /^recording gap: / } @ev;
ok($gap, 'drop: a marker says where the gap is') or diag(explain [grep { $_->[1] eq 'm' } @ev]);
$raw = $admin->get("/api/sessions/$id/recording?format=raw");
ok(length $raw->body < length $received, 'drop: less than the client got was recorded');
like($raw->body, qr/after-gap/, 'drop: what came after the gap is recorded');
# the index (for the Replay view's chapters) has the gap's marker and the row's gaps
my $index = $admin->get("/api/sessions/$id/recording?format=index")->json;
ok((grep { $_->[1] =~ /^recording gap: / } @{ $index->{markers} || [] }),
   'drop: the index has the gap marker') or diag(explain $index->{markers});
ok($index->{incomplete} && @{ $index->{gaps} || [] } >= 1, 'drop: the index says incomplete, with the gaps');

SeguraTest::done();
