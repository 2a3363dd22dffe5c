# POST /api/keys/generate: each key type is made inside the module, its
# private half only in the vault (never in a response or a log line), and
# the returned authorized_keys line lets the stored key open a session.
use strict;
use warnings;
use Test::More;
use DBD::Pg qw(:pg_types);
use SeguraTest;
use SeguraTest::Api;
use SeguraTest::Session;

my $t = SeguraTest->new(sshd => 1);
$t->run(SeguraTest::Session::config());

my $db = $t->db;
my $sshd = $t->sshd;
my $admin = SeguraTest::Api::add_user($db, 'root', 'root-password-1', admin => 1);
my $api = SeguraTest::Api->new($t);
is($api->login('root', 'root-password-1')->code, 200, 'admin logs in');
my $cookie = 'segura_session=' . $api->cookie;

my $dev = $db->insert_device(name => 'gen-dev', address => '127.0.0.1',
                             port => $sshd->port);
my $group = $db->insert_group;
$db->grant(group => $group, members => [$admin], devices => [$dev]);

my @responses;

# the vault's plaintext of a key row, opened with the test's master key
sub stored_private_key {
    my ($id) = @_;
    my $dbh = $db->dbh;
    $dbh->{pg_enable_utf8} = 0;
    my ($blob) = $dbh->selectrow_array(
        'select private_key_enc from ssh_keys where id = ?', undef, $id);
    my $file = $t->dir . "/blob.$$";
    open my $fh, '>:raw', $file or die $!;
    print $fh $blob;
    close $fh;
    my $tool = "$SeguraTest::TOP/build/segura-vault";
    my $plain = `$tool open @{[ $t->master_key_file ]} 1 'ssh_keys/$id/private_key' < $file`;
    unlink $file;
    return $? == 0 ? $plain : undef;
}

my @types = (
    [ 'ed25519',    'ssh-ed25519',         256 ],
    [ 'rsa-3072',   'ssh-rsa',             3072 ],
    [ 'rsa-4096',   'ssh-rsa',             4096 ],
    [ 'ecdsa-p256', 'ecdsa-sha2-nistp256', 256 ],
    [ 'ecdsa-p384', 'ecdsa-sha2-nistp384', 384 ],
    [ 'default',    'ssh-ed25519',         256 ],
);

for my $c (@types) {
    my ($type, $ktype, $bits) = @$c;
    my $res = $api->post('/api/keys/generate', {
        name => "gen-$type", username => $sshd->user, tags => ['gen'],
        devices => [$dev], main_device => $dev,
        ($type eq 'default' ? () : (type => $type)) });
    push @responses, $res->body;
    is($res->code, 201, "$type: 201") or diag($res->body);
    my $k = $res->json || {};
    is($k->{type}, $ktype, "$type: key type $ktype");
    is($k->{bits}, $bits, "$type: $bits bits");
    is($k->{main_device}, $dev, "$type: its main device");
    ok(!exists $k->{private_key}, "$type: no private key in the answer");
    like($k->{public_key} // '', qr/^\Q$ktype\E [A-Za-z0-9+\/=]+$/,
         "$type: the public key");
    is($k->{authorized_keys}, "$k->{public_key} segura-key-$k->{id}",
       "$type: an authorized_keys line");

    # the fingerprint is the public key's, as ssh-keygen prints it
    my $pubfile = $t->dir . "/gen-$type.pub";
    open my $fh, '>', $pubfile or die $!;
    print $fh "$k->{authorized_keys}\n";
    close $fh;
    my ($fp) = `ssh-keygen -lf $pubfile` =~ /^\d+ (SHA256:\S+)/;
    is($k->{fingerprint}, $fp, "$type: the fingerprint");

    # the vault holds the matching private key, sealed
    my $priv = stored_private_key($k->{id});
    ok(defined $priv && $priv =~ /PRIVATE KEY-----/, "$type: the vault opens")
        or next;
    my ($body) = grep { !/^-/ && length } split /\n/, $priv;
    $t->canary(substr($body, 0, 60));
    my $privfile = $t->dir . "/gen-$type";
    open $fh, '>', $privfile or die $!;
    print $fh $priv;
    close $fh;
    chmod 0600, $privfile;
    my $derived = `ssh-keygen -y -f $privfile`;
    unlink $privfile;
    is((split ' ', $derived)[1], (split ' ', $k->{public_key})[1],
       "$type: the stored private key is the public key's");

    my ($audit) = $db->dbh->selectrow_array(q{
        select detail::text from audit_log where action = 'generate'
        and object_type = 'ssh_key' and object_id = ?}, undef, "$k->{id}");
    like($audit // '', qr/"fingerprint": ?"\Q$fp\E"/, "$type: audited");

    # the line on the device, then a real session with the stored key
    $sshd->authorize($k->{authorized_keys});
    $db->grant(group => $group, keys => [$k->{id}]);
    my $f = { key => $k->{id}, device => $dev, cookie => $cookie };
    my ($ws) = SeguraTest::Session::live($t, $f, "gen-$type");
    $ws->send_binary("exit\n");
    is($ws->wait_close(10), 1000, "$type: the session ends with 1000");

    my $got = $api->get("/api/keys/$k->{id}");
    push @responses, $got->body;
    ok(!exists $got->json->{private_key}, "$type: GET has no private key");
}

# refusals: 422 JSON naming the field, nothing written
my $bad = { status => 422, code => 'invalid_field' };
$api->refused($db, 'POST', '/api/keys/generate',
              { name => 'x', username => 'u', type => 'dsa' },
              { %$bad, field => 'type' }, 'unknown type');
$api->refused($db, 'POST', '/api/keys/generate',
              { name => 'x', username => 'u', type => 7 },
              { %$bad, field => 'type' }, 'type not a string');
$api->refused($db, 'POST', '/api/keys/generate',
              { name => 'x', username => 'u', private_key => 'k' },
              { %$bad, field => 'private_key' }, 'a private key sent');
$api->refused($db, 'POST', '/api/keys/generate', { username => 'u' },
              { %$bad, field => 'name' }, 'no name');
$api->refused($db, 'POST', '/api/keys/generate',
              { name => 'gen-ed25519', username => 'u' },
              { status => 409, code => 'conflict', field => 'name' },
              'duplicate name');
my $r = $api->refused($db, 'GET', '/api/keys/generate', undef,
                      { status => 405, code => 'method_not_allowed' },
                      'GET');

# a user who is not an administrator may not generate
SeguraTest::Api::add_user($db, 'bob', 'bob-password-1');
my $bob = SeguraTest::Api->new($t);
is($bob->login('bob', 'bob-password-1')->code, 200, 'bob logs in');
$bob->refused($db, 'POST', '/api/keys/generate',
              { name => 'bobs', username => 'u' },
              { status => 403, code => 'forbidden' }, 'not an administrator');

unlike(join("\n", @responses), qr/PRIVATE KEY|private_key"/,
       'no private key in any response');
unlike(SeguraTest::slurp($t->error_log), qr/PRIVATE KEY/,
       'no private key in the log');
unlike(SeguraTest::slurp($t->error_log), qr/\[error\]/, 'no [error] in the log');

SeguraTest::done();
