# /api/users: administrators create, change and delete users; passwords
# are hashed with argon2id and never returned; bad fields are refused.
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
my $api = SeguraTest::Api->new($t);
is($api->login('root', 'root-password-1')->code, 200, 'admin logs in');
$t->canary('carol-password-1', 'carol-password-2');

my $res = $api->post('/api/users', { username => 'carol', password => 'carol-password-1',
                                     display_name => 'Carol', admin => true });
is($res->code, 201, 'create') or diag($res->body);
my $c = $res->json;
ok($c->{admin}, 'admin');
ok($c->{has_password}, 'has_password');
like($db->dbh->selectrow_array('select password_hash from users where id = ?', undef, $c->{id}),
     qr/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/, 'argon2id with the default parameters');

my $carol = SeguraTest::Api->new($t);
is($carol->login('carol', 'carol-password-1')->code, 200, 'the new user logs in');

$res = $api->patch("/api/users/$c->{id}", { password => 'carol-password-2', admin => false,
                                            status => 'active' });
is($res->code, 200, 'patch');
is($res->json->{admin}, false, 'no longer admin');
is($carol->login('carol', 'carol-password-1')->code, 401, 'old password refused');
is($carol->login('carol', 'carol-password-2')->code, 200, 'new password works');

my $F = { status => 422, code => 'invalid_field' };
my @cases = (
    [ 'no username', 'POST', '/api/users', { password => 'long enough' }, { %$F, field => 'username' } ],
    [ 'bad username', 'POST', '/api/users', { username => 'a b' }, { %$F, field => 'username' } ],
    [ 'short password', 'POST', '/api/users', { username => 'dave', password => 'short' }, { %$F, field => 'password' } ],
    [ 'admin not a bool', 'POST', '/api/users', { username => 'dave', admin => 'yes' }, { %$F, field => 'admin' } ],
    [ 'bad status', 'POST', '/api/users', { username => 'dave', status => 'gone' }, { %$F, field => 'status' } ],
    [ 'unknown field', 'POST', '/api/users', { username => 'dave', is_admin => true }, { %$F, field => 'is_admin' } ],
    [ 'duplicate name', 'POST', '/api/users', { username => 'carol' }, { status => 409, code => 'conflict', field => 'username' } ],
    [ 'name differing in case', 'POST', '/api/users', { username => 'CAROL' }, { status => 409, code => 'conflict', field => 'username' } ],
    [ 'demote yourself', 'PATCH', "/api/users/$root", { admin => false }, { %$F, field => 'admin' } ],
    [ 'deactivate yourself', 'PATCH', "/api/users/$root", { status => 'inactive' }, { %$F, field => 'status' } ],
    [ 'delete yourself', 'DELETE', "/api/users/$root", undef, { status => 409, code => 'conflict' } ],
    [ 'unknown id', 'PATCH', '/api/users/999999', { display_name => 'x' }, { status => 404 } ],
);
for my $x (@cases) {
    $api->refused($db, $x->[1], $x->[2], $x->[3], $x->[4], $x->[0]);
}

is($api->delete("/api/users/$c->{id}")->code, 200, 'delete');
is($carol->get('/api/me')->code, 401, 'a deleted user\'s session ends');
is($api->get("/api/users/$c->{id}")->code, 404, 'gone');
is(scalar @{ $api->get('/api/users')->json->{items} }, 1, 'list');

SeguraTest::done();
