# A session still in its device set-up honours the worker's shutdown:
# after a reload with worker_shutdown_timeout 2s, a set-up stalled in the
# key exchange (connect timeout 60 s) is closed with 1001 when the
# shutdown timeout fires, not a minute later, and the old worker exits.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time);
use SeguraTest;
use SeguraTest::Device;
use SeguraTest::Session;
use SeguraTest::WS;

my $t = SeguraTest->new(sshd => 1);
$t->run(SeguraTest::Session::config('segura_connect_timeout 60s;'),
        main => "thread_pool segura threads=4;\nworker_shutdown_timeout 2s;\n");

my $d = SeguraTest::Device->stall($t, 'banner');
my $f = SeguraTest::Session::fixture($t, port => $d->port, host_key => $d->host_key);

my ($old) = $t->workers;
my $ws = SeguraTest::Session::open_ws($t, $f);
is($ws->{status}, 101, 'the upgrade is accepted');
ok(SeguraTest::wait_for(sub { $d->count('stalled') >= 1 }, 10),
   'the set-up hangs in the key exchange');

my $t0 = time;
$t->reload;
ok(SeguraTest::wait_for(sub {
    SeguraTest::slurp($t->error_log) =~ /\b$old#\d+: gracefully shutting down/
}, 20), 'reload: the old worker is shutting down');

is($ws->wait_close(10), 1001, 'the set-up ends with 1001 going away');
my $took = time - $t0;
ok($took < 8, sprintf('when the shutdown timeout fires (%.1f s after the reload)', $took));
ok(!$ws->event('connected'), 'it never connected');
ok(SeguraTest::wait_for(sub { !kill(0, $old) }, 10), 'the old worker exits');

# the new worker still sets up sessions
my $g = SeguraTest::Session::fixture($t);
my $ws2 = SeguraTest::Session::open_ws($t, $g);
ok($ws2->wait_event('connected', 20), 'the new worker opens sessions');
$ws2->send_binary("exit\n");
is($ws2->wait_close(20), 1000, 'and closes them');

SeguraTest::done();
