# POST /api/keys/{id}/deploy and /withdraw: a generated Ed25519 key is
# deployed with a one-time password to a device whose user has no ~/.ssh
# (OpenSSH with StrictModes, and dropbear), a session then opens with it;
# the modes, idempotence, other lines kept, withdraw removes only our line;
# a wrong password is auth_failed; a via key works; the password is in no
# answer, log line (debug level) or database dump; the devices ran a
# command, never a shell.
use strict;
use warnings;
use Test::More;
use SeguraTest;
use SeguraTest::Api;
use SeguraTest::Device;
use SeguraTest::Dropbear;
use Time::HiRes qw(time);
use SeguraTest::LoginUser;
use SeguraTest::Session;

plan skip_all => 'needs root (a throwaway login user)' unless $> == 0;
plan skip_all => 'needs dropbear (tools/deps.sh test)'
    unless -x '/usr/sbin/dropbear';

my $t = SeguraTest->new(sshd => 1);
my $TIMEOUT = 10;   # segura_connect_timeout, generous: no timing flake
$t->run(SeguraTest::Session::config("segura_connect_timeout ${TIMEOUT}s;"));

my $db = $t->db;
my $user = SeguraTest::LoginUser->new($t);
my $pw = $user->password;
$t->canary($pw);

my $sshd = SeguraTest::Sshd->new($t->dir . '/sshd-users', user_keys => 1,
                                  password => 1);
END { $sshd->stop if $sshd }
my $dropbear = SeguraTest::Dropbear->new($t->dir . '/dropbear');

SeguraTest::Api::add_user($db, 'root', 'root-password-1', admin => 1);
my $api = SeguraTest::Api->new($t);
is($api->login('root', 'root-password-1')->code, 200, 'admin logs in');

my @bodies;    # every answer, searched for the password at the end
sub call {
    my ($path, $body) = @_;
    my $res = $api->post($path, $body);
    push @bodies, $res->body;
    return $res;
}

my $dev = $db->insert_device(name => 'openssh', address => '127.0.0.1',
                             port => $sshd->port);
my $dbdev = $db->insert_device(name => 'dropbear', address => '127.0.0.1',
                               port => $dropbear->port);

my $res = call('/api/keys/generate', {
    name => 'deployed', username => $user->name,
    devices => [$dev, $dbdev], main_device => $dev });
is($res->code, 201, 'generate: 201') or diag($res->body);
my $key = $res->json->{id};
my $line = $res->json->{authorized_keys};
like($line, qr/^ssh-ed25519 \S+ segura-key-\Q$key\E$/, 'the line');

my $ssh = $user->home . '/.ssh';
my $file = "$ssh/authorized_keys";
ok(!-e $ssh, 'the user has no ~/.ssh');

sub lines { my $s = SeguraTest::slurp($file); return [ split /\n/, $s ] }
sub mode { return sprintf '%04o', (stat $_[0])[2] & 07777 }

# the first deploy, with the one-time password, on the OpenSSH device
$res = call("/api/keys/$key/deploy",
            { devices => [$dev], via => { password => $pw } });
is($res->code, 200, 'deploy: 200') or diag($res->body);
my $item = $res->json->{items}[0] || {};
is($item->{device}, $dev, 'deploy: the device');
is($item->{result}, 'deployed', 'deploy: deployed') or diag(explain $item);
is($item->{check}, 'deployed', 'deploy: the check agrees');
is($res->json->{done}, 1, 'deploy: one of one');
is(mode($ssh), '0700', '~/.ssh is 0700');
is(mode($file), '0600', 'authorized_keys is 0600');
is((stat $file)[4], $user->uid, 'the file is the user\'s');
is_deeply(lines(), [$line], 'one line: the key\'s');
my @tmp = glob("$ssh/.authorized_keys.*");
is(scalar @tmp, 0, 'no temporary file left');

my ($stored) = $db->dbh->selectrow_array(q{
    select result from key_checks where key_id = ? and device_id = ?},
    undef, $key, $dev);
is($stored, 'deployed', 'the check result is stored');

# the sshd ran a command, and no shell, for the deploy and the verify
my $slog = SeguraTest::slurp($sshd->log);
like($slog, qr/Accepted password for \Q${\ $user->name }\E/,
     'the device took the password');
like($slog, qr/Starting session: command for \Q${\ $user->name }\E/,
     'the device ran a command');
unlike($slog, qr/Starting session: shell/, 'no shell was started');
like($slog, qr/Accepted publickey for \Q${\ $user->name }\E/,
     'the verify logged in with the key');

# twice: still one line
$res = call("/api/keys/$key/deploy",
            { devices => [$dev], via => { password => $pw } });
is($res->json->{items}[0]{result}, 'unchanged', 'deploy again: unchanged')
    or diag($res->body);
is_deeply(lines(), [$line], 'still one line');

# a session opens with the key
my $web = $db->insert_user;
my $token = SeguraTest::Session::random_token();
$db->insert_web_session(user => $web, token => $token);
$db->grant(members => [$web], keys => [$key], devices => [$dev]);
my $f = { key => $key, device => $dev,
          cookie => SeguraTest::Session::cookie_for($token) };
my ($ws) = SeguraTest::Session::live($t, $f, 'deployed key');
$ws->close if $ws;

# other lines and comments are kept, and the file's mode
open my $fh, '>', $file or die $!;
print $fh "# kept comment\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeep other\n"
          . "$line\n\n# last, without newline";
close $fh;
chmod 0640, $file;
my $before = SeguraTest::slurp($file);

$res = call("/api/keys/$key/withdraw",
            { devices => [$dev], via => { password => $pw } });
is($res->code, 200, 'withdraw: 200') or diag($res->body);
$item = $res->json->{items}[0] || {};
is($item->{result}, 'withdrawn', 'withdraw: withdrawn') or diag(explain $item);
is($item->{check}, 'refused', 'withdraw: the check says refused');
(my $want = $before) =~ s/^\Q$line\E\n//m;
$want .= "\n";    # grep ends the last line
is(SeguraTest::slurp($file), $want, 'withdraw: only that line went');
is(mode($file), '0640', 'withdraw: the mode is kept');

$res = call("/api/keys/$key/withdraw",
            { devices => [$dev], via => { password => $pw } });
is($res->json->{items}[0]{result}, 'unchanged', 'withdraw again: unchanged');
is(SeguraTest::slurp($file), $want, 'withdraw again: the file is the same');

$res = call("/api/keys/$key/deploy",
            { devices => [$dev], via => { password => $pw } });
is($res->json->{items}[0]{result}, 'deployed', 'deploy after: deployed');
is(SeguraTest::slurp($file), "$want$line\n",
   'deploy after: appended after a newline, the rest kept');
is(mode($file), '0640', 'deploy after: the mode is kept');

# a wrong password
$res = call("/api/keys/$key/deploy",
            { devices => [$dev], via => { password => "$pw-wrong" } });
is($res->code, 200, 'wrong password: 200');
$item = $res->json->{items}[0] || {};
is($item->{result}, 'auth_failed', 'wrong password: auth_failed')
    or diag(explain $item);
ok(!defined $item->{check}, 'wrong password: no check ran');
is($res->json->{done}, 0, 'wrong password: none done');

# via another key: a second generated key, deployed with the first
$res = call('/api/keys/generate', {
    name => 'second', username => $user->name, devices => [$dev] });
my $key2 = $res->json->{id};
my $line2 = $res->json->{authorized_keys};
$res = call("/api/keys/$key2/deploy", { via => { key => $key } });
is($res->code, 200, 'via key: 200') or diag($res->body);
is($res->json->{items}[0]{result}, 'deployed', 'via key: deployed')
    or diag($res->body);
is_deeply([ grep { /segura-key/ } @{ lines() } ], [$line, $line2],
          'via key: both lines');

# dropbear: deploy and withdraw
$res = call("/api/keys/$key/deploy",
            { devices => [$dbdev], via => { password => $pw } });
is($res->json->{items}[0]{result}, 'unchanged',
   'dropbear: same home, the line is there: unchanged')
    or diag($res->body);
is($res->json->{items}[0]{check}, 'deployed', 'dropbear: takes the key');
$res = call("/api/keys/$key/withdraw",
            { devices => [$dbdev], via => { password => $pw } });
is($res->json->{items}[0]{result}, 'withdrawn', 'dropbear: withdrawn')
    or diag($res->body);
is($res->json->{items}[0]{check}, 'refused', 'dropbear: refuses the key now');
is_deeply([ grep { /segura-key/ } @{ lines() } ], [$line2],
          'dropbear: only that line went');
unlink $file;
rmdir $ssh;
ok(!-e $ssh, 'dropbear: no ~/.ssh again');
$res = call("/api/keys/$key/deploy",
            { devices => [$dbdev], via => { password => $pw } });
is($res->json->{items}[0]{result}, 'deployed', 'dropbear: deployed')
    or diag($res->body);
is(mode($ssh), '0700', 'dropbear: ~/.ssh is 0700');
is(mode($file), '0600', 'dropbear: the file is 0600');
is_deeply(lines(), [$line], 'dropbear: one line');
$res = call("/api/keys/$key/deploy",
            { devices => [$dbdev], via => { password => "$pw-x" } });
is($res->json->{items}[0]{result}, 'auth_failed', 'dropbear: wrong password');

# an unreachable device
my $closed = $db->insert_device(name => 'closed', address => '127.0.0.1',
                                port => SeguraTest::free_port());
$db->associate(key => $key, device => $closed);
$res = call("/api/keys/$key/deploy",
            { devices => [$closed], via => { password => $pw } });
is($res->json->{items}[0]{result}, 'unreachable', 'closed port: unreachable');

# a key withdrawn with itself: the login works, the check then refuses it
$res = call("/api/keys/$key2/withdraw", { via => { key => $key2 } });
is($res->json->{items}[0]{result}, 'auth_failed',
   'not deployed (the file was made anew): the key cannot log in')
    or diag($res->body);
$res = call("/api/keys/$key2/deploy", { via => { key => $key } });
is($res->json->{items}[0]{result}, 'deployed', 'deployed again via the first')
    or diag($res->body);
$res = call("/api/keys/$key2/withdraw", { via => { key => $key2 } });
is($res->json->{items}[0]{result}, 'withdrawn', 'withdrawn via itself')
    or diag($res->body);
ok(!grep({ $_ eq $line2 } @{ lines() }), 'its line is gone');

# a heavy key (RSA-4096: offered, then signed in a pool thread) as the
# via key, and as the key verified
$res = call('/api/keys/generate', {
    name => 'heavy', username => $user->name, type => 'rsa-4096',
    devices => [$dev] });
is($res->code, 201, 'RSA-4096: generated') or diag($res->body);
my $heavy = $res->json->{id};
$res = call("/api/keys/$heavy/deploy", { via => { password => $pw } });
is($res->json->{items}[0]{result}, 'deployed', 'RSA-4096: deployed')
    or diag($res->body);
$res = call("/api/keys/$key2/deploy", { via => { key => $heavy } });
is($res->json->{items}[0]{result}, 'deployed',
   'deployed via the RSA-4096 key') or diag($res->body);
$res = call("/api/keys/$heavy/withdraw", { via => { key => $key2 } });
is($res->json->{items}[0]{result}, 'withdrawn', 'RSA-4096: withdrawn')
    or diag($res->body);

# four devices in one call, each with its own outcome, at once
my $silent = SeguraTest::Device->stall($t, 'banner');
my $sdev = $db->insert_device(name => 'silent', address => '127.0.0.1',
                              port => $silent->port,
                              host_key => $silent->host_key->{line},
                              host_key_fingerprint => $silent->host_key->{fp});
my ($wrong_fp) = `ssh-keygen -lf @{[ $sshd->dir ]}/host_ed25519.pub`
                 =~ /(SHA256:\S+)/;
my $mis = $db->insert_device(name => 'mismatch', address => '127.0.0.1',
                             port => $t->sshd->port,
                             host_key => $sshd->host_key_line('ed25519'),
                             host_key_fingerprint => $wrong_fp);
$db->associate(key => $key, device => $_) for $sdev, $mis;
my $mis_before = $t->sshd->connections;
my $t0 = time;
$res = call("/api/keys/$key/deploy",
            { devices => [$dev, $closed, $sdev, $mis],
              via => { password => $pw } });
my $elapsed = time - $t0;
is($res->code, 200, 'four devices: 200') or diag($res->body);
my %r = map { $_->{device} => $_->{result} } @{ $res->json->{items} || [] };
is_deeply(\%r, { $dev => 'unchanged', $closed => 'unreachable',
                 $sdev => 'timeout', $mis => 'host_key_mismatch' },
          'four devices: unchanged, unreachable, timeout, host_key_mismatch');
note(sprintf 'four devices in %.3f s (timeout %d s)', $elapsed, $TIMEOUT);
ok($elapsed < $TIMEOUT + 3, 'four devices: at once, not one after another');
is($res->json->{done}, 1, 'four devices: one done');
unlike(SeguraTest::slurp($t->sshd->log), qr/Accepted \w+ for/,
       'the mismatched device got no login');

# no device named: nothing is done, and the answer has the same members
for my $action (qw(deploy withdraw)) {
    $res = call("/api/keys/$key/$action",
                { devices => [], via => { password => $pw } });
    is($res->code, 200, "$action of no device: 200") or diag($res->body);
    is_deeply($res->json, { key => $key + 0, action => $action, total => 0,
                            done => 0, items => [] },
              "$action of no device: the action, no item");
}

# bad requests change nothing
my %bad = (
    'no via'        => { devices => [$dev] },
    'via both'      => { via => { key => $key2, password => 'x' } },
    'via empty'     => { via => {} },
    'empty pw'      => { via => { password => '' } },
    'long pw'       => { via => { password => 'x' x 1025 } },
    'via key 0'     => { via => { key => 0 } },
    'unknown field' => { via => { password => 'x' }, extra => 1 },
);
for my $name (sort keys %bad) {
    $api->refused($db, 'POST', "/api/keys/$key/deploy", $bad{$name},
                  { status => 422, code => 'invalid_field' }, $name);
}
$api->refused($db, 'POST', "/api/keys/$key/deploy",
              { devices => [999999], via => { password => 'x' } },
              { status => 422, field => 'devices' }, 'not a device of the key');
$api->refused($db, 'POST', "/api/keys/999999/deploy",
              { via => { password => 'x' } }, { status => 404 }, 'no key');
$api->refused($db, 'POST', "/api/keys/$key/deploy",
              { via => { key => 999999 } }, { status => 422, field => 'via' },
              'no via key');

# a user who is not an administrator may not
SeguraTest::Api::add_user($db, 'plain', 'plain-password-1');
my $plain = SeguraTest::Api->new($t);
is($plain->login('plain', 'plain-password-1')->code, 200, 'plain logs in');
$plain->refused($db, 'POST', "/api/keys/$key/deploy",
                { via => { password => 'x' } }, { status => 403 },
                'not an administrator');

# audited, without the password
my $audit = $db->dbh->selectall_arrayref(q{
    select action, detail::text from audit_log
    where object_type = 'ssh_key' and object_id = ?
      and action in ('deploy', 'withdraw') order by id}, undef, "$key");
ok(@$audit >= 8, 'every deploy and withdraw is audited');
like($audit->[0][1], qr/"via": ?"password"/, 'the audit says how');
like($audit->[0][1], qr/"result": ?"deployed"/, 'the audit says what');
like($audit->[0][1], qr/"device": ?\Q$dev\E\b/, 'the audit says where');

# the password is nowhere
ok(!grep({ index($_, $pw) >= 0 } @bodies), 'the password is in no answer');
my $log = SeguraTest::slurp($t->error_log);
like($log, qr/\[debug\]/, 'the error log is at debug level');
ok(index($log, $pw) < 0, 'the password is not in the error log');
my $dump = `pg_dump --data-only '@{[ $db->conninfo ]}' 2>&1`;
ok(length($dump) > 1000 && $dump =~ /segura-key-\Q$key\E|COPY/,
   'pg_dump works');
ok(index($dump, $pw) < 0, 'the password is not in the database');

SeguraTest::done();
