# POST /api/keys/{id}/check: four devices in one call come back deployed,
# refused, unreachable and host_key_mismatch, quickly, with no session
# opened on any device; the results are stored, audited and shown in the
# Remote Access report and the SSH keys report.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time);
use SeguraTest;
use SeguraTest::Api;
use SeguraTest::Session;

my $TIMEOUT = 5;    # segura_connect_timeout, generous: no timing flake

my $t = SeguraTest->new(sshd => 1);
my $strict_port = SeguraTest::free_port();
$t->run(SeguraTest::Session::config("segura_connect_timeout ${TIMEOUT}s;")
        . <<"CONF");
    server {
        listen 127.0.0.1:$strict_port;
        segura_host_key_policy strict;
        location /api/ { segura_api; }
    }
CONF

my $db = $t->db;
my $sshd = $t->sshd;
my $sshd2 = SeguraTest::Sshd->new($t->dir . '/sshd2');   # knows no key
END { $sshd2->stop if $sshd2 }

my $admin = SeguraTest::Api::add_user($db, 'root', 'root-password-1', admin => 1);
my $api = SeguraTest::Api->new($t);
is($api->login('root', 'root-password-1')->code, 200, 'admin logs in');

# the key, in the first sshd's authorized_keys only
my ($path) = $sshd->keygen('checked', type => 'ed25519');
$sshd->authorize(SeguraTest::slurp("$path.pub"));
my $key = SeguraTest::Session::register_key($t, $path);

# a host key that is not the first sshd's, pinned on the fourth device
my ($other) = $sshd->keygen('not-the-host', type => 'ed25519');
my ($otype, $ob64) = split ' ', SeguraTest::slurp("$other.pub");
my ($ofp) = `ssh-keygen -lf $other.pub` =~ /^\d+ (SHA256:\S+)/;

my $closed = SeguraTest::free_port();
my %dev = (
    deployed    => $db->insert_device(name => 'has-key', port => $sshd->port),
    refused     => $db->insert_device(name => 'no-key', port => $sshd2->port),
    unreachable => $db->insert_device(name => 'closed', port => $closed),
    mismatch    => $db->insert_device(name => 'other-host', port => $sshd->port,
                                      host_key => "$otype $ob64",
                                      host_key_fingerprint => $ofp),
);
my %want = (deployed => 'deployed', refused => 'refused',
            unreachable => 'unreachable', mismatch => 'host_key_mismatch');
$db->associate(key => $key, device => $dev{deployed}, main => 1);
$db->associate(key => $key, device => $dev{$_}) for qw(refused unreachable mismatch);

my $accepted = sub {
    my @a = SeguraTest::slurp($sshd->log) =~ /^Accepted publickey for /mg;
    scalar @a;
};
my $before = $accepted->();

my $t0 = time;
my $res = $api->post('/api/keys/' . $key . '/check', {});
my $elapsed = time - $t0;
is($res->code, 200, 'check: 200') or diag($res->body);
my $j = $res->json || {};
note(sprintf 'four devices checked in %.3f s (connect timeout %d s)',
     $elapsed, $TIMEOUT);
ok($elapsed < $TIMEOUT + 1, 'the call ends within connect_timeout + 1 s');

is($j->{key}, $key, 'the key');
is($j->{total}, 4, 'four devices');
is($j->{deployed}, 1, 'deployed on one');
my %got = map { $_->{device} => $_ } @{ $j->{items} || [] };
for my $w (sort keys %want) {
    is($got{$dev{$w}}{result}, $want{$w}, "$w device: $want{$w}")
        or diag(explain $got{$dev{$w}});
    like($got{$dev{$w}}{checked_at} // '', qr/^\d{4}-\d\d-\d\dT/, "$w device: checked_at");
}
is($j->{items}[0]{device}, $dev{deployed}, 'the main device first');
like($got{$dev{mismatch}}{detail} // '', qr/\Q$ofp\E/, 'the mismatch names the pinned key');

# the device side: one accepted key, and no session, channel or shell
is($accepted->() - $before, 1, 'the deployed device accepted the key once');
for my $s ($sshd, $sshd2) {
    unlike(SeguraTest::slurp($s->log), qr/Starting session|session opened|subsystem request/,
           'no session opened on ' . $s->dir);
}

# stored, pinned on first use, audited
my $rows = $db->dbh->selectall_hashref(
    'select device_id, result, checked_by from key_checks where key_id = ?',
    'device_id', undef, $key);
is(scalar keys %$rows, 4, 'four rows in key_checks');
is($rows->{$dev{$_}}{result}, $want{$_}, "stored: $_") for sort keys %want;
is($rows->{$dev{deployed}}{checked_by}, $admin, 'checked_by the admin');
my ($pinned) = $db->dbh->selectrow_array(
    'select host_key from devices where id = ?', undef, $dev{deployed});
my ($htype, $hb64) = split ' ', $sshd->host_key_line('ed25519');
is($pinned, "$htype $hb64", 'TOFU: the host key is pinned');
my ($detail) = $db->dbh->selectrow_array(q{
    select detail::text from audit_log where action = 'check'
    and object_type = 'ssh_key' and object_id = ?}, undef, "$key");
like($detail // '', qr/"deployed": ?1/, 'audited: deployed 1');
like($detail // '', qr/"total": ?4/, 'audited: total 4');

# the Remote Access report and the SSH keys report
my $rep = $api->get("/api/keys/$key/devices")->json;
my %rep = map { $_->{id} => $_ } @{ $rep->{items} };
is($rep{$dev{$_}}{check}{result}, $want{$_}, "report: $_") for sort keys %want;
my $k = $api->get("/api/keys/$key")->json;
is_deeply($k->{deployment}, { deployed => 1, checked => 4, devices => 4 },
          'the key: deployed on 1 of 4');
my ($listed) = grep { $_->{id} == $key } @{ $api->get('/api/keys')->json->{items} };
is($listed->{deployment}{deployed}, 1, 'the SSH keys report says so too');

# one device, by id
$res = $api->post("/api/keys/$key/check", { devices => [$dev{refused}] });
is($res->code, 200, 'one device: 200');
is(scalar @{ $res->json->{items} }, 1, 'one device: one result');
is($res->json->{items}[0]{result}, 'refused', 'one device: refused');

# a heavy RSA key: offered first, signed in a pool thread, still no shell
my $rsa = $api->post('/api/keys/generate', { name => 'heavy', username => $sshd->user,
                                             type => 'rsa-3072',
                                             devices => [$dev{deployed}, $dev{refused}] });
is($rsa->code, 201, 'an RSA-3072 key') or diag($rsa->body);
$sshd->authorize($rsa->json->{authorized_keys});
$res = $api->post('/api/keys/' . $rsa->json->{id} . '/check', {});
my %heavy = map { $_->{device} => $_->{result} } @{ $res->json->{items} || [] };
is($heavy{$dev{deployed}}, 'deployed', 'RSA-3072: deployed where authorized');
is($heavy{$dev{refused}}, 'refused', 'RSA-3072: refused elsewhere');

# a user granted the key on one device checks that one by default
my $carol = SeguraTest::Api::add_user($db, 'carol', 'carol-password-1');
$db->grant(group => $db->insert_group, members => [$carol], keys => [$key],
           devices => [$dev{deployed}]);
my $capi = SeguraTest::Api->new($t);
is($capi->login('carol', 'carol-password-1')->code, 200, 'carol logs in');
$res = $capi->post("/api/keys/$key/check", {});
is($res->code, 200, 'carol: 200') or diag($res->body);
is_deeply([ map { [$_->{device}, $_->{result}] } @{ $res->json->{items} || [] } ],
          [ [$dev{deployed}, 'deployed'] ], 'carol: her one device, deployed');
$capi->refused($db, 'POST', "/api/keys/$key/check", { devices => [$dev{refused}] },
               { status => 422, code => 'invalid_field', field => 'devices' },
               'carol: a device she may not use');

# strict policy: a device without a pin is not trusted
my $fresh = $db->insert_device(name => 'unpinned', port => $sshd->port);
$db->associate(key => $key, device => $fresh);
my $strict = SeguraTest::Api->new(bless({ %$t, port => $strict_port }, ref $t));
is($strict->login('root', 'root-password-1')->code, 200, 'admin logs in (strict)');
$res = $strict->post("/api/keys/$key/check", { devices => [$fresh] });
is($res->json->{items}[0]{result}, 'host_key_unknown', 'strict: host_key_unknown')
    or diag($res->body);

# refusals
my $bad = { status => 422, code => 'invalid_field', field => 'devices' };
$api->refused($db, 'POST', "/api/keys/$key/check", { devices => [999999] },
              $bad, 'a device not of the key');
$api->refused($db, 'POST', "/api/keys/$key/check", { devices => 'x' },
              $bad, 'devices not ids');
$api->refused($db, 'POST', "/api/keys/$key/check", { device => [1] },
              { %$bad, field => 'device' }, 'unknown field');
$api->refused($db, 'GET', "/api/keys/$key/check", undef,
              { status => 405, code => 'method_not_allowed' }, 'GET');
$api->refused($db, 'POST', '/api/keys/999999/check', {},
              { status => 404, code => 'not_found' }, 'unknown key');

# a user who may not use the key does not see it
SeguraTest::Api::add_user($db, 'bob', 'bob-password-1');
my $bob = SeguraTest::Api->new($t);
is($bob->login('bob', 'bob-password-1')->code, 200, 'bob logs in');
$bob->refused($db, 'POST', "/api/keys/$key/check", {},
              { status => 404, code => 'not_found' }, 'not granted');

# the sign used above is reliable: a real session does log it
my $g = $db->insert_group;
$db->grant(group => $g, members => [$admin], keys => [$key], devices => [$dev{deployed}]);
my $f = { key => $key, device => $dev{deployed}, cookie => 'segura_session=' . $api->cookie };
my ($ws) = SeguraTest::Session::live($t, $f, 'after-check');
$ws->send_binary("exit\n");
is($ws->wait_close(10), 1000, 'the session ends');
ok(SeguraTest::wait_for(sub { SeguraTest::slurp($sshd->log) =~ /Starting session/ }, 10),
   'a session is what sshd logs as "Starting session"');

# the results go with their device and their key
is($api->delete("/api/devices/$dev{unreachable}")->code, 200, 'a device deleted');
is($db->dbh->selectrow_array('select count(*) from key_checks where device_id = ?',
                             undef, $dev{unreachable}), 0, 'its checks are gone');
is($api->get("/api/keys/$key")->json->{deployment}{devices}, 4,
   'the key counts the devices it still has');
is($api->delete("/api/keys/$key")->code, 200, 'the key deleted');
is($db->dbh->selectrow_array('select count(*) from key_checks where key_id = ?',
                             undef, $key), 0, 'its checks are gone');

unlike(SeguraTest::slurp($t->error_log), qr/\[error\]/, 'no [error] in the log');

$sshd2->stop;
SeguraTest::done();
