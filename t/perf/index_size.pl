#!/usr/bin/perl
# The search index's size in PostgreSQL per output byte (sql/018: the
# words and word_t arrays of the chunks' rows, and the GIN index), for two
# streams printed through a real session: random base64 and `ls -lR /usr`
# (8 MiB each).  Prints one JSON line per stream, then the GIN index of
# both as grown and after a REINDEX.
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

sub gin {
    $dbh->selectrow_array(q{select gin_clean_pending_list('ssh_session_chunks_words')});
    return $dbh->selectrow_array(q{select pg_relation_size('ssh_session_chunks_words')});
}

my $before = gin();
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
    my ($chunks, $out, $data, $arrays, $words) = $dbh->selectrow_array(q{
        select count(*), sum(plain_size), sum(length(data)),
               sum(pg_column_size(words) + pg_column_size(word_t)),
               sum(cardinality(words))
        from ssh_session_chunks where session_id = ?}, undef, $id);
    my $after = gin();
    print encode_json({ stream => $name, chunks => $chunks + 0,
                        event_bytes => $out + 0, words => $words + 0,
                        chunk_data_per_byte => sprintf('%.4f', $data / $out) + 0,
                        arrays_per_byte => sprintf('%.4f', $arrays / $out) + 0,
                        gin_per_byte => sprintf('%.4f', ($after - $before) / $out) + 0,
                        index_per_byte => sprintf('%.4f', ($arrays + $after - $before) / $out) + 0 }), "\n";
    $before = $after;
}
# the GIN index as built at once (REINDEX) rather than row by row
my $grown = gin();
$dbh->do('reindex index ssh_session_chunks_words');
my $total = $dbh->selectrow_array('select sum(plain_size) from ssh_session_chunks');
print encode_json({ gin_grown_per_byte => sprintf('%.4f', $grown / $total) + 0,
                    gin_reindexed_per_byte => sprintf('%.4f', gin() / $total) + 0 }), "\n";
$t->{passed} = 1;
$t->stop;
