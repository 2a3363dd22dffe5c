# POST /api/keys/{id}/rotate, GET /api/keys/{id}/rotations and the
# schedule (rotation_days), against real OpenSSH and dropbear devices:
#
#   A  OpenSSH reading the login user's ~/.ssh/authorized_keys
#   B  dropbear, the same user (so the same file: a second implementation)
#   C  OpenSSH reading only a root-owned file of the test's: it accepts
#      the key it has, and never the new one (the add edits the user's
#      file, which C does not read): the device keeps the old key
#   D  OpenSSH reading an empty file: it refuses the current key
#
# A rotation moves A and B to a new pair (the old line gone from the file,
# comments and other keys kept), keeps C on version 1 and reports C and D;
# sessions then work on A, B (new key) and C (old key).  Then: the history,
# a retry, a conflict with a running rotation, the reaper, errors,
# another type, a key without devices, the schedule, and no private key
# in the database or the log.
use strict;
use warnings;
use Test::More;
use SeguraTest;
use SeguraTest::Api;
use SeguraTest::Device;
use SeguraTest::Dropbear;
use SeguraTest::LoginUser;
use SeguraTest::Session;

plan skip_all => 'needs root (a throwaway login user)' unless $> == 0;
plan skip_all => 'needs dropbear (tools/deps.sh test)'
    unless -x '/usr/sbin/dropbear';

my $t = SeguraTest->new(sshd => 1);
my $TIMEOUT = 10;
$t->run("segura_rotation_schedule 1s;\n    segura_rotation_retry 1h;\n"
        . SeguraTest::Session::config("segura_connect_timeout ${TIMEOUT}s;"));

my $db = $t->db;
my $dbh = $db->dbh;
my $user = SeguraTest::LoginUser->new($t);
my $pw = $user->password;
$t->canary($pw);

my $sa = SeguraTest::Sshd->new($t->dir . '/sshd-a', user_keys => 1,
                                password => 1);
my $sb = SeguraTest::Dropbear->new($t->dir . '/dropbear-b');
my $cfile = $t->dir . '/c-keys';
my $dfile = $t->dir . '/d-keys';
for my $f ($cfile, $dfile) {
    open my $fh, '>', $f or die $!; close $fh; chmod 0644, $f;
}
my $sc = SeguraTest::Sshd->new($t->dir . '/sshd-c', keys_file => $cfile);
my $sd = SeguraTest::Sshd->new($t->dir . '/sshd-d', keys_file => $dfile);
END { $_->stop for grep { $_ } ($sa, $sc, $sd) }

SeguraTest::Api::add_user($db, 'root', 'root-password-1', admin => 1);
my $api = SeguraTest::Api->new($t);
is($api->login('root', 'root-password-1')->code, 200, 'admin logs in');

my $da = $db->insert_device(name => 'a-openssh', port => $sa->port);
my $db_ = $db->insert_device(name => 'b-dropbear', port => $sb->port);
my $dc = $db->insert_device(name => 'c-fixed', port => $sc->port);
my $dd = $db->insert_device(name => 'd-refuses', port => $sd->port);

my $res = $api->post('/api/keys/generate', {
    name => 'rotated', username => $user->name,
    devices => [$da, $db_, $dc, $dd], main_device => $da });
is($res->code, 201, 'generate: 201') or diag($res->body);
my $key = $res->json->{id};
my $line1 = $res->json->{authorized_keys};
my $pub1 = $res->json->{public_key};
is($res->json->{version}, 1, 'a new key is version 1');
is($res->json->{rotation_days}, undef, 'no schedule');

my $file = $user->home . '/.ssh/authorized_keys';
sub slurp { SeguraTest::slurp($_[0]) }

$res = $api->post("/api/keys/$key/deploy",
                  { devices => [$da], via => { password => $pw } });
is($res->json->{items}[0]{result}, 'deployed', 'deployed on A')
    or diag($res->body);

# what else is in the user's file stays there, byte for byte
my $other = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherOtherOtherOtherOtherOtherOtherOth other';
open my $fh, '>>', $file or die $!;
print $fh "# a comment of the user's\n$other\n";
close $fh;

open $fh, '>', $cfile or die $!;
print $fh "$line1\n";
close $fh;

$res = $api->post("/api/keys/$key/check", {});
my %check = map { $_->{device} => $_->{result} } @{ $res->json->{items} };
is_deeply([ @check{$da, $db_, $dc, $dd} ],
          [qw(deployed deployed deployed refused)],
          'before: A, B and C take the key, D refuses it')
    or diag($res->body);

my $alog_before = length slurp($sa->log);

# the rotation
$res = $api->post("/api/keys/$key/rotate", {});
is($res->code, 200, 'rotate: 200') or diag($res->body);
my $rot = $res->json;
is($rot->{status}, 'partial', 'rotate: partial');
is($rot->{trigger}, 'manual', 'rotate: manual');
is($rot->{from_version}, 1, 'from version 1');
is($rot->{to_version}, 2, 'to version 2');
is($rot->{total}, 4, 'four devices');
is($rot->{rotated}, 2, 'two rotated');
is($rot->{type}, 'ssh-ed25519', 'the same type');
is($rot->{started_by_name}, 'root', 'who started it');
ok($rot->{ended_at}, 'it ended');
my %item = map { $_->{device} => $_ } @{ $rot->{items} };
is($item{$da}{result}, 'rotated', 'A: rotated') or diag(explain $item{$da});
is($item{$db_}{result}, 'rotated', 'B (dropbear): rotated')
    or diag(explain $item{$db_});
is($item{$dc}{result}, 'verify_failed', 'C: the new key was not accepted')
    or diag(explain $item{$dc});
like($item{$dc}{detail}, qr/did not accept the new key/, 'C: why');
is($item{$dd}{result}, 'refused', 'D: refused the current key')
    or diag(explain $item{$dd});
is($item{$da}{version}, 2, 'A uses version 2');
is($item{$dc}{version}, 1, 'C keeps version 1');
is($item{$dd}{version}, 1, 'D keeps version 1');
is($item{$da}{name}, 'a-openssh', 'items name their device');

$res = $api->get("/api/keys/$key");
my $k = $res->json;
is($k->{version}, 2, 'the key is version 2');
isnt($k->{public_key}, $pub1, 'with a new public key');
ok($k->{rotated_at}, 'rotated_at is set');
is($k->{rotation}{behind}, 2, 'two devices behind');
ok(!$k->{rotation}{running}, 'nothing running');
my $line2 = "$k->{public_key} segura-key-$key";

my $text = slurp($file);
like($text, qr/^\Q$line2\E$/m, 'the new line is in the file');
unlike($text, qr/\Q$pub1\E/, 'the old key is gone from the file');
like($text, qr/^# a comment of the user's\n\Q$other\E$/m,
     'the comment and the other key are kept');
is(sprintf('%04o', (stat $file)[2] & 07777), '0600', 'the mode is kept');

my $alog = substr(slurp($sa->log), $alog_before);
like($alog, qr/Starting session: command for/, 'A ran commands');
unlike($alog, qr/Starting session: shell/, 'A started no shell');

$res = $api->get("/api/keys/$key/devices");
my %rep = map { $_->{id} => $_ } @{ $res->json->{items} };
is($rep{$da}{version}, 2, 'report: A on version 2');
ok(!$rep{$da}{behind}, 'report: A is not behind');
is($rep{$dc}{version}, 1, 'report: C on version 1');
ok($rep{$dc}{behind}, 'report: C is behind');
is($rep{$da}{check}{result}, 'deployed', 'report: A deployed');
is($rep{$dd}{check}{result}, 'refused', 'report: D refused');

my ($nver) = $dbh->selectrow_array(
    'select count(*) from ssh_key_versions where key_id = ?', undef, $key);
is($nver, 1, 'version 1 is kept for the devices behind');

# sessions: A and B with the new key, C with the old one
my $web = $db->insert_user;
my $token = SeguraTest::Session::random_token();
$db->insert_web_session(user => $web, token => $token);
$db->grant(members => [$web], keys => [$key], devices => [$da, $db_, $dc]);
for my $d ([$da, 'A'], [$db_, 'B'], [$dc, 'C']) {
    my ($ws) = SeguraTest::Session::live($t, { key => $key, device => $d->[0],
        cookie => SeguraTest::Session::cookie_for($token) },
        "after the rotation, $d->[1]");
    $ws->close if $ws;
}

# the history
$res = $api->get("/api/keys/$key/rotations");
is($res->code, 200, 'rotations: 200');
is(scalar @{ $res->json->{items} }, 1, 'one rotation');
is($res->json->{items}[0]{id}, $rot->{id}, 'that one');
is(scalar @{ $res->json->{items}[0]{items} }, 4, 'with its devices');

my ($audit) = $dbh->selectrow_array(q{
    select detail->>'status' from audit_log
    where action = 'rotate' and object_id = ? order by id desc limit 1},
    undef, "$key");
is($audit, 'partial', 'the rotation is in audit_log');

# a retry: C now also reads the current key; its old line stays, so the
# old key is still accepted there and it says so
open $fh, '>>', $cfile or die $!;
print $fh "$line2\n";
close $fh;

$res = $api->post("/api/keys/$key/rotate", { retry => \1 });
is($res->code, 200, 'retry: 200') or diag($res->body);
%item = map { $_->{device} => $_ } @{ $res->json->{items} };
is_deeply([ sort { $a <=> $b } keys %item ], [ sort { $a <=> $b } $dc, $dd ],
          'retry: only the devices behind');
is($item{$dc}{result}, 'old_accepted', 'retry: C switched, old key accepted')
    or diag(explain $item{$dc});
is($item{$dc}{version}, 2, 'retry: C on version 2');
is($item{$dd}{result}, 'refused', 'retry: D still refuses');
is($res->json->{to_version}, 2, 'retry: no new version');
is($res->json->{retry}, JSON::PP::true, 'retry: marked');
$res = $api->get("/api/keys/$key");
is($res->json->{rotation}{behind}, 1, 'one device behind');

# a running rotation of a live worker is a conflict; one of a lost worker
# is ended as interrupted
my ($worker) = $dbh->selectrow_array(
    'select id from segura_workers order by heartbeat_at desc limit 1');
ok($worker, 'a worker row');
$dbh->do(q{insert into key_rotations (key_id, trigger, from_version,
           worker_id) values (?, 'manual', 2, ?)}, undef, $key, $worker);
$res = $api->post("/api/keys/$key/rotate", {});
is($res->code, 409, 'a running rotation: 409') or diag($res->body);
is($res->json->{error}{code}, 'conflict', 'conflict');
$dbh->do(q{update key_rotations set worker_id = gen_random_uuid(),
           started_at = now() - interval '1 minute'
           where key_id = ? and status = 'running'}, undef, $key);

# another type, on A and B only; C and D are left out by a key of their own
my $k2 = $api->post('/api/keys/generate', {
    name => 'typed', username => $user->name, devices => [$da, $db_] });
my $key2 = $k2->json->{id};
$res = $api->post("/api/keys/$key2/deploy",
                  { devices => [$da], via => { key => $key } });
is($res->json->{items}[0]{result}, 'deployed', 'key 2 deployed via key 1')
    or diag($res->body);
$res = $api->post("/api/keys/$key2/rotate", { type => 'ecdsa-p256' });
is($res->code, 200, 'rotate to ECDSA: 200') or diag($res->body);
is($res->json->{status}, 'rotated', 'rotate to ECDSA: rotated')
    or diag($res->body);
is($res->json->{type}, 'ecdsa-sha2-nistp256', 'the new type');
$res = $api->get("/api/keys/$key2");
is($res->json->{type}, 'ecdsa-sha2-nistp256', 'the key is ECDSA now');
is($res->json->{bits}, 256, 'P-256');

# the reaper: the lost worker's row ended as interrupted before this
my ($interrupted) = $dbh->selectrow_array(q{
    select count(*) from key_rotations where key_id = ?
    and status = 'interrupted'}, undef, $key);
is($interrupted, 0, 'not reaped before a rotation of that key');
$res = $api->post("/api/keys/$key/rotate", { retry => \1 });
is($res->code, 200, 'the lost worker\'s rotation does not hold the key')
    or diag($res->body);
($interrupted) = $dbh->selectrow_array(q{
    select count(*) from key_rotations where key_id = ?
    and status = 'interrupted'}, undef, $key);
is($interrupted, 1, 'it was ended as interrupted');

# a key without devices just gets a new pair
my $k3 = $api->post('/api/keys/generate',
                    { name => 'alone', username => 'nobody' })->json;
$res = $api->post("/api/keys/$k3->{id}/rotate", '');
is($res->code, 200, 'an empty body, no devices: 200') or diag($res->body);
is($res->json->{status}, 'rotated', 'no devices: rotated');
is($res->json->{total}, 0, 'no devices: total 0');
is($api->get("/api/keys/$k3->{id}")->json->{version}, 2, 'version 2');

# errors
my %bad = (
    'type' => [ { type => 'dsa' }, 422, 'invalid_field', 'type' ],
    'type and retry' => [ { type => 'ed25519', retry => \1 }, 422,
                          'invalid_field', 'type' ],
    'retry not a bool' => [ { retry => 1 }, 422, 'invalid_field', 'retry' ],
    'unknown field' => [ { devices => [1] }, 422, 'invalid_field',
                         'devices' ],
    'not JSON' => [ '{', 400, undef, undef ],
);
for my $n (sort keys %bad) {
    my ($body, $status, $code, $field) = @{ $bad{$n} };
    $res = $api->post("/api/keys/$key/rotate", $body);
    is($res->code, $status, "$n: $status") or diag($res->body);
    is($res->json->{error}{code}, $code, "$n: $code") if $code;
    is($res->json->{error}{field}, $field, "$n: names $field") if $field;
}
$res = $api->post("/api/keys/999999/rotate", {});
is($res->code, 404, 'unknown key: 404');
$res = $api->get("/api/keys/999999/rotations");
is($res->code, 404, 'rotations of an unknown key: 404');
$res = $api->get("/api/keys/$key/rotate");
is($res->code, 405, 'GET rotate: 405');
$res = $api->post("/api/keys/$key/rotations", {});
is($res->code, 405, 'POST rotations: 405');
my $anon = SeguraTest::Api->new($t);
is($anon->post("/api/keys/$key/rotate", {})->code, 401, 'no login: 401');
SeguraTest::Api::add_user($db, 'plain', 'plain-password-1');
my $plain = SeguraTest::Api->new($t);
$plain->login('plain', 'plain-password-1');
is($plain->post("/api/keys/$key/rotate", {})->code, 403, 'not admin: 403');
is($plain->get("/api/keys/$key/rotations")->code, 403,
   'history, not admin: 403');

for my $d ([0, 422], [3651, 422], ['x', 422]) {
    $res = $api->patch("/api/keys/$key", { rotation_days => $d->[0] });
    is($res->code, $d->[1], "rotation_days $d->[0]: $d->[1]");
}

# the schedule: due once rotated_at is a day and more ago
$res = $api->patch("/api/keys/$key", { rotation_days => 1 });
is($res->code, 200, 'rotation_days 1') or diag($res->body);
is($res->json->{rotation_days}, 1, 'rotation_days is 1');
ok($res->json->{rotation}{next_at}, 'next_at is set');
my ($n0) = $dbh->selectrow_array(
    'select count(*) from key_rotations where key_id = ?', undef, $key);
$dbh->do(q{update ssh_keys set rotated_at = now() - interval '2 days'
           where id = ?}, undef, $key);
$dbh->do(q{update key_rotations set ended_at = now() - interval '2 hours'
           where key_id = ?}, undef, $key);
my $sched;
ok(SeguraTest::wait_for(sub {
    $sched = $dbh->selectrow_hashref(q{
        select * from key_rotations where key_id = ? and trigger = 'schedule'
        and status <> 'running' order by id desc limit 1}, undef, $key);
    $sched
}, 60), 'the schedule rotated the key') or diag(slurp($t->error_log));
is($sched->{status}, 'partial', 'scheduled: partial (C and D)');
is($sched->{to_version}, 3, 'scheduled: version 3');
my ($nsched) = $dbh->selectrow_array(q{select count(*) from key_rotations
    where key_id = ? and trigger = 'schedule'}, undef, $key);
is($nsched, 1, 'once: the key is not due again');
$res = $api->patch("/api/keys/$key", { rotation_days => undef });
is($res->json->{rotation_days}, undef, 'the schedule is off again');
my ($ok3) = SeguraTest::Session::live($t, { key => $key, device => $da,
    cookie => SeguraTest::Session::cookie_for($token) }, 'version 3 on A');
$ok3->close if $ok3;

# a replaced key is a new key everywhere: no device stays behind
$res = $api->patch("/api/keys/$key2", {
    private_key => slurp($t->dir . '/sshd-a/host_ed25519') });
is($res->code, 200, 'key 2 replaced') or diag($res->body);

# no private key in the database in the clear, nor in the log
my $dump = `pg_dump --data-only '@{[ $db->conninfo ]}' 2>&1`;
ok($dump =~ /COPY/, 'pg_dump works');
unlike($dump, qr/PRIVATE KEY/, 'no private key text in the database');
ok(index($dump, $pw) < 0, 'no password in the database');
my $log = slurp($t->error_log);
unlike($log, qr/PRIVATE KEY/, 'no private key text in the log');
like($log, qr/segura rotate: key \Q$key\E on device \Q$dd\E: refused/,
     'the log names what happened on each device');

# the key goes with its versions and rotations
is($api->delete("/api/keys/$key")->code, 200, 'key deleted');
my ($left) = $dbh->selectrow_array(q{select
    (select count(*) from ssh_key_versions where key_id = ?)
  + (select count(*) from key_rotations where key_id = ?)}, undef, $key, $key);
is($left, 0, 'its versions and rotations went with it');

$t->stop;
$t->log_checks;
done_testing;
