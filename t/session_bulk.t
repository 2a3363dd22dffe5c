# Bulk output and departures: 50 MiB reach a client that reads slowly,
# complete and in order, while the worker's memory stays bounded; the
# browser leaving mid-output and the device dying mid-session both end
# the session cleanly (audit row completed, no descriptor left).
use strict;
use warnings;
use Test::More;
use Digest::SHA;
use Time::HiRes qw(time sleep);
use SeguraTest;
use SeguraTest::Session;
use SeguraTest::WS;

my $t = SeguraTest->new(sshd => 1);
# a client that goes away ends its session at once here (resume, which
# keeps the shell for a while, is t/session_resume.t's)
$t->run(SeguraTest::Session::config('segura_resume_timeout 0;'));
my $dbh = $t->db->dbh;
my $sshd = $t->sshd;
my ($worker) = $t->workers;
my @ports = ($t->port, $sshd->port);

my $f = SeguraTest::Session::fixture($t);

# a deterministic 50 MiB stream: AES-CTR of zeros, base64 without newlines
my $gen = 'head -c 37500000 /dev/zero | openssl enc -aes-128-ctr -nosalt'
          . ' -K 000102030405060708090a0b0c0d0e0f -iv 00000000000000000000000000000000'
          . ' | base64 -w 0';
my $want = Digest::SHA->new(256);
open my $g, '-|', $gen or die;
binmode $g;
my $total = 0;
while (read $g, my $buf, 1 << 20) { $want->add($buf); $total += length $buf }
close $g;
is($total, 50000000, 'the reference stream is 50 MB');
my $want_hex = $want->hexdigest;

my $ws = SeguraTest::Session::open_ws($t, $f);
ok($ws->wait_event('connected', 20), 'connected');

my $rss0 = $t->worker_rss_kb($worker);

# markers the command line itself does not contain (octal escapes)
$ws->send_binary("printf '\\102\\105\\107\\111\\116\\n'; $gen; printf '\\n\\105\\116\\104\\n'\n");

my ($rss_max, $t0) = (0, time);
my $slow_until = time + 4;
my $deadline = time + 240;
while (time < $deadline) {
    # slow for the first seconds: backpressure all the way to the device
    if (time < $slow_until) {
        sleep 0.01;
        $ws->{sock}->blocking(1);
        sysread($ws->{sock}, my $chunk, 16384) or last;
        $ws->{buf} .= $chunk;
    } else {
        $ws->fill(time + 1);
    }
    $ws->parse;
    my $rss = $t->worker_rss_kb($worker);
    $rss_max = $rss if $rss > $rss_max;
    last if $ws->{output} =~ /\r?\nEND\r?\n/;
}
my $took = time - $t0;

my ($data) = $ws->{output} =~ /[\r\n]BEGIN\r?\n(.*?)\r?\nEND\r?\n/s;
ok(defined $data, "the whole stream arrived between its markers") or diag(substr($ws->{output}, 0, 400) . " ... " . substr($ws->{output}, -300));
is(length($data // ''), 50000000, 'all 50 MB');
is(Digest::SHA::sha256_hex($data // ''), $want_hex, 'complete and in order (SHA-256)');
my $grew = $rss_max - $rss0;
SKIP: {
    # ASan keeps freed memory in quarantine: RSS says nothing there
    skip 'RSS bound: not under AddressSanitizer', 1 if $ENV{ASAN};
    ok($grew < 16 * 1024, "worker memory stayed under 16 MiB more ($grew KiB more)");
}
diag(sprintf('50 MB in %.1f s, worker RSS +%d KiB at most', $took, $grew));

$ws->send_binary("exit\n");
is($ws->wait_close(20), 1000, 'then the shell exits normally');
$ws->wait_eof(10);
$ws->disconnect;

# the browser goes away while output flows
$ws = SeguraTest::Session::open_ws($t, $f);
ok($ws->wait_event('connected', 20), 'gone: connected');
$ws->send_binary("cat /dev/zero | base64\n");
$ws->wait_for(sub { length($ws->output) > 1_000_000 }, 20);
ok(length($ws->output) > 1_000_000, 'gone: output flows');
my ($sid) = $ws->event('connected')->{session};
$ws->disconnect;
ok(SeguraTest::wait_for(sub {
    $dbh->selectrow_array(q{select end_reason from ssh_sessions where id = ? and ended_at is not null}, undef, $sid)
}, 20), 'gone: the audit row is completed');
is($dbh->selectrow_array('select end_reason from ssh_sessions where id = ?', undef, $sid),
   'client_gone', 'gone: ended because the client went');
ok(SeguraTest::wait_for(sub { $t->worker_tcp_fds($worker, @ports) == 0 }, 20),
   'gone: no client or device socket left');

# the device dies mid-session
$ws = SeguraTest::Session::open_ws($t, $f);
ok($ws->wait_event('connected', 20), 'device death: connected');
$ws->send_binary("echo up\n");
$ws->wait_for(sub { $ws->output =~ /\bup\r?\n/ }, 10);
($sid) = $ws->event('connected')->{session};
my @children = grep { /^\d+$/ } split /\s+/, `pgrep -P $sshd->{pid}`;
ok(@children, 'device death: the sshd has session processes');
kill 'KILL', @children;
my $e = $ws->wait_event('error', 20);
is($e && $e->{code}, 'session_terminated', 'device death: session_terminated event');
is($ws->wait_close(10), 4008, 'device death: close code 4008');
$ws->wait_eof(10);
ok(SeguraTest::wait_for(sub {
    $dbh->selectrow_array(q{select end_reason from ssh_sessions where id = ? and ended_at is not null}, undef, $sid)
}, 20), 'device death: the audit row is completed');
ok(SeguraTest::wait_for(sub { $t->worker_tcp_fds($worker, @ports) == 0 }, 20),
   'device death: no client or device socket left');

SeguraTest::done();
