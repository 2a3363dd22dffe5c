# /api/keys: every kind of bad key and bad field gets its status, field and
# reason, and leaves the database as it was; PATCH replaces a key.
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

my $dev = $db->insert_device(name => 'd1');
my $pass = 'the right passphrase';
my ($enc) = $t->sshd->keygen('enc', type => 'ed25519', passphrase => $pass);
my ($plain) = $t->sshd->keygen('plain', type => 'ed25519');
my ($other) = $t->sshd->keygen('other', type => 'ecdsa');
my ($weak) = $t->sshd->keygen('weak', type => 'rsa', bits => 1024, format => 'PEM');
my ($pkcs8) = $t->sshd->keygen('pkcs8', type => 'rsa', bits => 2048, format => 'PKCS8',
                               passphrase => $pass);
my %k = map { $_ => SeguraTest::slurp($t->sshd->dir . "/$_") } qw(enc plain other weak pkcs8);
my %pub = map { $_ => SeguraTest::slurp($t->sshd->dir . "/$_.pub") } qw(plain other);
$t->canary($pass, map { (split /\n/)[2] } values %k);

my $ok = $api->post('/api/keys', { name => 'existing', username => 'u', private_key => $k{plain} });
is($ok->code, 201, 'a key to conflict with');
my $kid = $ok->json->{id};

my $F = { status => 422, code => 'invalid_field' };
my @cases = (
    [ 'no name', { username => 'u', private_key => $k{plain} }, { %$F, field => 'name' } ],
    [ 'no username', { name => 'n', private_key => $k{plain} }, { %$F, field => 'username' } ],
    [ 'no private key', { name => 'n', username => 'u' }, { %$F, field => 'private_key' } ],
    [ 'name of the wrong type', { name => 5, username => 'u', private_key => $k{plain} },
      { %$F, field => 'name' } ],
    [ 'tags not an array', { name => 'n', username => 'u', private_key => $k{plain}, tags => 'x' },
      { %$F, field => 'tags' } ],
    [ 'bad status', { name => 'n', username => 'u', private_key => $k{plain}, status => 'on' },
      { %$F, field => 'status' } ],
    [ 'unknown field (typo)', { name => 'n', username => 'u', private_key => $k{enc}, pasphrase => $pass },
      { %$F, field => 'pasphrase' } ],
    [ 'unparsable key', { name => 'n', username => 'u', private_key => "not a key\n" },
      { %$F, field => 'private_key', reason => 'unparsable' } ],
    [ 'wrong passphrase', { name => 'n', username => 'u', private_key => $k{enc}, passphrase => 'wrong one' },
      { %$F, field => 'passphrase', reason => 'passphrase_wrong' } ],
    [ 'missing passphrase', { name => 'n', username => 'u', private_key => $k{enc} },
      { %$F, field => 'passphrase', reason => 'passphrase_required' } ],
    [ 'passphrase not needed', { name => 'n', username => 'u', private_key => $k{plain}, passphrase => 'x' },
      { %$F, field => 'passphrase', reason => 'passphrase_not_needed' } ],
    [ 'public key mismatch', { name => 'n', username => 'u', private_key => $k{plain}, public_key => $pub{other} },
      { %$F, field => 'public_key', reason => 'mismatch' } ],
    [ 'weak RSA key', { name => 'n', username => 'u', private_key => $k{weak} },
      { %$F, field => 'private_key', reason => 'weak_key' } ],
    [ 'username with a space', { name => 'n', username => 'a b', private_key => $k{plain} },
      { %$F, field => 'username' } ],
    [ 'unknown device', { name => 'n', username => 'u', private_key => $k{plain}, devices => [999999] },
      { %$F, field => 'devices' } ],
    [ 'devices not ids', { name => 'n', username => 'u', private_key => $k{plain}, devices => ['1'] },
      { %$F, field => 'devices' } ],
    [ 'unknown main device', { name => 'n', username => 'u', private_key => $k{plain}, main_device => 999999 },
      { %$F, field => 'devices' } ],
    [ 'duplicate name', { name => 'existing', username => 'u', private_key => $k{plain} },
      { status => 409, code => 'conflict', field => 'name' } ],
    [ 'malformed JSON', '{"name":', { status => 400, code => 'invalid_json' } ],
    [ 'not an object', '[1]', { status => 400, code => 'invalid_json' } ],
);

for my $c (@cases) {
    $api->refused($db, 'POST', '/api/keys', $c->[1], $c->[2], $c->[0]);
}

# DSA, when this OpenSSH can still make one
if (eval { $t->sshd->keygen('dsa', type => 'dsa'); 1 }) {
    my $dsa = SeguraTest::slurp($t->sshd->dir . '/dsa');
    $api->refused($db, 'POST', '/api/keys', { name => 'n', username => 'u', private_key => $dsa },
                  { %$F, field => 'private_key', reason => 'dsa_not_supported' }, 'DSA key');
}

$api->refused($db, 'PATCH', "/api/keys/$kid", { passphrase => 'x' },
              { %$F, field => 'passphrase' }, 'PATCH: passphrase without the key');
$api->refused($db, 'PATCH', "/api/keys/$kid", { public_key => $pub{plain} },
              { %$F, field => 'public_key' }, 'PATCH: public key without the key');
$api->refused($db, 'PATCH', "/api/keys/$kid", { private_key => $k{enc}, passphrase => 'nope' },
              { %$F, field => 'passphrase', reason => 'passphrase_wrong' }, 'PATCH: wrong passphrase');
$api->refused($db, 'PATCH', '/api/keys/999999', { name => 'x' },
              { status => 404, code => 'not_found' }, 'PATCH: unknown id');
$api->refused($db, 'DELETE', '/api/keys/999999', undef,
              { status => 404, code => 'not_found' }, 'DELETE: unknown id');
for my $p ('/api/keys/abc', '/api/keys/0', '/api/keys/01', '/api/keys/1x', "/api/keys/$kid/nope") {
    is($api->get($p)->code, 404, "malformed path $p: 404");
}
$api->refused($db, 'POST', '/api/keys', { name => 'n', username => 'u', private_key => 'x' x 70000 },
              { status => 413, code => 'too_large' }, 'body too large');
my $res = $api->request('POST', '/api/keys', 'x', 'Content-Type' => 'text/plain');
is($res->code, 415, 'text/plain: 415');

# PKCS#8 with a passphrase is accepted
$res = $api->post('/api/keys', { name => 'pkcs8', username => 'u', private_key => $k{pkcs8},
                                 passphrase => $pass });
is($res->code, 201, 'PKCS#8 RSA with a passphrase') or diag($res->body);
is($res->json->{bits}, 2048, '2048 bits');

# PATCH replaces the key: type and fingerprint follow, the passphrase too
$res = $api->patch("/api/keys/$kid", { private_key => $k{enc}, passphrase => $pass,
                                       main_device => $dev });
is($res->code, 200, 'PATCH with a new key') or diag($res->body);
ok($res->json->{has_passphrase}, 'now has a passphrase');
is($res->json->{main_device}, $dev, 'main device added');
is_deeply($res->json->{devices}, [$dev], 'and associated');
$res = $api->patch("/api/keys/$kid", { private_key => $k{other} });
is($res->code, 200, 'PATCH with a key without passphrase');
ok(!$res->json->{has_passphrase}, 'the old passphrase went with the old key');
like($res->json->{type}, qr/^ecdsa-sha2-/, 'type recomputed');
$res = $api->patch("/api/keys/$kid", { devices => [] });
is_deeply($res->json->{devices}, [], 'devices emptied');
is($res->json->{main_device}, undef, 'and no main device');

$t->stop;
my $log = SeguraTest::slurp($t->error_log);
like($log, qr/\[info\].*segura api: refused "passphrase": passphrase_wrong/,
     'a refused key is logged at info with its reason');
like($log, qr/\[info\].*segura api: refused by constraint "ssh_keys_name_key"/,
     'a conflict is logged at info with the constraint');
ok($log !~ /\[error\]/, 'bad input is no [error]');

SeguraTest::done();
