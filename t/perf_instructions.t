# The relay's cost in instructions per MiB (callgrind, t/perf/instructions.pl)
# against the committed reference in bench/instructions.ref: fails when it
# grows by more than 15 %.  Instruction counts do not depend on the
# machine's load the way times do; runs of the same binary here spread by
# about 3 % (the size of the reads varies with scheduling).
use strict;
use warnings;
use Test::More;
use JSON::PP;
use SeguraTest;

my $ROOT = SeguraTest::Pg::root();

plan skip_all => 'callgrind and AddressSanitizer do not mix' if $ENV{ASAN};
BAIL_OUT('valgrind is missing: make test installs it')
    if system('valgrind --version >/dev/null 2>&1') != 0;

my $refs = SeguraTest::slurp("$ROOT/bench/instructions.ref");

for my $case (['off', 'per_mib', 'the relay'],
              ['on', 'recorded_per_mib', 'the relay with its recording'])
{
    my ($recording, $key, $what) = @$case;
    my ($ref) = $refs =~ /^$key (\d+)$/m;
    ok($ref, "$what: the reference, $ref instructions per MiB");

    my $json = `$^X $ROOT/t/perf/instructions.pl 4 $recording 2>&1`;
    my ($line) = $json =~ /^(\{.*\})$/m;
    ok($line, "$what: callgrind counted the worker") or diag $json;
    my $r = $line ? decode_json($line) : {};

    ok(($r->{mib} // 0) > 3.9, "$what: about 4 MiB were relayed ($r->{mib})");
    my $per = $r->{per_mib} // 0;
    ok($per > 0 && $ref && $per <= $ref * 1.15,
       sprintf('%s: %.2f M instructions per MiB, %+.1f %% of the reference',
               $what, $per / 1e6, $ref ? ($per / $ref - 1) * 100 : 0));
    diag(sprintf('%s: %.2f M instructions per MiB (reference %.2f M)',
                 $what, $per / 1e6, ($ref // 0) / 1e6));
}

done_testing;
