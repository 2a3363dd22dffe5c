# /api/devices: create, read, update, delete; each bad field is refused
# with its status and field and changes nothing.
use strict;
use warnings;
use Test::More;
use SeguraTest;
use SeguraTest::Api;

my $t = SeguraTest->new(sshd => 1);
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

my $res = $api->post('/api/devices', { name => 'web1', address => 'web1.example.com' });
is($res->code, 201, 'create with defaults');
my $d = $res->json;
is($d->{port}, 22, 'port defaults to 22');
is($d->{status}, 'active', 'status defaults to active');
is_deeply($d->{tags}, [], 'no tags');
is($d->{host_key}, undef, 'no host key');

$res = $api->patch("/api/devices/$d->{id}", { port => 2222, tags => ['a', 'b'],
                                              host_key => $t->sshd->host_key_line('rsa') });
is($res->code, 200, 'patch');
is($res->json->{port}, 2222, 'port changed');
is($res->json->{name}, 'web1', 'name kept');
like($res->json->{host_key}, qr/^ssh-rsa /, 'host key pinned');
my $fp = (split ' ', `ssh-keygen -lf @{[$t->sshd->dir]}/host_rsa.pub`)[1];
is($res->json->{host_key_fingerprint}, $fp, 'fingerprint as ssh-keygen prints it');
$res = $api->patch("/api/devices/$d->{id}", { host_key => undef });
is($res->json->{host_key}, undef, 'host key null removes it');
is($res->json->{host_key_fingerprint}, undef, 'with its fingerprint');
is($api->get("/api/devices/$d->{id}")->json->{port}, 2222, 'GET by id');
is(scalar @{ $api->get('/api/devices?tag=a')->json->{items} }, 1, 'tag filter');
is(scalar @{ $api->get('/api/devices?q=WEB')->json->{items} }, 1, 'name search');
is(scalar @{ $api->get('/api/devices?q=zzz')->json->{items} }, 0, 'name search, no match');
# a filter too long or with a NUL is refused, never dropped (all would show)
for my $c ([ 'q', 'x' x 256 ], [ 'tag', 'x' x 128 ], [ 'status', 'x' x 16 ], [ 'q', 'a%00b' ]) {
    my $res = $api->get("/api/devices?$c->[0]=$c->[1]");
    is($res->code, 422, "?$c->[0]= bad: 422");
    is($res->json->{error}{field}, $c->[0], "?$c->[0]= bad: field $c->[0]");
}
is(scalar @{ $api->get('/api/devices?q=' . ('x' x 255))->json->{items} }, 0, 'q of 255 characters is taken');

my $F = { status => 422, code => 'invalid_field' };
my @cases = (
    [ 'no name', { address => 'x' }, { %$F, field => 'name' } ],
    [ 'no address', { name => 'n' }, { %$F, field => 'address' } ],
    [ 'port 0', { name => 'n', address => 'x', port => 0 }, { %$F, field => 'port' } ],
    [ 'port 65536', { name => 'n', address => 'x', port => 65536 }, { %$F, field => 'port' } ],
    [ 'port as a string', { name => 'n', address => 'x', port => '22' }, { %$F, field => 'port' } ],
    [ 'address with a leading dash', { name => 'n', address => '-oProxyCommand' }, { %$F, field => 'address' } ],
    [ 'address with a space', { name => 'n', address => 'a b' }, { %$F, field => 'address' } ],
    [ 'bad status', { name => 'n', address => 'x', status => 'down' }, { %$F, field => 'status' } ],
    [ 'tag of the wrong type', { name => 'n', address => 'x', tags => [1] }, { %$F, field => 'tags' } ],
    [ 'bad host key', { name => 'n', address => 'x', host_key => 'ssh-ed25519 AAAA' },
      { %$F, field => 'host_key', reason => 'unparsable' } ],
    [ 'unknown field', { name => 'n', address => 'x', hostkey => 'x' }, { %$F, field => 'hostkey' } ],
    [ 'duplicate name', { name => 'web1', address => 'x' }, { status => 409, code => 'conflict', field => 'name' } ],
);
for my $c (@cases) {
    $api->refused($db, 'POST', '/api/devices', $c->[1], $c->[2], $c->[0]);
}
$api->refused($db, 'PATCH', "/api/devices/$d->{id}", { port => -1 }, { %$F, field => 'port' }, 'PATCH bad port');
$api->refused($db, 'PATCH', '/api/devices/999999', { port => 22 }, { status => 404 }, 'PATCH unknown id');
$api->refused($db, 'POST', "/api/devices/$d->{id}", { port => 22 }, { status => 405 }, 'POST is not a device item method');

is($api->delete("/api/devices/$d->{id}")->code, 200, 'delete');
is($api->get("/api/devices/$d->{id}")->code, 404, 'gone');

SeguraTest::done();
