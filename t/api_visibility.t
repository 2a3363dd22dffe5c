# Visibility: a key associated with a device the caller is not granted does
# not reveal that device to a non-admin, neither in the Remote Access report
# nor in the key's own representation (item and list); administrators see
# all; a foreign session id is no cursor into another user's sessions.
use strict;
use warnings;
use Test::More;
use SeguraTest;
use SeguraTest::Api;

my $t = SeguraTest->new;
$t->run(<<'EOF2');
    server {
        listen 127.0.0.1:%%PORT%%;
        # users see their own sessions (t/recording_access.t)
        segura_recording_self on;
        location /api/ { segura_api; }
    }
EOF2

my $db = $t->db;
SeguraTest::Api::add_user($db, 'root', 'root-password-1', admin => 1);
my $eve = SeguraTest::Api::add_user($db, 'eve', 'eve-password-1');
my $other = $db->insert_user(username => 'other');

my $key = $db->insert_key(name => 'shared-key');
my $seen = $db->insert_device(name => 'granted-dev', address => '192.0.2.10');
my $secret = $db->insert_device(name => 'secret-dev-name', address => '198.51.100.77',
                                port => 2207, description => 'secret description',
                                tags => ['secret-tag']);
# the ungranted device is even the key's main device
$db->associate(key => $key, device => $secret, main => 1);
$db->associate(key => $key, device => $seen);
$db->grant(members => [$eve], keys => [$key], devices => [$seen]);
# the secret device is granted to a group eve is not in
$db->grant(members => [$other], keys => [$key], devices => [$secret]);

my $api = SeguraTest::Api->new($t);
is($api->login('eve', 'eve-password-1')->code, 200, 'eve logs in');
my $admin = SeguraTest::Api->new($t);
is($admin->login('root', 'root-password-1')->code, 200, 'admin logs in');

sub no_secret {
    my ($res, $name) = @_;
    my $body = $res->body;
    for my $s ('secret-dev-name', '198.51.100.77', 'secret description',
               'secret-tag') {
        ok(index($body, $s) < 0, "$name: does not contain $s");
    }
    # the port as a member, not as digits (a timestamp may hold "2207")
    ok($body !~ /"port"\s*:\s*2207\b/, "$name: does not contain port 2207");
}

# the Remote Access report
my $res = $api->get("/api/keys/$key/devices");
is($res->code, 200, 'report: 200');
is_deeply([map { $_->{id} } @{ $res->json->{items} }], [$seen],
          'report: only the granted device');
no_secret($res, 'report');

$res = $admin->get("/api/keys/$key/devices");
is_deeply([map { $_->{id} } @{ $res->json->{items} }], [$secret, $seen],
          'report for the admin: both, main first');

# the key itself
$res = $api->get("/api/keys/$key");
is($res->code, 200, 'key: 200');
is_deeply($res->json->{devices}, [$seen], 'key: devices lists only the granted one');
is($res->json->{main_device}, undef, 'key: the ungranted main device is not named');
is($res->json->{main_device_name}, undef, 'key: nor its name');
no_secret($res, 'key');

$res = $api->get('/api/keys');
is_deeply([map { $_->{devices} } @{ $res->json->{items} }], [[$seen]],
          'key list: only the granted device');
no_secret($res, 'key list');

$res = $admin->get("/api/keys/$key");
is_deeply($res->json->{devices}, [$secret, $seen], 'admin: both devices');
is($res->json->{main_device}, $secret, 'admin: the main device');
is($res->json->{main_device_name}, 'secret-dev-name', 'admin: its name');

# devices: the ungranted one is 404 and not listed
is($api->get("/api/devices/$secret")->code, 404, 'ungranted device: 404');
$res = $api->get('/api/devices');
is_deeply([map { $_->{id} } @{ $res->json->{items} }], [$seen], 'device list: granted only');
no_secret($res, 'device list');

# sessions: another user's session id is not a cursor
# (eve's own session is older than the foreign one, so a cursor that
# honoured the foreign id would list it)
my $s_eve = $db->insert_ssh_session(user => $eve, key => $key, device => $seen);
my $s_other = $db->insert_ssh_session(user => $other, key => $key, device => $secret);
$db->dbh->do(q{update ssh_sessions set started_at = now() - interval '1 hour' where id = ?},
             undef, $s_eve);
$res = $api->get("/api/sessions?before=$s_other");
is($res->code, 200, 'foreign cursor: 200');
is_deeply($res->json->{items}, [], 'foreign cursor: nothing, as for an unknown id');
$res = $api->get('/api/sessions');
is_deeply([map { $_->{id} } @{ $res->json->{items} }], [$s_eve], 'sessions: her own only');
no_secret($res, 'session list');

SeguraTest::done();
