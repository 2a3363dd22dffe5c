# Timers of a session: the server pings a quiet client every
# segura_ping_interval, pongs keep nothing else alive, and a session
# without terminal traffic ends with idle_timeout.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time);
use SeguraTest;
use SeguraTest::Session;
use SeguraTest::WS;

my $t = SeguraTest->new(sshd => 1);
$t->run(SeguraTest::Session::config(
    'location = /timers { segura_ping_interval 300ms; segura_idle_timeout 2s; segura_session; }'));
my $dbh = $t->db->dbh;

my $f = SeguraTest::Session::fixture($t);
my $path = "/timers?key=$f->{key}&device=$f->{device}";

my $ws = SeguraTest::WS->connect($t->port, $path, Cookie => $f->{cookie});
ok($ws->wait_event('connected', 20), 'connected');

# terminal traffic keeps it alive past the idle timeout
my $t0 = time;
for my $i (1 .. 5) {
    $ws->send_binary("echo busy$i\n");
    $ws->wait_for(sub { $ws->output =~ /busy$i\r?\n/ }, 5);
    $ws->wait_for(sub { 0 }, 0.5);
}
ok(!defined $ws->{close_code}, sprintf('traffic keeps the session open (%.1f s)', time - $t0));
ok(($ws->{pings} // 0) >= 1, "the server pinged the client ($ws->{pings} pings)");

# then silence: pings and pongs go on, but idle_timeout ends it
my $e = $ws->wait_event('error', 10);
is($e && $e->{code}, 'idle_timeout', 'idle_timeout error event');
is($ws->wait_close(5), 4009, 'close code 4009');
ok($ws->wait_eof(10), 'the connection is closed');
ok(SeguraTest::wait_for(sub {
    $dbh->selectrow_array(q{select count(*) from ssh_sessions where end_reason = 'idle_timeout'})
}, 10), 'audit: ended by idle_timeout');

# a client that never answers pings is not closed for that alone
$ws = SeguraTest::WS->connect($t->port, $path, Cookie => $f->{cookie});
$ws->{no_pong} = 1;
ok($ws->wait_event('connected', 20), 'no-pong client connected');
$ws->wait_for(sub { ($ws->{pings} // 0) >= 2 }, 5);
ok(($ws->{pings} // 0) >= 2, 'pings continue while the client is silent');
$ws->close(1000);
is($ws->wait_close(5), 1000, 'closed by the client');

SeguraTest::done();
