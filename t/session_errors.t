# What goes wrong on the device side after the upgrade reaches the
# browser as an error event and a 4xxx close code: host key changed or
# unknown, key not deployed, port closed, port silent; a slow device
# delays only its own session.
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time);
use SeguraTest;
use SeguraTest::Session;
use SeguraTest::WS;

my $t = SeguraTest->new(sshd => 1);
$t->run(SeguraTest::Session::config(
    'location = /strict { segura_host_key_policy strict; segura_session; }
     location = /fast { segura_connect_timeout 1500ms; segura_session; }'));
my $db = $t->db;
my $dbh = $db->dbh;
my $sshd = $t->sshd;

sub error_case {
    my ($ws, $code, $close, $name) = @_;
    my $e = $ws->wait_event('error', 20);
    is($e && $e->{code}, $code, "$name: error event $code") or diag(explain [$ws->events]);
    ok(length($e && $e->{message} // '') > 0, "$name: with a message for a person");
    is($ws->wait_close(10), $close, "$name: close code $close");
    ok(!$ws->event('connected'), "$name: never connected");
}

sub publickey_lines {
    my @l = SeguraTest::slurp($sshd->log) =~ /^.*publickey.*$/mg;
    return scalar @l;
}

# TOFU: the first session pins the host key it saw
my $f = SeguraTest::Session::fixture($t);
my $ws = SeguraTest::Session::open_ws($t, $f);
ok($ws->wait_event('connected', 20), 'tofu: the first session connects');
$ws->close(1000);
$ws->wait_eof(10);
my ($pinned, $pinned_fp) = $dbh->selectrow_array(
    'select host_key, host_key_fingerprint from devices where id = ?', undef, $f->{device});
my $fp = `ssh-keygen -lf $sshd->{dir}/host_ed25519.pub`;
like($fp, qr/\Q$pinned_fp\E/, 'tofu: the pinned fingerprint is the sshd host key');
like($pinned, qr/^ssh-ed25519 AAAA/, 'tofu: the pinned key line');
ok($dbh->selectrow_array(q{select count(*) from audit_log where action = 'host_key_pinned'}),
   'tofu: pinning is in the audit log');

# the host key changes: refused before any authentication
my ($other) = $sshd->keygen('otherhost', type => 'ed25519');
my $other_line = SeguraTest::slurp("$other.pub");
$other_line =~ s/\s+\S+\s*$//;
my ($other_fp) = `ssh-keygen -lf $other.pub` =~ /(SHA256:\S+)/;
$dbh->do('update devices set host_key = ?, host_key_fingerprint = ? where id = ?',
         undef, $other_line, $other_fp, $f->{device});
my $auth_before = publickey_lines();
$ws = SeguraTest::Session::open_ws($t, $f);
error_case($ws, 'host_key_mismatch', 4003, 'changed host key');
is(publickey_lines(), $auth_before, 'changed host key: no authentication was attempted');
like(SeguraTest::slurp($t->error_log), qr/\[error\].*does not match the pinned/,
     'changed host key: logged as an error');

# strict: a device without a pinned key is refused
my $f2 = SeguraTest::Session::fixture($t);
$ws = SeguraTest::WS->connect($t->port, "/strict?key=$f2->{key}&device=$f2->{device}",
                              Cookie => $f2->{cookie});
error_case($ws, 'host_key_unknown', 4004, 'strict without a pin');
ok(!defined $dbh->selectrow_array('select host_key from devices where id = ?', undef, $f2->{device}),
   'strict: nothing was pinned');

# strict with the right pin works
my $right = $sshd->host_key_line('ed25519');
my ($right_fp) = `ssh-keygen -lf $sshd->{dir}/host_ed25519.pub` =~ /(SHA256:\S+)/;
$dbh->do('update devices set host_key = ?, host_key_fingerprint = ? where id = ?',
         undef, $right, $right_fp, $f2->{device});
$ws = SeguraTest::WS->connect($t->port, "/strict?key=$f2->{key}&device=$f2->{device}",
                              Cookie => $f2->{cookie});
ok($ws->wait_event('connected', 20), 'strict with the pinned key connects');
$ws->close(1000);
$ws->wait_eof(10);

# a key that is not deployed on the device
my $f3 = SeguraTest::Session::fixture($t, authorize => 0);
$ws = SeguraTest::Session::open_ws($t, $f3);
error_case($ws, 'auth_rejected', 4005, 'key not in authorized_keys');
like($ws->event('error')->{message}, qr/public key deployed/, 'auth_rejected: says what to check');

# a closed port
my $closed = SeguraTest::free_port();
my $f4 = SeguraTest::Session::fixture($t, port => $closed);
my $t0 = time;
$ws = SeguraTest::Session::open_ws($t, $f4);
error_case($ws, 'device_unreachable', 4001, 'closed port');
my $took = time - $t0;
ok($took < 1, sprintf('closed port: answered within a second (%.3f s)', $took));

# a port that accepts and never speaks, while another session echoes
my $silent = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                   Listen => 16, ReuseAddr => 1) or die;
my $f5 = SeguraTest::Session::fixture($t, port => $silent->sockport);
$dbh->do('update devices set host_key = null, host_key_fingerprint = null where id = ?',
         undef, $f->{device});
my $live = SeguraTest::Session::open_ws($t, $f);
ok($live->wait_event('connected', 20), 'a live session for the echo check');

$t0 = time;
my $slow = SeguraTest::WS->connect($t->port, "/fast?key=$f5->{key}&device=$f5->{device}",
                                   Cookie => $f5->{cookie});
is($slow->{status}, 101, 'silent port: upgraded');

my ($echoes, $worst) = (0, 0);
for my $n (1 .. 8) {
    my $s = time;
    $live->send_binary("echo tick$n-\$((1+$n))\n");
    my $want = "tick$n-" . (1 + $n);
    $echoes++ if $live->wait_for(sub { $live->output =~ /\Q$want\E/ }, 5);
    $worst = time - $s if time - $s > $worst;
    $slow->parse;
    $slow->fill(time + 0.15);
}
is($echoes, 8, 'the other session echoed throughout the slow connect');
# blocked behind the slow connect, an echo would wait its 1.5 s
ok($worst < 1.5, sprintf('and never waited as long as the slow connect (worst %.3f s)', $worst));

error_case($slow, 'connect_timeout', 4002, 'silent port');
$took = time - $t0;
ok($took >= 1.4, sprintf('silent port: not before the configured 1.5 s (%.3f s)', $took));
ok($took < 6, sprintf('silent port: soon after it (%.3f s)', $took));

$live->send_binary("exit\n");
is($live->wait_close(10), 1000, 'the live session ends normally');

SeguraTest::done();
