# /api/groups: PUT replaces a group's permissions, members and grants;
# bad members, keys or devices are 422 naming the list; nothing changes.
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
SeguraTest::Api::add_user($db, 'root', 'root-password-1', admin => 1);
my $api = SeguraTest::Api->new($t);
is($api->login('root', 'root-password-1')->code, 200, 'admin logs in');

my $u = $db->insert_user;
my $k = $db->insert_key;
my $d = $db->insert_device;

my $res = $api->post('/api/groups', { name => 'g1' });
is($res->code, 201, 'create');
my $g = $res->json;
is_deeply($g->{permissions}, { use_credentials => false, access_devices => false,
                               remote_session => false, audit_sessions => false },
          'a new group grants nothing');

$res = $api->put("/api/groups/$g->{id}", {
    name => 'g1', description => 'ops',
    permissions => { use_credentials => true, access_devices => true, remote_session => false },
    members => [$u, $u], keys => [$k], devices => [$d],
});
is($res->code, 200, 'put') or diag($res->body);
is_deeply($res->json->{members}, [$u], 'members (duplicates folded)');
is_deeply($res->json->{keys}, [$k], 'keys');
is_deeply($res->json->{devices}, [$d], 'devices');
is($res->json->{permissions}{remote_session}, false, 'permission');

$res = $api->put("/api/groups/$g->{id}", { name => 'g1-renamed' });
is_deeply($res->json->{members}, [], 'PUT replaces: members removed');
is_deeply($res->json->{keys}, [], 'keys removed');
is($res->json->{permissions}{use_credentials}, false, 'permissions reset');
$res = $api->put("/api/groups/$g->{id}", { name => 'g1-renamed',
                                          permissions => { audit_sessions => true } });
is($res->json->{permissions}{audit_sessions}, true, 'PUT sets audit_sessions');
is($api->get("/api/groups/$g->{id}")->json->{permissions}{audit_sessions}, true,
   'GET shows audit_sessions');
$res = $api->put("/api/groups/$g->{id}", { name => 'g1-renamed' });
is($res->json->{permissions}{audit_sessions}, false, 'PUT without it resets audit_sessions');
is(scalar @{ $api->get('/api/groups')->json->{items} }, 1, 'list');

$api->put("/api/groups/$g->{id}", { name => 'g1', members => [$u] });

my $F = { status => 422, code => 'invalid_field' };
my @cases = (
    [ 'no name', 'POST', '/api/groups', { members => [] }, { %$F, field => 'name' } ],
    [ 'unknown member', 'POST', '/api/groups', { name => 'x', members => [999999] }, { %$F, field => 'members' } ],
    [ 'unknown key', 'POST', '/api/groups', { name => 'x', keys => [999999] }, { %$F, field => 'keys' } ],
    [ 'unknown device', 'POST', '/api/groups', { name => 'x', devices => [999999] }, { %$F, field => 'devices' } ],
    [ 'members not ids', 'POST', '/api/groups', { name => 'x', members => 'all' }, { %$F, field => 'members' } ],
    [ 'permissions not an object', 'POST', '/api/groups', { name => 'x', permissions => [] }, { %$F, field => 'permissions' } ],
    [ 'unknown permission', 'POST', '/api/groups', { name => 'x', permissions => { root => true } }, { %$F, field => 'root' } ],
    [ 'permission not a bool', 'POST', '/api/groups', { name => 'x', permissions => { remote_session => 1 } },
      { %$F, field => 'remote_session' } ],
    [ 'duplicate name', 'POST', '/api/groups', { name => 'g1' }, { status => 409, code => 'conflict', field => 'name' } ],
    [ 'PUT with an unknown member', 'PUT', "/api/groups/$g->{id}", { name => 'g1', members => [$u, 999999] },
      { %$F, field => 'members' } ],
    [ 'PUT unknown group', 'PUT', '/api/groups/999999', { name => 'zz' }, { status => 404 } ],
    [ 'POST is not a group item method', 'POST', "/api/groups/$g->{id}", { name => 'zz' }, { status => 405 } ],
);
for my $c (@cases) {
    $api->refused($db, $c->[1], $c->[2], $c->[3], $c->[4], $c->[0]);
}

is($api->delete("/api/groups/$g->{id}")->code, 200, 'delete');
is($api->get("/api/groups/$g->{id}")->code, 404, 'gone');
ok($db->dbh->selectrow_array(q{select count(*) from audit_log where object_type = 'access_group' and action = 'delete'}),
   'delete audited');

SeguraTest::done();
