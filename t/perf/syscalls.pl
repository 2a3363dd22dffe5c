#!/usr/bin/perl
# System calls the nginx worker makes per MiB relayed to a client, counted
# by strace -c (counts, not time: the figure holds on a loaded machine).
# Two runs as in t/perf/instructions.pl (a few bytes, then N MiB of
# base64), the difference over the difference of the bytes.  Prints one
# JSON line: {"mib":..,"per_mib":{"recvfrom":..,...},"total":..}
#
#   t/perf/syscalls.pl [MiB] [recording on|off]   (in t/run-tests' environment)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use JSON::PP;
use SeguraTest;
use SeguraTest::Session;

my $mib = shift // 16;
my $recording = shift // 'on';

sub measure {
    my ($bytes) = @_;

    my $t = SeguraTest->new(sshd => 1);
    my $out = "$t->{dir}/strace";
    # the level make bench runs at: debug lines are syscalls of their own
    $t->run(SeguraTest::Session::config("segura_recording $recording;"),
            error_level => 'warn');
    my $f = SeguraTest::Session::fixture($t);
    my ($worker) = $t->workers;

    # attached to the running worker and its threads (the pool's included)
    my $strace = fork // die "fork: $!";
    if (!$strace) {
        exec 'strace', '-f', '-c', '-U', 'name,calls', '-o', $out,
             '-p', $worker;
        die "strace: $!";
    }
    SeguraTest::wait_for(sub { SeguraTest::slurp("/proc/$worker/status")
                                   =~ /^TracerPid:\s+[1-9]/m }, 20,
                         'strace attached') or die "strace did not attach";

    my $ws = SeguraTest::Session::open_ws($t, $f);
    $ws->wait_event('connected', 60) or die "no session under strace";
    $ws->{discard} = 1;

    my $raw = int($bytes * 3 / 4);
    $ws->send_binary("head -c $raw /dev/zero | base64 -w0; echo; "
                     . "printf '\\104\\117\\116\\105\\n'; exit\n");
    $ws->wait_close(120) or die "the session did not end";
    my $got = $ws->{output_bytes} // 0;
    $ws->disconnect;
    kill 'INT', $strace;
    waitpid $strace, 0;
    $t->stop;

    my %calls;
    open my $fh, '<', $out or die "no strace output for worker $worker";
    while (<$fh>) {
        $calls{$1} = $2 if /^\s*(\w+)\s+(\d+)\s*$/ && $1 ne 'total';
    }
    $t->{passed} = 1;
    return ($got, \%calls);
}

my ($b0, $c0) = measure(1024);
my ($b1, $c1) = measure(int($mib * 1048576));
my $d = ($b1 - $b0) / 1048576;
my (%per, $total);
for my $k (keys %$c1) {
    my $v = (($c1->{$k} // 0) - ($c0->{$k} // 0)) / $d;
    next if $v < 0.5;
    $per{$k} = int($v + 0.5);
    $total += $v;
}
print encode_json({ mib => sprintf('%.3f', $d) + 0, recording => $recording,
                    per_mib => \%per, total => int($total + 0.5) }), "\n";
