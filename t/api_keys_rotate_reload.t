# A rotation in flight when nginx reloads: the old worker stays until the
# rotation is over, which then ends as it would have (the device that
# answers rotated, the silent one timed out), its answer reaches the
# client, and the new worker opens sessions with the new key.
use strict;
use warnings;
use Test::More;
use POSIX qw(:sys_wait_h);
use SeguraTest;
use SeguraTest::Api;
use SeguraTest::Device;
use SeguraTest::LoginUser;
use SeguraTest::Session;
use Mojo::JSON qw(decode_json);

plan skip_all => 'needs root (a throwaway login user)' unless $> == 0;

my $t = SeguraTest->new(sshd => 1);
my $TIMEOUT = 4;
$t->run(SeguraTest::Session::config("segura_connect_timeout ${TIMEOUT}s;"));

my $db = $t->db;
my $dbh = $db->dbh;
my $user = SeguraTest::LoginUser->new($t);

my $sa = SeguraTest::Sshd->new($t->dir . '/sshd-a', user_keys => 1,
                                password => 1);
END { $sa->stop if $sa }
my $silent = SeguraTest::Device->stall($t, 'banner');

SeguraTest::Api::add_user($db, 'root', 'root-password-1', admin => 1);
my $api = SeguraTest::Api->new($t);
is($api->login('root', 'root-password-1')->code, 200, 'admin logs in');

my $da = $db->insert_device(name => 'answers', port => $sa->port);
my $ds = $db->insert_device(name => 'silent', port => $silent->port);

my $res = $api->post('/api/keys/generate', {
    name => 'reloaded', username => $user->name, devices => [$da, $ds] });
my $key = $res->json->{id};
$res = $api->post("/api/keys/$key/deploy",
                  { devices => [$da], via => { password => $user->password } });
is($res->json->{items}[0]{result}, 'deployed', 'deployed on the device')
    or diag($res->body);

# the rotation, from a client of its own: the silent device holds it for
# segura_connect_timeout
my $out = $t->dir . '/rotate.answer';
my $pid = fork() // die "fork: $!";
if ($pid == 0) {
    # _exit: the test's END blocks (nginx, sshd, the login user) are the
    # parent's
    my $r = eval { $api->post("/api/keys/$key/rotate", {}) };
    if (open my $fh, '>', $out) {
        print $fh $r ? ($r->code . "\n" . $r->body) : "0\n$@";
        close $fh;
    }
    POSIX::_exit(0);
}

ok(SeguraTest::wait_for(sub {
    $dbh->selectrow_array(q{select count(*) from key_rotations
                            where key_id = ? and status = 'running'},
                          undef, $key)
}, 10), 'the rotation runs');

my ($old) = $t->workers;
$t->reload;
ok(SeguraTest::wait_for(sub {
    SeguraTest::slurp($t->error_log) =~ /\b$old#\d+: gracefully shutting down/
}, 20), 'the old worker is shutting down');

my $row;
ok(SeguraTest::wait_for(sub {
    $row = $dbh->selectrow_hashref(q{select * from key_rotations
        where key_id = ? and status <> 'running'}, undef, $key);
    $row
}, $TIMEOUT * 4 + 10), 'the rotation ended') or diag(SeguraTest::slurp($t->error_log));
is($row->{status}, 'partial', 'partial: one device timed out');
is($row->{to_version}, 2, 'switched to version 2');
my %r = map { $_->{device} => $_->{result} } @{ decode_json($row->{items}) };
is($r{$da}, 'rotated', 'the device that answers: rotated');
is($r{$ds}, 'timeout', 'the silent one: timeout');

ok(SeguraTest::wait_for(sub { waitpid($pid, WNOHANG) == $pid }, 20),
   'the client got its answer');
my ($code) = split /\n/, SeguraTest::slurp($out);
is($code, 200, 'the answer: 200');
like(SeguraTest::slurp($out), qr/"status"\s*:\s*"partial"/, 'the answer: partial');

ok(SeguraTest::wait_for(sub { !kill(0, $old) }, 20),
   'the old worker exits once the rotation is over');

# the new worker opens a session with the new key
my $web = $db->insert_user;
my $token = SeguraTest::Session::random_token();
$db->insert_web_session(user => $web, token => $token);
$db->grant(members => [$web], keys => [$key], devices => [$da]);
my ($ws) = SeguraTest::Session::live($t, { key => $key, device => $da,
    cookie => SeguraTest::Session::cookie_for($token) }, 'after the reload');
$ws->close if $ws;

$t->stop;
$t->log_checks;
done_testing;
