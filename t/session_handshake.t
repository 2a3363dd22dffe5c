# /session before the upgrade: every bad request, missing identity,
# foreign Origin and missing grant condition is answered with the HTTP
# status and JSON body of DESIGN.md, and no TCP connection reaches the
# device.
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time);
use SeguraTest;
use SeguraTest::Session;
use SeguraTest::WS;

my $t = SeguraTest->new(sshd => 1);
$t->run(SeguraTest::Session::config(
    'location = /delegated { set $u ""; if ($http_x_user) { set $u $http_x_user; } segura_user $u; segura_session; }'));
my $db = $t->db;
my $dbh = $db->dbh;
my $sshd = $t->sshd;

my $f = SeguraTest::Session::fixture($t);
my $port = $t->port;
my $q = "/session?key=$f->{key}&device=$f->{device}";

sub expect {
    my ($ws, $status, $code, $name, $reason) = @_;
    is($ws->{status}, $status, "$name: $status");
    is($ws->{json} && $ws->{json}{error}{code}, $code, "$name: code $code")
        or diag($ws->{body});
    is($ws->{json}{error}{reason}, $reason, "$name: reason $reason") if $reason;
}

my $before = $sshd->connections;

# the upgrade itself
my %cookie = (Cookie => $f->{cookie});
expect(SeguraTest::WS->connect($port, $q, %cookie, Upgrade => undef), 400, 'bad_request', 'no Upgrade');
expect(SeguraTest::WS->connect($port, $q, %cookie, Upgrade => 'h2c'), 400, 'bad_request', 'Upgrade: h2c');
expect(SeguraTest::WS->connect($port, $q, %cookie, Connection => 'keep-alive'), 400, 'bad_request', 'no Connection: upgrade');
my $ws = SeguraTest::WS->connect($port, $q, %cookie, 'Sec-WebSocket-Version' => 8);
expect($ws, 400, 'bad_request', 'version 8');
is($ws->header('Sec-WebSocket-Version'), '13', 'version 8: the server says 13');
expect(SeguraTest::WS->connect($port, $q, %cookie, 'Sec-WebSocket-Key' => undef), 400, 'bad_request', 'no key');
expect(SeguraTest::WS->connect($port, $q, %cookie, 'Sec-WebSocket-Key' => 'c2hvcnQ='), 400, 'bad_request', 'a short key');
$ws = SeguraTest::WS->connect($port, $q, %cookie, Upgrade => 'WebSocket', Connection => 'keep-alive, UPGRADE');
is($ws->{status}, 101, 'Upgrade and Connection tokens are case-insensitive, in lists');
$ws->close(1000);
$ws->wait_eof(10);

# a POST, HTTP/1.0, garbage: read the answer with a deadline
sub raw_request {
    my ($req) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port) or die;
    print $s $req;
    my $ws = bless { sock => $s, buf => '' }, 'SeguraTest::WS';
    my $deadline = time + 10;
    $ws->fill($deadline) until $ws->{buf} =~ /\r\n\r\n.*\}/s || $ws->{eof} || time > $deadline;
    close $s;
    return $ws->{buf};
}

my $upgrade = "Upgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 13\r\n"
              . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nCookie: $f->{cookie}\r\n";
my $resp = raw_request("POST $q HTTP/1.1\r\nHost: x\r\n${upgrade}Content-Length: 0\r\n\r\n");
like($resp, qr{^HTTP/1.1 400}, 'POST: 400');
like($resp, qr{"code":"bad_request"}, 'POST: JSON body');
$resp = raw_request("GET $q HTTP/1.0\r\n$upgrade\r\n");
like($resp, qr{^HTTP/1.1 400}, 'HTTP/1.0: 400');
like($resp, qr{"code":"bad_request"}, 'HTTP/1.0: JSON body');
$resp = raw_request("\x00\xff\x81\x85garbage\r\n\r\n");
like($resp, qr{^HTTP/1.1 400}, 'garbage before the handshake: 400');

# parameters
for my $bad ('', 'key=x&device=1', "key=$f->{key}", "key=$f->{key}&device=-1",
             "key=$f->{key}&device=99999999999999999999",
             "key=$f->{key}&device=$f->{device}&cols=0",
             "key=$f->{key}&device=$f->{device}&rows=1001",
             "key=$f->{key}&device=$f->{device}&cols=8x") {
    expect(SeguraTest::WS->connect($port, "/session?$bad", %cookie), 400, 'bad_request', "parameters '$bad'");
}

# identity
expect(SeguraTest::WS->connect($port, $q), 401, 'unauthenticated', 'no cookie');
expect(SeguraTest::WS->connect($port, $q, Cookie => 'segura_session=' . ('A' x 43)), 401, 'unauthenticated', 'a forged cookie');
expect(SeguraTest::WS->connect($port, $q, Cookie => 'segura_session=abc'), 401, 'unauthenticated', 'a malformed cookie');

# Origin
expect(SeguraTest::WS->connect($port, $q, %cookie, Origin => 'http://evil.example'), 403, 'foreign_origin', 'a foreign Origin');
$ws = SeguraTest::WS->connect($port, $q, %cookie, Origin => "http://127.0.0.1:$port");
is($ws->{status}, 101, 'the same Origin is accepted');
$ws->close(1000);
$ws->wait_eof(10);

# unknown key or device
expect(SeguraTest::WS->connect($port, "/session?key=999999&device=$f->{device}", %cookie), 404, 'not_found', 'unknown key', 'unknown_key');
expect(SeguraTest::WS->connect($port, "/session?key=$f->{key}&device=999999", %cookie), 404, 'not_found', 'unknown device', 'unknown_device');

# every grant condition
my $conns = $sshd->connections;

sub grant_case {
    my ($name, $reason, $setup, $undo) = @_;
    $setup->();
    expect(SeguraTest::WS->connect($port, $q, %cookie), 403, 'forbidden', $name, $reason);
    $undo->();
}

my ($g) = $dbh->selectrow_array('select group_id from group_members where user_id = ?', undef, $f->{user});

for my $perm (qw(use_credentials access_devices remote_session)) {
    grant_case("group without $perm", "no_$perm",
        sub { $dbh->do("update access_groups set $perm = false where id = ?", undef, $g) },
        sub { $dbh->do("update access_groups set $perm = true where id = ?", undef, $g) });
}
grant_case('user in no group', 'no_group',
    sub { $dbh->do('delete from group_members where group_id = ?', undef, $g) },
    sub { $dbh->do('insert into group_members (group_id, user_id) values (?, ?)', undef, $g, $f->{user}) });
grant_case('key inactive', 'key_inactive',
    sub { $dbh->do(q{update ssh_keys set status = 'inactive' where id = ?}, undef, $f->{key}) },
    sub { $dbh->do(q{update ssh_keys set status = 'active' where id = ?}, undef, $f->{key}) });
grant_case('device inactive', 'device_inactive',
    sub { $dbh->do(q{update devices set status = 'inactive' where id = ?}, undef, $f->{device}) },
    sub { $dbh->do(q{update devices set status = 'active' where id = ?}, undef, $f->{device}) });
grant_case('key not associated with the device', 'key_not_associated',
    sub { $dbh->do('delete from key_devices where key_id = ?', undef, $f->{key}) },
    sub { $db->associate(key => $f->{key}, device => $f->{device}, main => 1) });
grant_case('key not granted to the group', 'key_not_granted',
    sub { $dbh->do('delete from group_keys where group_id = ?', undef, $g) },
    sub { $dbh->do('insert into group_keys (group_id, key_id) values (?, ?)', undef, $g, $f->{key}) });
grant_case('device not granted to the group', 'device_not_granted',
    sub { $dbh->do('delete from group_devices where group_id = ?', undef, $g) },
    sub { $dbh->do('insert into group_devices (group_id, device_id) values (?, ?)', undef, $g, $f->{device}) });


is($sshd->connections, $conns, 'no refused request made a TCP connection to the device');

# the user goes inactive: the cookie no longer identifies anyone
$dbh->do(q{update users set status = 'inactive' where id = ?}, undef, $f->{user});
expect(SeguraTest::WS->connect($port, $q, %cookie), 401, 'unauthenticated', 'inactive user');
$dbh->do(q{update users set status = 'active' where id = ?}, undef, $f->{user});

# delegated identity: segura_user
my ($uname) = $dbh->selectrow_array('select username from users where id = ?', undef, $f->{user});
my $dq = "/delegated?key=$f->{key}&device=$f->{device}";
expect(SeguraTest::WS->connect($port, $dq, 'X-User' => 'nobody-here'), 403, 'forbidden', 'delegated unknown user');
expect(SeguraTest::WS->connect($port, $dq), 401, 'unauthenticated', 'delegated empty: cookie needed');
$ws = SeguraTest::WS->connect($port, $dq, 'X-User' => $uname);
is($ws->{status}, 101, 'delegated identity opens the session');
ok($ws->wait_event('connected', 15), 'delegated: connected');
$ws->close(1000);
$ws->wait_eof(10);

SeguraTest::done();
