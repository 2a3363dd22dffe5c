#!/usr/bin/perl
# The search index's size in PostgreSQL per output byte (sql/018: the
# Bloom filter in each chunk's row), for two streams printed through a
# real session: random base64 and `ls -lR /usr` (8 MiB each).  Prints one
# JSON line per stream: the sealed chunks' bytes, the filters' bytes (as
# stored, pg_column_size) and both per output byte.
#
#   t/perf/index_size.pl          (in t/run-tests' environment)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use JSON::PP;
use SeguraTest;
use SeguraTest::Session;

my $t = SeguraTest->new(sshd => 1);
$t->run(SeguraTest::Session::config(''));
my $dbh = $t->db->dbh;
my $f = SeguraTest::Session::fixture($t);

for my $case (['base64', 'head -c 6291456 /dev/urandom | base64'],
              ['ls -lR /usr', 'ls -lR /usr 2>/dev/null | head -c 8388608'])
{
    my ($name, $cmd) = @$case;
    my $ws = SeguraTest::Session::open_ws($t, $f);
    my $c = $ws->wait_event('connected', 20) or die 'no session';
    $ws->{discard} = 1;
    $ws->send_binary("$cmd; printf '\\104\\117\\116\\105\\n'; exit\n");
    $ws->wait_close(120) or die 'the session did not end';
    my $id = $c->{session};
    SeguraTest::wait_for(sub {
        $dbh->selectrow_array(q{select count(*) from ssh_session_recordings
                                where session_id = ? and ended_at is not null},
                              undef, $id)
    }, 60) or die 'no recording';
    my ($chunks, $out, $data, $filters, $fsize) = $dbh->selectrow_array(q{
        select count(*), sum(plain_size), sum(pg_column_size(data)),
               count(filter), coalesce(sum(pg_column_size(filter)), 0)
        from ssh_session_chunks where session_id = ?}, undef, $id);
    print encode_json({ stream => $name, chunks => $chunks + 0,
                        filters => $filters + 0,
                        event_bytes => $out + 0, filter_bytes => $fsize + 0,
                        chunk_data_per_byte => sprintf('%.4f', $data / $out) + 0,
                        filter_per_byte => sprintf('%.4f', $fsize / $out) + 0,
                        stored_per_byte => sprintf('%.4f', ($data + $fsize) / $out) + 0 }), "\n";
}
# the whole table (rows, TOAST, the primary key) per output byte of both
my ($total, $rel) = $dbh->selectrow_array(q{select sum(plain_size),
    pg_total_relation_size('ssh_session_chunks') from ssh_session_chunks});
print encode_json({ table_per_byte => sprintf('%.4f', $rel / $total) + 0 }), "\n";
$t->{passed} = 1;
$t->stop;
