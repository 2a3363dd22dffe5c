# PUT takes a resource's own GET representation: for users, groups, devices
# and keys, GET -> PUT (and GET -> PATCH) with one member changed succeeds
# and changes only that member; a changed read-only member is 422 naming
# it, an unknown member is still refused, a PUT missing a member is 422;
# PATCH on groups changes only what it sends.
use strict;
use warnings;
use Test::More;
use Mojo::JSON qw(true false);
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

my ($kpath) = $t->sshd->keygen('k', type => 'ed25519');
my $pkey = SeguraTest::slurp($kpath);
$t->canary((split /\n/, $pkey)[2]);

sub created {
    my ($path, $body) = @_;
    my $res = $api->post($path, $body);
    is($res->code, 201, "POST $path") or diag($res->body);
    return $res->json->{id};
}

my $u1 = created('/api/users', { username => 'carol', display_name => 'Carol',
                                 password => 'carol-password-1' });
my $d1 = created('/api/devices', { name => 'web1', address => '192.0.2.1', port => 2222,
                                   tags => ['prod'], description => 'the web',
                                   host_key => $t->sshd->host_key_line });
my $d2 = created('/api/devices', { name => 'web2', address => '192.0.2.2' });
my $k1 = created('/api/keys', { name => 'deploy', username => 'deploy', private_key => $pkey,
                                tags => ['a'], owner => 'ops', devices => [$d1, $d2],
                                main_device => $d1 });
my $g1 = created('/api/groups', { name => 'ops', description => 'operators',
                                  permissions => { use_credentials => true, access_devices => true },
                                  members => [$u1], keys => [$k1], devices => [$d1] });

my @cases = (
    [ 'users',   $u1, display_name => 'Carol C.' ],
    [ 'users',   $u1, status => 'inactive' ],
    [ 'groups',  $g1, description => 'the operators' ],
    [ 'groups',  $g1, devices => [$d1, $d2] ],
    [ 'devices', $d1, port => 2200 ],
    [ 'devices', $d1, tags => ['prod', 'eu'] ],
    [ 'keys',    $k1, owner => 'platform team' ],
    [ 'keys',    $k1, devices => [$d1] ],
);

for my $method ('PUT', 'PATCH') {
    for my $c (@cases) {
        my ($res_name, $id, $member, $value) = @$c;
        my $path = "/api/$res_name/$id";
        my $before = $api->get($path)->json;
        my %body = %$before;
        # an earlier case may have set it already: change it to something new
        $value = ref $value ? [ @$value ] : "$value";
        if (!ref $value && defined $before->{$member} && $before->{$member} eq $value) {
            $value .= ' again';
            $value = 2201 if $member eq 'port';
            $value = 'active' if $member eq 'status';
        }
        $value += 0 if $member eq 'port';
        $body{$member} = $value;
        my $res = $api->request($method, $path, \%body);
        is($res->code, 200, "$method $path with its GET and $member changed: 200")
            or diag($res->body);
        my $after = $api->get($path)->json;
        is_deeply($after->{$member}, $value, "$method $path: $member changed");
        my %b = %$before; my %a = %$after;
        delete @b{$member, 'updated_at'};
        delete @a{$member, 'updated_at'};
        if ($res_name eq 'keys' && $member eq 'devices') {
            # the main device went with its association, and the
            # deployment counts follow the devices
            delete @b{qw(main_device main_device_name deployment)};
            delete @a{qw(main_device main_device_name deployment)};
        }
        is_deeply(\%a, \%b, "$method $path: nothing else changed");
    }
}

# read-only members: changed ones are 422 naming them, the database unchanged
my $F = { status => 422, code => 'invalid_field' };
for my $c ([ 'users', $u1, 'has_password' ], [ 'users', $u1, 'created_at' ],
           [ 'groups', $g1, 'id' ], [ 'devices', $d1, 'host_key_fingerprint' ],
           [ 'keys', $k1, 'fingerprint' ], [ 'keys', $k1, 'bits' ]) {
    my ($res_name, $id, $member) = @$c;
    my $body = $api->get("/api/$res_name/$id")->json;
    my $v = $body->{$member};
    $body->{$member} = $member eq 'has_password' ? false
                     : $member =~ /^(id|bits)$/ ? $v + 1 : "$v-changed";
    $api->refused($db, 'PUT', "/api/$res_name/$id", $body, { %$F, field => $member },
                  "PUT $res_name with $member changed");
}

# a changed public key without the private key: still refused
my $kb = $api->get("/api/keys/$k1")->json;
$kb->{public_key} = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOJ3Vi2Bd1fA2QG4YQy6bA0Jb8t0k5p0Yy1bqk3b0x0Z x';
$api->refused($db, 'PUT', "/api/keys/$k1", $kb, { %$F, field => 'public_key' },
              'PUT key with another public key and no private key');

# unknown members are still refused
for my $r ([ 'users', $u1 ], [ 'groups', $g1 ], [ 'devices', $d1 ], [ 'keys', $k1 ]) {
    my $body = $api->get("/api/$r->[0]/$r->[1]")->json;
    $body->{colour} = 'blue';
    $api->refused($db, 'PUT', "/api/$r->[0]/$r->[1]", $body, { %$F, field => 'colour' },
                  "PUT $r->[0] with an unknown member");
}

# a PUT replaces: a member left out is 422 (PATCH is for parts)
my $db1 = $api->get("/api/devices/$d1")->json;
delete $db1->{port};
$api->refused($db, 'PUT', "/api/devices/$d1", $db1, { %$F, field => 'port' },
              'PUT device without port');
# read-only members on a create are refused
$api->refused($db, 'POST', '/api/devices', { name => 'x', address => 'x', id => 5 },
              { %$F, field => 'id' }, 'POST with an id');

# a key PUT with main_device null has no main device; write-only secrets stay
$kb = $api->get("/api/keys/$k1")->json;
$kb->{devices} = [$d1, $d2];
$kb->{main_device} = $d2;
is($api->put("/api/keys/$k1", $kb)->json->{main_device}, $d2, 'PUT key: main device set');
$kb = $api->get("/api/keys/$k1")->json;
$kb->{main_device} = undef;
delete $kb->{main_device_name};
my $res = $api->put("/api/keys/$k1", $kb);
is($res->code, 200, 'PUT key with main_device null: 200') or diag($res->body);
is($res->json->{main_device}, undef, 'PUT key with main_device null: no main device');
is_deeply($res->json->{devices}, [$d1, $d2], 'and the devices as sent');
ok($db->dbh->selectrow_array('select private_key_enc is not null from ssh_keys where id = ?', undef, $k1),
   'the private key stays');

# PATCH on groups: only what is sent
my $gb = $api->get("/api/groups/$g1")->json;
$res = $api->patch("/api/groups/$g1", { members => [] });
is($res->code, 200, 'PATCH group members: 200') or diag($res->body);
is_deeply($res->json->{members}, [], 'members emptied');
is_deeply($res->json->{keys}, $gb->{keys}, 'keys untouched');
is_deeply($res->json->{devices}, $gb->{devices}, 'devices untouched');
is($res->json->{description}, $gb->{description}, 'description untouched');
$res = $api->patch("/api/groups/$g1", { permissions => { remote_session => true } });
is($res->json->{permissions}{remote_session}, true, 'PATCH one permission: set');
is($res->json->{permissions}{use_credentials}, $gb->{permissions}{use_credentials},
   'the others untouched');
is($res->json->{name}, 'ops', 'PATCH without a name keeps it');
$api->refused($db, 'PATCH', "/api/groups/$g1", { name => '' }, { %$F, field => 'name' },
              'PATCH group with an empty name');
# PUT still resets what it does not send
$res = $api->put("/api/groups/$g1", { name => 'ops' });
is($res->code, 200, 'PUT group with only a name');
is_deeply([ @{ $res->json }{qw(keys devices)} ], [[], []], 'PUT resets the lists');
is($res->json->{permissions}{remote_session}, false, 'and the permissions');

$t->stop;
ok(SeguraTest::slurp($t->error_log) !~ /\[error\]/, 'no [error]');

SeguraTest::done();
