# nginx -s reload and -s quit leave live sessions on the old worker until
# they end, or until worker_shutdown_timeout, which closes them with 1001.
use strict;
use warnings;
use Test::More;
use SeguraTest;
use SeguraTest::Session;
use SeguraTest::WS;

my $t = SeguraTest->new(sshd => 1);
$t->run(SeguraTest::Session::config(), main => "thread_pool segura threads=4;\nworker_shutdown_timeout 15s;\n");
my $dbh = $t->db->dbh;

my $f = SeguraTest::Session::fixture($t);

my ($old) = $t->workers;
my $ws = SeguraTest::Session::open_ws($t, $f);
ok($ws->wait_event('connected', 20), 'a live session');
my $sid = $ws->event('connected')->{session};
$ws->send_binary("echo ready-\$((3*7))\n");
ok($ws->wait_for(sub { $ws->output =~ /ready-21/ }, 20), 'its shell answers');

$t->reload;
ok(SeguraTest::wait_for(sub {
    SeguraTest::slurp($t->error_log) =~ /\b$old#\d+: gracefully shutting down/
}, 20), 'reload: the old worker is shutting down');

$ws->send_binary("echo after-reload-\$((2*21))\n");
ok($ws->wait_for(sub { $ws->output =~ /after-reload-42/ }, 10),
   'reload: the live session goes on on the old worker');
ok(kill(0, $old), 'reload: the old worker is still there');
ok(SeguraTest::wait_for(sub { my @w = $t->workers; grep { $_ != $old } @w }, 20),
   'reload: a new worker runs');

my $ws2 = SeguraTest::Session::open_ws($t, $f);
ok($ws2->wait_event('connected', 20), 'reload: the new worker opens sessions');
$ws2->send_binary("exit\n");
is($ws2->wait_close(20), 1000, 'reload: and closes them');

# worker_shutdown_timeout: the old worker closes the live one with 1001
is($ws->wait_close(25), 1001, 'shutdown timeout: close code 1001');
ok($ws->wait_eof(10), 'shutdown timeout: the connection is closed');
ok(SeguraTest::wait_for(sub { !kill(0, $old) || `ps -o stat= -p $old` =~ /Z/ }, 20),
   'shutdown timeout: the old worker exits');
ok(SeguraTest::wait_for(sub {
    $dbh->selectrow_array(q{select end_reason from ssh_sessions where id = ? and ended_at is not null}, undef, $sid)
}, 15), 'shutdown timeout: the audit row is completed');
is($dbh->selectrow_array('select end_reason from ssh_sessions where id = ?', undef, $sid),
   'shutdown', 'shutdown timeout: ended by the shutdown');

SeguraTest::done();
