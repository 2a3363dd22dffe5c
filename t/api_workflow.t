# The whole workflow by API: an admin registers a device (the test sshd), a
# user, an access group, an RSA PEM key with a passphrase and an Ed25519
# key; the user sees exactly the granted keys and can start sessions.
use strict;
use warnings;
use Test::More;
use SeguraTest;
use SeguraTest::Api;

my $t = SeguraTest->new(sshd => 1);
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

my $admin = SeguraTest::Api->new($t);
is($admin->login('root', 'root-password-1')->code, 200, 'admin logs in');

# the device
my $res = $admin->post('/api/devices', {
    name => 'test-sshd', address => '127.0.0.1', port => 0 + $t->sshd->port,
    tags => ['lab'], host_key => $t->sshd->host_key_line('ed25519') . ' comment',
});
is($res->code, 201, 'device created') or diag($res->body);
my $dev = $res->json;
like($dev->{host_key_fingerprint}, qr/^SHA256:[A-Za-z0-9+\/]{43}$/, 'host key fingerprint');
unlike($dev->{host_key}, qr/comment/, 'host key line normalised');
is_deeply($dev->{tags}, ['lab'], 'tags');

# the user
$res = $admin->post('/api/users', { username => 'bob', display_name => 'Bob',
                                    password => 'bob-password-1' });
is($res->code, 201, 'user created') or diag($res->body);
my $bob = $res->json;
is($bob->{admin}, Mojo::JSON->false, 'not an admin');
ok(!exists $bob->{password} && !exists $bob->{password_hash}, 'no password in the response');

# the keys
my $pass = 'rsa key passphrase 42';
my ($rsa) = $t->sshd->keygen('rsa_pem', type => 'rsa', bits => 3072, format => 'PEM',
                             passphrase => $pass);
my ($ed) = $t->sshd->keygen('ed25519', type => 'ed25519');
my $rsa_text = SeguraTest::slurp($rsa);
my $ed_text = SeguraTest::slurp($ed);
$t->canary($pass, body_of($rsa_text), body_of($ed_text));
$t->sshd->authorize(map { s/\s+$//r } SeguraTest::slurp("$rsa.pub"), SeguraTest::slurp("$ed.pub"));

$res = $admin->post('/api/keys', {
    name => 'rsa-pem', owner => 'ops team', username => $t->sshd->user,
    private_key => $rsa_text, passphrase => $pass, tags => ['prod'],
    main_device => $dev->{id}, devices => [$dev->{id}],
});
is($res->code, 201, 'RSA PEM key with passphrase created') or diag($res->body);
my $k1 = $res->json;
is($k1->{type}, 'ssh-rsa', 'type');
is($k1->{bits}, 3072, 'bits');
ok($k1->{has_passphrase}, 'has_passphrase');
is($k1->{main_device}, $dev->{id}, 'main device');
my $fp = `ssh-keygen -lf $rsa.pub`;
is($k1->{fingerprint}, (split ' ', $fp)[1], 'fingerprint as ssh-keygen prints it');
ok(!exists $k1->{private_key} && !exists $k1->{passphrase}, 'no private material in the response');

$res = $admin->post('/api/keys', {
    name => 'ed25519', username => $t->sshd->user, private_key => $ed_text,
    public_key => SeguraTest::slurp("$ed.pub"), devices => [$dev->{id}],
});
is($res->code, 201, 'Ed25519 key created') or diag($res->body);
my $k2 = $res->json;
is($k2->{type}, 'ssh-ed25519', 'type');
ok(!$k2->{has_passphrase}, 'no passphrase');
is($k2->{main_device}, undef, 'no main device');

$res = $admin->post('/api/keys', {
    name => 'not-granted', username => 'x', private_key => $ed_text,
    devices => [$dev->{id}],
});
is($res->code, 201, 'a third key, never granted');
my $k3 = $res->json;

# the group
$res = $admin->post('/api/groups', {
    name => 'operators',
    permissions => { use_credentials => Mojo::JSON->true, access_devices => Mojo::JSON->true,
                     remote_session => Mojo::JSON->true },
    members => [$bob->{id}], keys => [$k1->{id}, $k2->{id}], devices => [$dev->{id}],
});
is($res->code, 201, 'group created') or diag($res->body);
is_deeply($res->json->{members}, [$bob->{id}], 'members');
is_deeply($res->json->{keys}, [$k1->{id}, $k2->{id}], 'keys');

# the user's view
my $user = SeguraTest::Api->new($t);
is($user->login('bob', 'bob-password-1')->code, 200, 'bob logs in');
$res = $user->get('/api/keys');
is($res->code, 200, 'bob lists keys');
is_deeply([sort map { $_->{id} } @{ $res->json->{items} }], [sort $k1->{id}, $k2->{id}],
          'bob sees exactly the granted keys');
is($user->get("/api/keys/$k3->{id}")->code, 404, 'an ungranted key is 404 for bob');
is($user->get("/api/devices")->json->{items}[0]{id}, $dev->{id}, 'bob sees the granted device');

for my $k ($k1, $k2) {
    $res = $user->get("/api/keys/$k->{id}/devices");
    is($res->code, 200, "Remote Access report of $k->{name}");
    my $items = $res->json->{items};
    is(scalar @$items, 1, 'one device');
    is($items->[0]{id}, $dev->{id}, 'the device');
    is($items->[0]{can_start}, Mojo::JSON->true, 'can_start: true');
    is($items->[0]{reason}, undef, 'no reason');
}
$res = $user->get("/api/keys/$k1->{id}/devices");
is($res->json->{items}[0]{main}, Mojo::JSON->true, 'main flag');
is($res->json->{key}{username}, $k1->{username}, 'the report names the login');
is_deeply($res->json->{items}[0]{tags}, $dev->{tags}, 'and the device tags');
is($res->json->{items}[0]{description}, $dev->{description}, 'and its description');
is($user->get("/api/keys/$k1->{id}")->json->{main_device_name}, $dev->{name},
   'a key names its main device');

# filters
is(scalar @{ $admin->get('/api/keys?tag=prod')->json->{items} }, 1, 'tag filter');
is(scalar @{ $admin->get('/api/keys?q=ED2')->json->{items} }, 1, 'name search');
is(scalar @{ $admin->get('/api/keys?status=inactive')->json->{items} }, 0, 'status filter');
is($admin->get('/api/keys?q=' . ('x' x 300))->json->{error}{field}, 'q', 'a search too long: 422 on q');

# the stored key decrypts with the convention the relay uses
my ($enc, $penc) = $db->dbh->selectrow_array(
    'select private_key_enc, passphrase_enc from ssh_keys where id = ?', undef, $k1->{id});
ok(index($enc, body_of($rsa_text)) < 0, 'the stored key is not plaintext');
is(length($enc), 29 + length($rsa_text), 'sealed blob: 29 bytes of overhead');
is(length($penc), 29 + length($pass), 'sealed passphrase');

# PATCH: rename, replace the key (new fingerprint), the passphrase alone is refused
$res = $admin->patch("/api/keys/$k2->{id}", { name => 'ed25519-renamed', status => 'inactive' });
is($res->code, 200, 'patch');
is($res->json->{name}, 'ed25519-renamed', 'renamed');
is($user->get("/api/keys/$k2->{id}/devices")->json->{items}[0]{reason}, 'key_inactive',
   'an inactive key: can_start false, reason key_inactive');
$res = $admin->patch("/api/keys/$k2->{id}", { passphrase => 'x' });
is($res->code, 422, 'passphrase without the key: 422');
is($res->json->{error}{field}, 'passphrase', 'field passphrase');

# audit
my $audit = $db->dbh->selectall_arrayref(
    q{select action, object_type, actor_name from audit_log where action <> 'login' order by id});
ok((grep { $_->[0] eq 'create' && $_->[1] eq 'ssh_key' && $_->[2] eq 'root' } @$audit),
   'key creation audited with the actor');
ok((grep { $_->[0] eq 'create' && $_->[1] eq 'device' } @$audit), 'device creation audited');
ok((grep { $_->[0] eq 'create' && $_->[1] eq 'access_group' } @$audit), 'group creation audited');
ok((grep { $_->[0] eq 'update' && $_->[1] eq 'ssh_key' } @$audit), 'key update audited');

# sessions audit (written by the relay; rows planted here)
my $s1 = $db->insert_ssh_session(user => $bob->{id}, key => $k1->{id}, device => $dev->{id});
my $s2 = $db->insert_ssh_session(user => $db->dbh->selectrow_array(q{select id from users where username='root'}),
                                 key => $k1->{id}, device => $dev->{id});
$res = $user->get('/api/sessions');
is($res->code, 200, 'sessions: 200');
is_deeply([map { $_->{id} } @{ $res->json->{items} }], [$s1], 'bob sees only his own');
$res = $admin->get('/api/sessions?limit=1');
is(scalar @{ $res->json->{items} }, 1, 'limit');
ok($res->json->{next}, 'next cursor');
$res = $admin->get('/api/sessions?limit=1&before=' . $res->json->{next});
is(scalar @{ $res->json->{items} }, 1, 'second page');
is($res->json->{next}, undef, 'last page');
is($admin->get('/api/sessions?limit=0')->code, 422, 'limit 0: 422');

# delete
is($admin->delete("/api/keys/$k3->{id}")->code, 200, 'delete key');
is($admin->get("/api/keys/$k3->{id}")->code, 404, 'gone');
is($admin->delete("/api/keys/$k3->{id}")->code, 404, 'delete again: 404');

$t->stop;
my $log = SeguraTest::slurp($t->error_log);
ok($log !~ /\[error\]/, 'no [error] on the happy path');

SeguraTest::done();

sub body_of {
    my ($pem) = @_;
    my @l = grep { !/^-----|^Proc-Type|^DEK-Info|^\s*$/ } split /\n/, $pem;
    return join '', @l[1 .. 3];
}
