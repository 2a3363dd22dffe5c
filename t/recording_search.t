# Recording search: GET /api/sessions?q= finds the sessions whose recorded
# output holds every word (ANSI stripped, a word cut between reads or chunks
# read whole), with each hit's time and line, through a blind index that
# leaves no word of the output in the database; administrators only,
# bounded queries, every search audited.
use strict;
use warnings;
use Test::More;
use Encode ();
use JSON::PP;
use Time::HiRes ();
use DBD::Pg ();
use URI::Escape qw(uri_escape);
use SeguraTest;
use SeguraTest::Api;
use SeguraTest::Pg;
use SeguraTest::Session;
use SeguraTest::WS;

my $t = SeguraTest->new(sshd => 1);
$t->run(SeguraTest::Session::config(''));
my $db = $t->db;
my $dbh = $db->dbh;

my $f = SeguraTest::Session::fixture($t);

SeguraTest::Api::add_user($db, 'auditor', 'auditor-password-1', admin => 1);
my $admin = SeguraTest::Api->new($t);
is($admin->login('auditor', 'auditor-password-1')->code, 200,
   'the administrator logs in');

my $JSON = JSON::PP->new->utf8;

sub rnd { join '', map { ('a' .. 'z')[rand 26] } 1 .. $_[0] }

# printf's octal escapes: the echoed command line does not hold the word
sub oct_of { join '', map { sprintf '\\%03o', ord } split //, $_[0] }

sub session {
    my ($what, @commands) = @_;
    my $ws = SeguraTest::WS->connect($t->port, "/session?key=$f->{key}"
                                     . "&device=$f->{device}",
                                     Cookie => $f->{cookie});
    my $c = $ws->wait_event('connected', 20);
    ok($c, "$what: connected");
    for my $cmd (@commands) {
        $ws->send_binary("$cmd\n");
    }
    $ws->send_binary("printf '\\104\\117\\116\\105\\n'; exit\n");
    is($ws->wait_close(30), 1000, "$what: the shell exits");
    like($ws->output, qr/DONE/, "$what: the output arrived");
    my $id = $c->{session};
    ok(SeguraTest::wait_for(sub {
        $dbh->selectrow_array(q{select count(*) from ssh_session_recordings
                                where session_id = ? and ended_at is not null},
                              undef, $id)
    }, 20), "$what: the recording is complete in the database");
    return ($id, $ws->output);
}

sub search {
    my ($q, $who) = @_;
    my $res = ($who // $admin)->get('/api/sessions?q=' . uri_escape($q));
    return $res;
}

my $searches = 0;

sub found {
    my ($q) = @_;
    $searches++;
    my $res = search($q);
    is($res->code, 200, "search '$q': 200") or diag($res->body);
    my $j = eval { $res->json } || {};
    return { map { $_->{id} => $_ } @{ $j->{items} || [] } };
}


# --- two sessions -------------------------------------------------------------

my $w1 = 'Zebra' . rnd(10);            # printed in both, capitals
my $w2 = 'quokka' . rnd(10);           # in the first only, coloured
my $w3 = 'split' . rnd(10);            # cut between two reads
my $w4 = 'chunk' . rnd(10);            # cut between two chunks
my $w5 = 'later' . rnd(10);            # two seconds after the first line
my $path = '/etc/' . rnd(8) . '.conf'; # a compound

my ($w3a, $w3b) = (substr($w3, 0, 7), substr($w3, 7));
my ($w4a, $w4b) = (substr($w4, 0, 6), substr($w4, 6));

my ($id1, $out1) = session('first',
    "printf 'line one " . oct_of($w1) . " here\\n'",
    "printf 'see \\033[1;31m" . oct_of(substr($w2, 0, 3)) . "\\033[0m"
        . oct_of(substr($w2, 3)) . "\\033[m done\\n'",
    "printf '" . oct_of("x $w3a") . "'; sleep 0.3; printf '"
        . oct_of("$w3b y") . "\\n'",
    "printf '" . oct_of("cut $w4a") . "'; sleep 1.6; printf '"
        . oct_of("$w4b end") . "\\n'",
    "sleep 2; printf 'then " . oct_of($w5) . " and " . oct_of($path) . "\\n'");
my ($id2, $out2) = session('second', "printf 'only " . oct_of($w1) . "\\n'");

like($out1, qr/\Q$w3a$w3b\E/, 'the split word reached the client');
like($out1, qr/\e\[1;31m\Q@{[substr $w2, 0, 3]}\E\e\[0m/, 'the coloured word too');



# --- what is found ------------------------------------------------------------

my $s = found(lc $w1);
ok($s->{$id1} && $s->{$id2}, 'a word both printed: both sessions');
$s = found(uc $w1);
ok($s->{$id1} && $s->{$id2}, 'the search is not case sensitive');

my $hit = $s->{$id1}{hits}[0] || {};
is($hit->{line}, "line one $w1 here", 'the hit has its line as printed');
is($hit->{word}, lc $w1, 'and the word');

$s = found("$w1 $w2");
ok($s->{$id1}, 'AND: the session with both words');
ok(!$s->{$id2}, 'AND: not the one with one of them');
is(scalar keys %$s, 1, 'AND: one session');
my @hits = @{ $s->{$id1}{hits} || [] };
is(scalar @hits, 2, 'AND: a hit per word');
is($hits[1]{line}, "see $w2 done", 'the coloured word is found, its line without colours');

$s = found($w3);
ok($s->{$id1}, 'a word cut between two reads is found');
is(($s->{$id1}{hits}[0] || {})->{line}, "x $w3 y", 'with its line');

$s = found($w4);
ok($s->{$id1}, 'a word cut between two chunks is found');
is(($s->{$id1}{hits}[0] || {})->{line}, "cut $w4 end", 'with its line');
# its first half is in a chunk that ended before the second half came
my $t4 = int((($s->{$id1}{hits}[0] || {})->{t} // 0) * 1000 + 0.5);
my ($seq4, $last4) = $dbh->selectrow_array(q{select seq, t_last from
    ssh_session_chunks where session_id = ? and t_first <= ? and t_last >= ?},
    undef, $id1, $t4, $t4);
ok(defined $seq4 && $last4 < $t4 + 1500,
   "the word's halves are in two chunks (the first ends at $last4 ms, the word began at $t4 ms)");

ok(!found($w3a)->{$id1}, 'half a word is not a word');
ok(!found(lc(rnd(12)))->{$id1}, 'a word never printed: not found');

$s = found($path);
ok($s->{$id1}, 'a path is found whole');
$s = found(substr($path, 5, 8));
ok($s->{$id1}, 'and by its parts');

# the hit's time is the time of the output event that printed it
my $res = $admin->get("/api/sessions/$id1/recording");
is($res->code, 200, 'the asciicast');
my @lines = split /\n/, $res->body;
shift @lines;
my @ev = map { $JSON->decode($_) } @lines;
$s = found("$w1 $w5");
my %h = map { $_->{word} => $_ } @{ $s->{$id1}{hits} || [] };
for my $w ($w1, $w5) {
    my $th = $h{lc $w}{t};
    ok(defined $th, "$w: a hit with its time ($th)");
    my @at = grep { $_->[1] eq 'o' && abs($_->[0] - $th) < 0.0005 } @ev;
    ok((grep { Encode::encode_utf8($_->[2]) =~ /\Q$w\E/ } @at),
       "$w: an output event at that time printed it");
}
my $dt = ($h{lc $w5}{t} // 0) - ($h{lc $w1}{t} // 0);
ok($dt >= 2 && $dt < 8, "the later word is about two seconds later ($dt s)");


# --- hits are bounded -----------------------------------------------------------

my $many = 'many' . rnd(8);
my ($id3) = session('many', "for i in \$(seq 1 30); do printf '%b %d\\n' "
                            . "'" . oct_of($many) . "' \$i; done");
$s = found($many);
is(scalar @{ $s->{$id3}{hits} || [] }, 10, 'at most 10 hits per session');
is($s->{$id3}{hits}[0]{line}, "$many 1", 'the first hit first');
is($s->{$id3}{hits}[9]{line}, "$many 10", 'in the order printed');


# --- bad queries, who may search -----------------------------------------------

for my $case (['', 'empty'], ['a', 'a one-letter word'],
              [join(' ', map { "w$_$_" } 1 .. 9), 'nine words'],
              ['x' x 41, 'a word of 41 letters'],
              [join(' ', ('abcdefghij') x 21), 'more than 200 bytes'],
              ['!!! ???', 'no word'])
{
    my ($q, $what) = @$case;
    my $r = search($q);
    is($r->code, 422, "$what: 422");
    is(eval { $r->json->{error}{code} }, 'invalid_field', "$what: invalid_field");
    is(eval { $r->json->{error}{field} }, 'q', "$what: field q");
}

my $r0 = $admin->get('/api/sessions?q=' . lc($w1) . '&limit=51');
is($r0->code, 422, 'a limit above 50: 422');
is(eval { $r0->json->{error}{field} }, 'limit', 'field limit');
$r0 = $admin->get('/api/sessions?q=' . lc($w1) . '&limit=1');
is($r0->code, 200, 'limit=1: 200');
my $items0 = eval { $r0->json->{items} } || [];
is(scalar @$items0, 1, 'limit=1: one session');
is($admin->post('/api/sessions?q=' . lc($w1), {})->code, 405, 'POST: 405');
$searches++;   # the limit=1 search

SeguraTest::Api::add_user($db, 'someone', 'someone-password-1');
my $user = SeguraTest::Api->new($t);
is($user->login('someone', 'someone-password-1')->code, 200, 'a user logs in');
my $r = search(lc $w1, $user);
is($r->code, 403, 'a user who is not an administrator: 403');
is(eval { $r->json->{error}{code} }, 'forbidden', 'with forbidden');
is(SeguraTest::Api->new($t)->get('/api/sessions?q=' . lc $w1)->code, 401,
   'no login: 401');
# the plain list still works
is($admin->get('/api/sessions')->code, 200, 'the list without q: 200');


# --- audited, and nothing readable in the database ---------------------------------

my $audits = $dbh->selectall_arrayref(q{select detail::text from audit_log
    where action = 'session_search' order by id});
is(scalar @$audits, $searches, "every search is an audit_log row ($searches)");
my $detail = $JSON->decode($audits->[0][0]);
is(scalar @{ $detail->{hashes} || [] }, 1, 'the row holds the hash of the word');
like($detail->{hashes}[0] // '', qr/^-?\d+$/, 'as a number');
my $all = join "\n", map { $_->[0] } @$audits;
unlike($all, qr/\Q@{[lc $w1]}\E/i, 'not the word');

my $bin = (sort glob '/usr/lib/postgresql/*/bin/pg_dump')[-1] || 'pg_dump';
my ($rc, $dump, $err) = SeguraTest::Pg::run($bin, '-d', $db->conninfo,
                                            '--data-only');
is($rc, 0, 'pg_dump of the test database') or diag($err);
like($dump, qr/COPY public\.ssh_session_chunks .*filter/, 'the dump has the index');
for my $w ($w1, $w2, $w3, $w5, $many) {
    unlike($dump, qr/\Q$w\E/i, "a word the session printed is not in the dump ($w)");
}
ok(found($w1)->{$id1}, 'and the search finds it');


# --- the Bloom filters ---------------------------------------------------------

my ($nf, $minf, $maxf, $nullkey) = $dbh->selectrow_array(q{select count(filter),
    min(length(filter)), max(length(filter)),
    count(*) filter (where filter is not null and index_key is null)
    from ssh_session_chunks where session_id = ?}, undef, $id1);
ok($nf > 0, "the first session's chunks have filters ($nf)");
ok($minf >= 8 && $maxf <= 1536, "of 8 to 1536 bytes ($minf to $maxf)");
is($nullkey, 0, 'each with its index key');
is($dbh->selectrow_array(q{select count(*) from information_schema.columns
    where table_name = 'ssh_session_chunks' and column_name in ('words', 'word_t')}),
   0, 'no word arrays');

# a false positive: filters of every bit set say "maybe" to every word; the
# chunks are read, the word is not there, the session is not reported
my $never = lc(rnd(12));
my $saved = $dbh->selectall_arrayref(q{select seq, filter from
    ssh_session_chunks where session_id = ? and filter is not null},
    { Slice => {} }, $id2);
$dbh->do(q{update ssh_session_chunks set filter = decode(repeat('ff', 64), 'hex')
           where session_id = ? and filter is not null}, undef, $id2);
my $all_bits = search($never);
$searches++;
is($all_bits->code, 200, 'a word never printed, against filters of all bits: 200');
my $j = eval { $all_bits->json } || {};
is_deeply($j->{items}, [], 'the false positive is not reported');
$s = found($w1);
ok($s->{$id2} && ($s->{$id2}{hits}[0] || {})->{line} eq "only $w1",
   'a word printed is still found, with its line');
$s = found($w2);
ok($s->{$id1} && !$s->{$id2},
   'an older session is found behind a newer false positive');
my $upd = $dbh->prepare(q{update ssh_session_chunks set filter = ?
                          where session_id = ? and seq = ?});
for my $row (@$saved) {
    $upd->bind_param(1, $row->{filter}, { pg_type => DBD::Pg::PG_BYTEA() });
    $upd->bind_param(2, $id2);
    $upd->bind_param(3, $row->{seq});
    $upd->execute;
}

# the scan is bounded: 20000 filters per search, newest sessions first;
# beyond, the answer says partial (20001 empty filters in the second session)
is($j->{partial}, JSON::PP::false, 'a search that read every filter is not partial');
$dbh->do(q{insert into ssh_session_chunks (session_id, seq, t_first, t_last,
           plain_size, data, index_key, filter)
           select ?, 1000 + g, 0, 0, 1, '\x00'::bytea, 1,
                  decode(repeat('00', 64), 'hex')
           from generate_series(0, 20000) g}, undef, $id2);
my $t0 = Time::HiRes::time();
my $big = search(lc $w1);
my $elapsed = Time::HiRes::time() - $t0;
$searches++;
is($big->code, 200, 'more than 20000 filters: 200');
$j = eval { $big->json } || {};
is($j->{partial}, JSON::PP::true, 'partial');
my %ids = map { $_->{id} => 1 } @{ $j->{items} || [] };
ok($ids{$id2}, 'the newer session is found');
ok(!$ids{$id1}, 'the older one, beyond the 20000 filters, is not searched');
note(sprintf 'a search over 20000 filters took %.0f ms (shared machine: noisy)',
     $elapsed * 1000);
ok($elapsed < 10, sprintf 'in bounded time (%.1f s)', $elapsed);
$dbh->do(q{delete from ssh_session_chunks where session_id = ? and seq >= 1000},
         undef, $id2);



# --- a master key rotation: old chunks keep the key they were indexed under ----

$t->stop;
my $newkey = $t->dir . '/conf/new.key';
{
    open my $fh, '>:raw', $newkey or die $!;
    print $fh SeguraTest::random_bytes(32);
    close $fh;
    chmod 0600, $newkey;
}
$t->run(qq{
    segura_database   "%%DATABASE%%";
    segura_master_key $newkey id=2;
    segura_master_key %%MASTER_KEY%%;
    segura_thread_pool segura;
} . SeguraTest::Session::config(''), no_defaults => 1);
$admin = SeguraTest::Api->new($t);
is($admin->login('auditor', 'auditor-password-1')->code, 200,
   'rotation: the administrator logs in again');
my $w6 = 'rotated' . rnd(8);
my ($id4) = session('rotation', "printf '" . oct_of("$w1 $w6") . "\\n'");
is_deeply($dbh->selectcol_arrayref(q{select distinct index_key from
    ssh_session_chunks where session_id = ? and filter is not null}, undef, $id4), [2],
    'rotation: the new chunks are indexed under the new key');
is_deeply($dbh->selectcol_arrayref(q{select distinct index_key from
    ssh_session_chunks where session_id = ? and filter is not null}, undef, $id1), [1],
    'rotation: the old ones under the old key');
$s = found($w1);
ok($s->{$id1} && $s->{$id2} && $s->{$id4},
   'rotation: a word is found under both keys');
is(($s->{$id1}{hits}[0] || {})->{line}, "line one $w1 here",
   'rotation: an old hit is still read');
$s = found("$w1 $w6");
is_deeply([keys %$s], [$id4], 'rotation: AND under the new key');

SeguraTest::done();
