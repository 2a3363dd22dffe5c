#!/usr/bin/perl
# Instructions the nginx worker executes per MiB relayed to a client,
# counted by valgrind's callgrind: instruction counts, not time, so the
# figure holds on a loaded machine.  Two runs, each a whole nginx under
# callgrind with one session: one relays a few bytes, the other N MiB of
# base64; the difference of the worker's totals over the difference of the
# bytes is the cost of relaying, set-up and start-up cancelling out.
# Prints one JSON line: {"mib":..,"per_mib":..,"small":..,"large":..}
#
#   t/perf/instructions.pl [MiB] [recording on|off]
#                                    (in t/run-tests' environment)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use JSON::PP;
use SeguraTest;
use SeguraTest::Session;

my $mib = shift // 4;
my $recording = shift // 'on';

sub measure {
    my ($bytes) = @_;

    my $t = SeguraTest->new(sshd => 1);
    my $out = "$t->{dir}/callgrind.%p";
    $t->run(SeguraTest::Session::config("segura_recording $recording;"),
            start_timeout => 120, error_level => 'warn',
            wrapper => ['valgrind', '--tool=callgrind', '--vgdb=no',
                        "--callgrind-out-file=$out"]);
    my $f = SeguraTest::Session::fixture($t);
    my ($worker) = $t->workers;

    my $ws = SeguraTest::Session::open_ws($t, $f);
    $ws->wait_event('connected', 120) or die "no session under callgrind";
    $ws->{discard} = 1;

    # base64 of zeros: 4 output bytes per 3 read
    my $raw = int($bytes * 3 / 4);
    $ws->send_binary("head -c $raw /dev/zero | base64 -w0; echo; "
                     . "printf '\\104\\117\\116\\105\\n'; exit\n");
    $ws->wait_close(180) or die "the session did not end";
    my $got = $ws->{output_bytes} // 0;
    $ws->disconnect;
    $t->stop;

    my $ir = 0;
    for my $file (glob "$t->{dir}/callgrind.$worker") {
        open my $fh, '<', $file or next;
        while (<$fh>) { $ir = $1 if /^totals: (\d+)/ }
    }
    die "no callgrind totals for worker $worker" unless $ir;
    $t->{passed} = 1;
    return ($got, $ir);
}

my ($b0, $i0) = measure(1024);
my ($b1, $i1) = measure(int($mib * 1048576));
my $d = ($b1 - $b0) / 1048576;

print encode_json({ mib => sprintf('%.3f', $d) + 0, recording => $recording,
                    per_mib => int(($i1 - $i0) / $d),
                    small => $i0 + 0, large => $i1 + 0 }), "\n";
