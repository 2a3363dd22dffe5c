# Authorisation: a non-admin gets 403 on every admin write and on other
# users' objects, 404 for keys and devices not granted to them; the
# Remote Access report gives can_start false with the matching reason
# (for the devices the user may see at all).
use strict;
use warnings;
use Test::More;
use Mojo::JSON qw(true false);
use SeguraTest;
use SeguraTest::Api;

my $t = SeguraTest->new;
$t->run(<<'EOF2');
    server {
        listen 127.0.0.1:%%PORT%%;
        location /api/ { segura_api; }
    }
EOF2

my $db = $t->db;
my $root = SeguraTest::Api::add_user($db, 'root', 'root-password-1', admin => 1);
my $eve = SeguraTest::Api::add_user($db, 'eve', 'eve-password-1');
my $other = $db->insert_user(username => 'other');
my $key = $db->insert_key(name => 'k1');
my $hidden = $db->insert_key(name => 'hidden');
my $dev = $db->insert_device(name => 'd1');
my $hdev = $db->insert_device(name => 'hidden-dev');
$db->associate(key => $key, device => $dev, main => 1);
$db->associate(key => $hidden, device => $hdev, main => 1);
my $g = $db->insert_group(name => 'ops');
my $s_other = $db->insert_ssh_session(user => $other, key => $key, device => $dev);

my $api = SeguraTest::Api->new($t);
is($api->login('eve', 'eve-password-1')->code, 200, 'eve logs in');

# no group at all
is($api->get("/api/keys/$key/devices")->code, 404, 'no group: the key is invisible (404)');
is(scalar @{ $api->get('/api/keys')->json->{items} }, 0, 'no group: no keys listed');
is(scalar @{ $api->get('/api/devices')->json->{items} }, 0, 'no group: no devices listed');

# an admin sees the report with the reason for eve's side: the admin is
# not a member of anything
my $admin = SeguraTest::Api->new($t);
$admin->login('root', 'root-password-1');
is($admin->get("/api/keys/$key/devices")->json->{items}[0]{reason}, 'no_group',
   'admin without a group: reason no_group (no exemption)');

# a group granting the key but lacking one permission at a time
$db->grant(group => $g, members => [$eve], keys => [$key], devices => [$dev]);
for my $p (qw(use_credentials access_devices remote_session)) {
    $db->dbh->do(q{update access_groups set use_credentials = true, access_devices = true,
                   remote_session = true where id = ?}, undef, $g);
    $db->dbh->do(qq{update access_groups set $p = false where id = ?}, undef, $g);
    my $res = $api->get("/api/keys/$key/devices");
    if ($p eq 'use_credentials') {
        is($res->code, 404, 'without use_credentials the key is not visible');
        next;
    }
    is($res->code, 200, "without $p: report");
    is($res->json->{items}[0]{can_start}, false, "without $p: can_start false");
    is($res->json->{items}[0]{reason}, "no_$p", "without $p: reason no_$p");
}
$db->dbh->do(q{update access_groups set use_credentials = true, access_devices = true,
               remote_session = true where id = ?}, undef, $g);
my $res = $api->get("/api/keys/$key/devices");
is($res->json->{items}[0]{can_start}, true, 'all three: can_start true');
$db->dbh->do('delete from group_devices where group_id = ?', undef, $g);
$res = $api->get("/api/keys/$key/devices");
is_deeply($res->json->{items}, [], 'device not granted at all: not in the report');
# granted to eve only through a group that may not start sessions
my $g2 = $db->insert_group(name => 'viewers', remote_session => 0);
$db->grant(group => $g2, members => [$eve], devices => [$dev]);
$res = $api->get("/api/keys/$key/devices");
is($res->json->{items}[0]{reason}, 'device_not_granted',
   'device granted without the permissions: reason device_not_granted');
$db->dbh->do('delete from access_groups where id = ?', undef, $g2);
$db->grant(group => $g, devices => [$dev]);

# 404 for what is not granted, never its existence
is($api->get("/api/keys/$hidden")->code, 404, 'ungranted key: 404');
is($api->get("/api/keys/$hidden/devices")->code, 404, 'ungranted key report: 404');
is($api->get("/api/devices/$hdev")->code, 404, 'ungranted device: 404');
is($api->get("/api/keys/$key")->code, 200, 'granted key: 200');

# every admin write, and other users' objects: 403
my $F = { status => 403, code => 'forbidden' };
my @writes = (
    [ 'POST', '/api/users', { username => 'x' } ],
    [ 'PATCH', "/api/users/$other", { display_name => 'x' } ],
    [ 'PATCH', "/api/users/$eve", { admin => true } ],
    [ 'DELETE', "/api/users/$other", undef ],
    [ 'POST', '/api/groups', { name => 'x' } ],
    [ 'PUT', "/api/groups/$g", { name => 'x', members => [$eve] } ],
    [ 'DELETE', "/api/groups/$g", undef ],
    [ 'POST', '/api/devices', { name => 'x', address => 'x' } ],
    [ 'PATCH', "/api/devices/$dev", { port => 23 } ],
    [ 'DELETE', "/api/devices/$dev", undef ],
    [ 'POST', '/api/keys', { name => 'x', username => 'u', private_key => 'x' } ],
    [ 'PATCH', "/api/keys/$key", { name => 'x' } ],
    [ 'DELETE', "/api/keys/$key", undef ],
);
for my $w (@writes) {
    $api->refused($db, $w->[0], $w->[1], $w->[2], $F, "non-admin $w->[0] $w->[1]");
}
for my $p ('/api/users', "/api/users/$other", '/api/groups', "/api/groups/$g") {
    is($api->get($p)->code, 403, "non-admin GET $p: 403");
}
is($api->get("/api/users/$eve")->code, 200, 'a user reads their own record');

# sessions: not even one's own without segura_recording_self on (t/recording_access.t)
my $s_eve = $db->insert_ssh_session(user => $eve, key => $key, device => $dev);
$res = $api->get('/api/sessions');
is_deeply([map { $_->{id} } @{ $res->json->{items} }], [], 'no sessions, not even her own');
is(scalar @{ $admin->get('/api/sessions')->json->{items} }, 2, 'the admin sees all');

# no identity at all
my $anon = SeguraTest::Api->new($t);
for my $p ('/api/keys', '/api/devices', '/api/users', '/api/groups', '/api/sessions', "/api/keys/$key/devices") {
    is($anon->get($p)->code, 401, "anonymous GET $p: 401");
}
is($anon->post('/api/devices', { name => 'x', address => 'x' })->code, 401, 'anonymous write: 401');

SeguraTest::done();
