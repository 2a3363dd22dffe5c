# Retention: with segura_recording_retention, the chunks of recordings of
# sessions ended longer ago are deleted in bounded batches and the
# recording is marked expired, while the session's audit row stays; live
# sessions and recent ones keep theirs; two nginx nodes on one database
# never run it at once (a PostgreSQL advisory lock: while the test holds
# it, both nodes skip and say so, and the runs' audit rows never overlap
# in time); every run that deleted something is one audit_log row; a
# replay of an expired recording is 404; a chunk written late for an
# expired recording is not stored.
use strict;
use warnings;
use Test::More;
use JSON::PP;
use SeguraTest;
use SeguraTest::Api;
use SeguraTest::Session;

my $LOCK = '6000280510318857544';    # NGX_SEGURA_RETENTION_LOCK
my $RETENTION = 2;                   # seconds: a run every ~1 s

my $http = "segura_recording_retention ${RETENTION}s;\n"
           . SeguraTest::Session::config();

my $na = SeguraTest->new(sshd => 1);
my $db = $na->db;
my $dbh = $db->dbh;

# the test holds the lock before the nodes start: nothing runs yet
my $holder = $db->new_dbh;
ok($holder->selectrow_array("select pg_try_advisory_lock($LOCK)"), 'the test takes the lock');

$na->run($http);

my $nb = SeguraTest->new(no_db => 1);
my $conninfo = $db->conninfo;
my $key_file = $na->master_key_file;
$nb->run(<<"EOF" . $http, no_defaults => 1);
    segura_database    "$conninfo";
    segura_master_key  $key_file;
    segura_thread_pool segura;
EOF

# --- planted recordings: 25 old ones of 1000 chunks, a live one, a new one ---

my $SESSIONS = 25;
my $CHUNKS = 1000;

sub plant {
    my ($ended_sql) = @_;
    my ($id) = $dbh->selectrow_array(qq{
        insert into ssh_sessions (username, key_name, device_name, device_address,
                                  device_port, started_at, ended_at, end_reason)
        values ('planted', 'k', 'd', '127.0.0.1', 22, now() - interval '2 hours',
                $ended_sql, 'exit') returning id});
    $dbh->do(q{insert into ssh_session_recordings (session_id, width, height, input,
                                                   started_at, ended_at, chunks, bytes)
               select id, 80, 24, false, started_at, ended_at, ?, ? * 100
                 from ssh_sessions where id = ?}, undef, $CHUNKS, $CHUNKS, $id);
    $dbh->do(q{insert into ssh_session_chunks (session_id, seq, t_first, t_last,
                                               plain_size, data)
               select ?, g, g, g, 100, decode(repeat('ab', 50), 'hex')
                 from generate_series(0, ? - 1) g}, undef, $id, $CHUNKS);
    return $id;
}

my @old = map { plant(q{now() - interval '1 hour'}) } 1 .. $SESSIONS;
my $live = plant('null');
my $recent = plant(q{now() + interval '1 hour'});   # ends after any cutoff

sub chunks_of {
    my (@ids) = @_;
    return scalar $dbh->selectrow_array(
        'select count(*) from ssh_session_chunks where session_id = any(?)',
        undef, \@ids);
}

is(chunks_of(@old), $SESSIONS * $CHUNKS, "$SESSIONS x $CHUNKS chunks planted");

# both nodes try, find the lock taken, and say so
for my $n ([A => $na], [B => $nb]) {
    ok(SeguraTest::wait_for(sub {
        SeguraTest::slurp($n->[1]->error_log)
            =~ /segura retention: another node holds the lock, run skipped/
    }, 15), "node $n->[0] skips its run while the lock is held elsewhere");
}
is(chunks_of(@old), $SESSIONS * $CHUNKS, 'nothing was deleted meanwhile');
is(scalar $dbh->selectrow_array(q{select count(*) from audit_log
                                  where action = 'recording_retention'}),
   0, 'and no run was audited');

# the lock goes: one node at a time deletes everything old
$holder->selectrow_array("select pg_advisory_unlock($LOCK)");
ok(SeguraTest::wait_for(sub {
    chunks_of(@old) == 0
        && $dbh->selectrow_array(q{select count(*) from ssh_session_recordings
                                   where session_id = any(?) and expired_at is not null},
                                 undef, \@old) == $SESSIONS
}, 90), 'every old recording loses its chunks and is marked expired')
    or diag(chunks_of(@old) . ' chunks left');

my $runs = $dbh->selectall_arrayref(q{
    select (detail->>'chunks')::bigint, (detail->>'recordings_expired')::bigint,
           (detail->>'started')::timestamptz, (detail->>'finished')::timestamptz,
           detail->>'node', detail->>'worker', (detail->>'more')::bool,
           actor_id, object_type, detail->>'retention_ms'
      from audit_log where action = 'recording_retention'
     order by (detail->>'started')::timestamptz}, { Slice => [] });

my $total = 0;
my $expired = 0;
$total += $_->[0] for @$runs;
$expired += $_->[1] for @$runs;
is($total, $SESSIONS * $CHUNKS, 'the runs\' audit rows count every chunk once');
is($expired, $SESSIONS, 'and every recording expired once');
ok(@$runs >= 3, 'in bounded runs (at most 10 x 1000 chunks each): ' . scalar(@$runs) . ' runs');
ok(!(grep { $_->[0] > 10 * 1000 } @$runs), 'no run deleted more than its bound');
ok((grep { $_->[6] } @$runs), 'a run that stopped at its bound says there is more');
my $overlap = 0;
for my $i (1 .. $#$runs) {
    $overlap++ if $dbh->selectrow_array('select ?::timestamptz < ?::timestamptz',
                                        undef, $runs->[$i][2], $runs->[$i - 1][3]);
}
is($overlap, 0, 'no two runs overlap in time (the lock holds one node at a time)');
my %workers = map { $_->[5] => 1 } @$runs;
my @all = @{ $dbh->selectcol_arrayref('select id from segura_workers') };
ok(!(grep { my $w = $_; !grep { $_ eq $w } @all } keys %workers),
   'every run names a worker of the fleet');
diag('runs per worker: ' . join(', ', map { my $w = $_; "$w: " . scalar(grep { $_->[5] eq $w } @$runs) } sort keys %workers));
ok(!(grep { defined $_->[7] } @$runs), 'the audit rows have no actor (the module itself)');
is($runs->[0][8], 'recording', 'object type recording');
is($runs->[0][9], $RETENTION * 1000, 'the detail has the retention');

is(chunks_of($live), $CHUNKS, 'a live session keeps its recording');
is(chunks_of($recent), $CHUNKS, 'a session ended within the retention keeps its recording');
is(scalar $dbh->selectrow_array('select count(*) from ssh_sessions where id = any(?)',
                                undef, \@old), $SESSIONS, 'the sessions\' audit rows stay');

# a chunk written late (an outbox behind its session) does not come back
$dbh->do(q{insert into ssh_session_chunks (session_id, seq, t_first, t_last, plain_size, data)
           values (?, 5000, 0, 0, 1, '\x00')}, undef, $old[0]);
is(chunks_of($old[0]), 0, 'a chunk for an expired recording is not stored');

# --- a real session through node A --------------------------------------------

my $f = SeguraTest::Session::fixture($na);
my ($ws, $id) = SeguraTest::Session::live($na, $f, 'real');
$ws->send_binary("seq 1 2000\n");
ok($ws->wait_for(sub { $ws->output =~ /\b2000\r?\n/ }, 10), 'the real session prints');

SeguraTest::Api::add_user($db, 'root', 'root-password-1', admin => 1);
my $admin = SeguraTest::Api->new($na);
is($admin->login('root', 'root-password-1')->code, 200, 'the administrator logs in');

# live: kept, however long it runs
ok(SeguraTest::wait_for(sub { chunks_of($id) > 0 }, 10), 'its chunks are stored');
is($admin->get("/api/sessions/$id/recording")->code, 200, 'a live session replays');

$ws->send_binary("exit\n");
is($ws->wait_close(20), 1000, 'the session ends');
ok(SeguraTest::wait_for(sub {
    $dbh->selectrow_array(q{select count(*) from ssh_session_recordings
                            where session_id = ? and expired_at is not null}, undef, $id)
}, 30), 'its recording expires after the retention');
is(chunks_of($id), 0, 'with no chunk left');
my $r = $admin->get("/api/sessions/$id/recording");
is($r->code, 404, 'an expired recording: 404');
like(eval { $r->json->{error}{message} } // '', qr/expired/, 'saying it expired');
ok((grep { $_->{id} eq $id } @{ $admin->get('/api/sessions')->json->{items} }),
   'the session is still in the audit');
my $row = $dbh->selectrow_hashref(q{select chunks, ended_at, expired_at
                                    from ssh_session_recordings where session_id = ?}, undef, $id);
ok($row->{chunks} > 0 && $row->{ended_at}, 'the recording row keeps its size and end');

my $logs = SeguraTest::slurp($na->error_log) . SeguraTest::slurp($nb->error_log);
like($logs, qr/segura retention: deleted \d+ chunks/, 'a run that deleted says so in its log');
unlike($logs, qr/\[error\]/, 'no [error] in either log');

done_testing();
