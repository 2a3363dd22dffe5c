# POST /api/keys/{id}/check against devices that are not OpenSSH: silent
# devices end as timeout, at most 16 at a time, each within its own
# segura_connect_timeout; a libssh server that accepts the key is deployed
# and never sees a channel open.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time);
use SeguraTest;
use SeguraTest::Api;
use SeguraTest::Device;
use SeguraTest::Session;

my $TIMEOUT = 1;    # segura_connect_timeout, in seconds

my $t = SeguraTest->new(sshd => 1);
$t->run(SeguraTest::Session::config("segura_connect_timeout ${TIMEOUT}s;"));

my $db = $t->db;
my $sshd = $t->sshd;
SeguraTest::Api::add_user($db, 'root', 'root-password-1', admin => 1);
my $api = SeguraTest::Api->new($t);
is($api->login('root', 'root-password-1')->code, 200, 'admin logs in');

my ($path) = $sshd->keygen('slow', type => 'ed25519');
my $key = SeguraTest::Session::register_key($t, $path);

# a libssh server that takes any key, then never answers a channel open
my $auth = SeguraTest::Device->stall($t, 'auth');
my $adev = $db->insert_device(name => 'libssh', port => $auth->port,
                              host_key => $auth->host_key->{line},
                              host_key_fingerprint => $auth->host_key->{fp});
$db->associate(key => $key, device => $adev, main => 1);

my $res = $api->post("/api/keys/$key/check", {});
is($res->code, 200, 'libssh device: 200') or diag($res->body);
is($res->json->{items}[0]{result}, 'deployed', 'libssh device: deployed');
is($auth->count('accepted'), 1, 'libssh device: one connection');
ok(SeguraTest::wait_for(sub { $auth->count('closed') == 1 }, 10),
   'libssh device: closed by the check');
is($auth->count('stalled'), 0, 'libssh device: no channel was asked for');

# twenty devices that send a banner and then nothing
my $silent = SeguraTest::Device->stall($t, 'banner');
my @devs = map {
    $db->insert_device(name => "silent-$_", port => $silent->port,
                       host_key => $silent->host_key->{line},
                       host_key_fingerprint => $silent->host_key->{fp})
} 1 .. 20;
$db->associate(key => $key, device => $_) for @devs;

my $t0 = time;
$res = $api->post("/api/keys/$key/check", { devices => \@devs });
my $elapsed = time - $t0;
is($res->code, 200, 'silent devices: 200') or diag($res->body);
my @r = map { $_->{result} } @{ $res->json->{items} || [] };
is(scalar @r, 20, 'twenty results');
is(scalar(grep { $_ eq 'timeout' } @r), 20, 'all twenty: timeout')
    or diag(explain \@r);
note(sprintf 'twenty silent devices checked in %.3f s (timeout %d s)',
     $elapsed, $TIMEOUT);
# at most 16 at a time: the last four start when the first ones end, so
# two deadlines pass one after the other (a lower bound: timers are never
# early)
ok($elapsed >= 2 * $TIMEOUT, 'checked 16 at a time, not all at once');
is($silent->count('accepted'), 20, 'the device saw twenty connections');
ok(SeguraTest::wait_for(sub { $silent->open_connections == 0 }, 10),
   'every connection was closed');

my ($detail) = $db->dbh->selectrow_array(q{
    select detail from key_checks where key_id = ? and device_id = ?},
    undef, $key, $devs[0]);
like($detail, qr/timed out/, 'the stored detail says it timed out');

unlike(SeguraTest::slurp($t->error_log), qr/\[error\]/, 'no [error] in the log');

SeguraTest::done();
