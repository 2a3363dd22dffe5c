# A device socket above descriptor 65535 still makes a working session
# (issue 11): libssh 0.10 keeps only the low 16 bits of a descriptor given
# with SSH_OPTIONS_FD, so a worker with that many descriptors would read
# and close another connection's socket. The module must move such a
# descriptor below 65536 (or fail the session with a clear log line); only
# "works" passes here.
#
# Instead of 65536 connections, build/test/highfd.so (t/device/highfd.c,
# LD_PRELOAD) moves every TCP socket that nginx makes to a descriptor
# >= 66536 and logs it; worker_rlimit_nofile makes room for it. That needs
# a descriptor limit above 66536: root raises its own (CAP_SYS_RESOURCE),
# anyone else needs a hard limit that high; without either the kernel
# cannot give such a descriptor at all, and the file is skipped.
#
# SEGURA_HIGHFD_AT=<n> puts the sockets at n instead, for checking the
# test itself where the limit is lower (below 65536 the bug cannot show).
use strict;
use warnings;
use Test::More;
use SeguraTest;
use SeguraTest::Session;
use SeguraTest::WS;

my $MIN = $ENV{SEGURA_HIGHFD_AT} || 65536 + 1000;
my $NOFILE = $MIN + 4096;

my $shim = "$SeguraTest::TOP/build/test/highfd.so";
-f $shim or BAIL_OUT("$shim is missing: make test builds it");

# what the worker will do: setrlimit(RLIMIT_NOFILE) to $NOFILE, soft and
# hard
chomp(my $hard = `sh -c 'ulimit -H -n'`);
if (system('sh', '-c', "ulimit -n $NOFILE 2>/dev/null") != 0) {
    plan skip_all => "a descriptor limit of $NOFILE is out of reach here "
                   . "(hard limit $hard, and no CAP_SYS_RESOURCE to raise it)";
}

my $t = SeguraTest->new(sshd => 1);
my $log = $t->dir . '/logs/highfd.log';
$t->{opt}{env} = { LD_PRELOAD => $shim, SEGURA_HIGHFD_MIN => $MIN,
                   SEGURA_HIGHFD_LOG => $log };
$t->run(SeguraTest::Session::config(), nofile => $NOFILE);
my $sshd = $t->sshd;
my ($worker) = $t->workers;

my $f = SeguraTest::Session::fixture($t);

# two sessions at once: with a truncated descriptor both would land on
# the same low number
my @ws = map { SeguraTest::Session::open_ws($t, $f) } 1 .. 2;
for my $i (0 .. 1) {
    my $ws = $ws[$i];
    ok($ws->wait_event('connected', 20), "session $i: connected")
        or diag(explain [$ws->events]);
    ok($ws->wait_for(sub { $ws->output =~ /[#\$] $/ }, 10), "session $i: the prompt")
        or diag($ws->output);
}

# the premise: the worker's device sockets were made above $MIN
my @lines = grep { /^$worker / } split /\n/, SeguraTest::slurp($log);
my @high = grep { /^\d+ socket (\d+)$/ && $1 >= $MIN } @lines;
my @unmoved = grep { /^\d+ unmoved / } @lines;
ok(@high >= 2, "the worker's device sockets were made at descriptors >= $MIN ("
               . join(', ', map { (split)[2] } @high) . ')')
    or diag(join "\n", @lines);
is(scalar @unmoved, 0, 'none was left below for want of room')
    or diag(join "\n", @unmoved);
my $port = $sshd->port;
ok(scalar(grep { /^\d+ connect \d+ $port$/ } @lines) >= 2,
   'the worker connected to the device');

for my $i (0 .. 1) {
    my $ws = $ws[$i];
    $ws->send_binary("echo high-$i-\$((40+2))\n");
    ok($ws->wait_for(sub { $ws->output =~ /high-$i-42/ }, 10), "session $i: echo")
        or diag($ws->output);
}
ok($ws[0]->output !~ /high-1-42/ && $ws[1]->output !~ /high-0-42/,
   'each session saw only its own output');

for my $i (0 .. 1) {
    my $ws = $ws[$i];
    $ws->send_binary("exit 7\n");
    my $e = $ws->wait_event('exit', 10);
    is($e && $e->{status}, 7, "session $i: exit status 7");
    is($ws->wait_close(10), 1000, "session $i: close code 1000");
    $ws->wait_eof(10);
    $ws->disconnect;
}

ok(SeguraTest::wait_for(sub { $t->worker_tcp_fds($worker, $t->port, $port) == 0 }, 10),
   'no client or device socket left in the worker');

unlike(SeguraTest::slurp($t->error_log), qr/\[error\]/, 'no [error] in the log');

SeguraTest::done();
