# A rotation while PostgreSQL is away: the database stops while the
# devices take the new line; the switch cannot be written, is tried again,
# and goes through once PostgreSQL is back; the rotation then ends as it
# would have (one device rotated, the silent one timed out), its answer
# reaches the client and sessions open with the new key.  Nothing it owes
# the database is lost.
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

my $t = SeguraTest->new(sshd => 1, private_pg => 1);
my $TIMEOUT = 3;
$t->run(SeguraTest::Session::config("segura_connect_timeout ${TIMEOUT}s;"));

my $db = $t->db;
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
    name => 'outage', username => $user->name, devices => [$da, $ds] });
my $key = $res->json->{id};
my $pub1 = $res->json->{public_key};
$res = $api->post("/api/keys/$key/deploy",
                  { devices => [$da], via => { password => $user->password } });
is($res->json->{items}[0]{result}, 'deployed', 'deployed on the device')
    or diag($res->body);

my $out = $t->dir . '/rotate.answer';
my $pid = fork() // die "fork: $!";
if ($pid == 0) {
    my $r = eval { $api->post("/api/keys/$key/rotate", {}) };
    if (open my $fh, '>', $out) {
        print $fh $r ? ($r->code . "\n" . $r->body) : "0\n$@";
        close $fh;
    }
    POSIX::_exit(0);
}

ok(SeguraTest::wait_for(sub {
    $db->dbh->selectrow_array(q{select count(*) from key_rotations
                                where key_id = ? and status = 'running'},
                              undef, $key)
}, 10), 'the rotation runs');

# away while the silent device holds the add
$t->pg->stop;
ok(!$t->pg->running, 'PostgreSQL is stopped');

ok(SeguraTest::wait_for(sub {
    SeguraTest::slurp($t->error_log) =~ /segura rotate: key $key: .*trying again/
}, $TIMEOUT + 30), 'the switch cannot be written: it is tried again')
    or diag(SeguraTest::slurp($t->error_log));

my $file = $user->home . '/.ssh/authorized_keys';
like(SeguraTest::slurp($file), qr/\Q$pub1\E/,
     'meanwhile the device still has the old key');

$t->pg->start;
ok($t->pg->running, 'PostgreSQL is back');

my $row;
ok(SeguraTest::wait_for(sub {
    $row = eval { $db->dbh->selectrow_hashref(q{select * from key_rotations
        where key_id = ? and status <> 'running'}, undef, $key) };
    $row
}, 60), 'the rotation ended') or diag(SeguraTest::slurp($t->error_log));
is($row->{status}, 'partial', 'partial: the silent device timed out');
is($row->{to_version}, 2, 'the switch went through: version 2');
my %r = map { $_->{device} => $_->{result} } @{ decode_json($row->{items}) };
is($r{$da}, 'rotated', 'the device that answers: rotated');
is($r{$ds}, 'timeout', 'the silent one: timeout');
unlike(SeguraTest::slurp($file), qr/\Q$pub1\E/,
       'the old key is gone from the device');

my ($audit) = $db->dbh->selectrow_array(q{select count(*) from audit_log
    where action = 'rotate' and object_id = ?}, undef, "$key");
is($audit, 1, 'one audit row');

ok(SeguraTest::wait_for(sub { waitpid($pid, WNOHANG) == $pid }, 30),
   'the client got its answer');
my ($code) = split /\n/, SeguraTest::slurp($out);
is($code, 200, 'the answer: 200') or diag(SeguraTest::slurp($out));

my $web = $db->insert_user;
my $token = SeguraTest::Session::random_token();
$db->insert_web_session(user => $web, token => $token);
$db->grant(members => [$web], keys => [$key], devices => [$da]);
my ($ws) = SeguraTest::Session::live($t, { key => $key, device => $da,
    cookie => SeguraTest::Session::cookie_for($token) }, 'the new key');
$ws->close if $ws;

$t->stop;
$t->log_checks;
done_testing;
