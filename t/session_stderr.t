# The device's stderr stream reaches the terminal, in order and whole:
# OpenSSH sends none under a pty, so the device here is
# build/test/stderr-sshd (t/device/stderr-sshd.c, libssh's server API),
# which writes to both streams. The relay reads stderr only when libssh
# has put a packet of it in its buffer; a megabyte of stderr, more than
# the channel window and the relay's buffers hold, must still arrive.
use strict;
use warnings;
use Test::More;
use FindBin;
use POSIX qw(:sys_wait_h);
use SeguraTest;
use SeguraTest::Session;

my $bin = "$FindBin::Bin/../build/test/stderr-sshd";
-x $bin or BAIL_OUT("$bin is missing: make test builds it");

my $t = SeguraTest->new(sshd => 1);
$t->run(SeguraTest::Session::config());
my $dbh = $t->db->dbh;

# the device, with a host key of its own
my $dir = $t->dir . '/stderr-sshd';
mkdir $dir or die "$dir: $!";
system('ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', '', '-f', "$dir/host") == 0
    or die 'ssh-keygen failed';
my $port = SeguraTest::free_port();
my $pid = fork() // die "fork: $!";
if ($pid == 0) {
    open STDOUT, '>>', "$dir/log";
    open STDERR, '>>', "$dir/log";
    exec $bin, $port, "$dir/host";
    exit 127;
}
END { local $?; if ($pid) { kill 'TERM', $pid; waitpid($pid, 0) } }
ok(SeguraTest::wait_for(sub { SeguraTest::port_open($port) }, 15), 'the device listens')
    or BAIL_OUT(SeguraTest::slurp("$dir/log"));

my $f = SeguraTest::Session::fixture($t, port => $port, authorize => 0);

my $ws = SeguraTest::Session::open_ws($t, $f);
is($ws->{status}, 101, 'the upgrade is accepted');
ok($ws->wait_event('connected', 15), 'connected') or diag(explain [$ws->events]);
ok($ws->wait_for(sub { $ws->output =~ /out-ready\r\n/ && $ws->output =~ /err-ready\r\n/ }, 10),
   'what the device wrote to stdout and to stderr before any input')
    or diag($ws->output);

$ws->send_binary("hello\r");
ok($ws->wait_for(sub { $ws->output =~ /out:hello\r\nerr:hello\r\n/ }, 10),
   'a line answered on stdout, then on stderr, in that order')
    or diag($ws->output);

# a megabyte on stderr alone, then a line on stdout. Within one pass the
# relay takes what libssh holds of stdout before what it holds of stderr
# (ssh(1) too writes them to two descriptors), so the stdout line may
# come inside the tail of the megabyte; each stream stays in order.
my $size = 1024 * 1024;
$ws->send_binary("big $size\r");
$ws->send_binary("after\r");
ok($ws->wait_for(sub { $ws->output =~ /out:after\r\n/ && $ws->output =~ /err:after\r\n/ }, 30),
   'the session goes on after the megabyte')
    or diag(length $ws->output);
my $all = $ws->output;
is(($all =~ tr/E//), $size, 'every byte of the megabyte on stderr');
(my $stderr = $all) =~ s/big-done\r\n|out:after\r\n//g;
my ($run) = $stderr =~ /err:hello\r\n(E+)err:after\r\n/;
is(length($run // ''), $size, 'in one run, in order');
like($all, qr/big-done\r\n.*out:after\r\n/s, 'stdout in order');

$ws->send_binary("exit\r");
is_deeply($ws->wait_event('exit', 10), { type => 'exit', status => 3 }, 'exit status 3');
is($ws->wait_close(10), 1000, 'close code 1000');

ok(SeguraTest::wait_for(sub {
    $dbh->selectrow_array('select bytes_out from ssh_sessions where ended_at is not null')
}, 10), 'the audit row is completed');
my ($out) = $dbh->selectrow_array('select bytes_out from ssh_sessions');
cmp_ok($out, '>=', $size, 'audit: the stderr bytes are counted out');

unlike(SeguraTest::slurp($t->error_log), qr/\[error\]/, 'no [error] in the log');

SeguraTest::done();
