# Resume: the connected event carries a token; a client whose connection
# drops (no close frame) or whose page goes away (close 1001) leaves the
# shell up for segura_resume_timeout, its output kept in the terminal's
# ring; /session?resume=<token>&received=<n> by the same user re-attaches
# and gets every byte after n exactly once, then the live output.  A
# normal close ends the session; an unresumed one ends as detached_timeout;
# another user, another key or a wrong token gets nothing; a resume while
# the old connection is still attached displaces it (resumed_elsewhere).
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use SeguraTest;
use SeguraTest::Session;
use SeguraTest::WS;

my $t = SeguraTest->new(sshd => 1);
$t->run(<<'EOF');
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /session { segura_session; }
        location = /session-short { segura_resume_timeout 2s; segura_session; }
        location = /session-noresume { segura_resume_timeout 0; segura_session; }
        location /api/ { segura_api; }
    }
EOF
my $f = SeguraTest::Session::fixture($t);
my $db = $t->db;

sub resume_ws {
    my ($token, $received, %o) = @_;
    my $path = $o{path} // '/session';
    my $fx = $o{fixture} // $f;
    return SeguraTest::WS->connect($t->port,
        "$path?key=$fx->{key}&device=$fx->{device}"
        . "&resume=$token&received=$received", Cookie => $fx->{cookie});
}

sub audit_rows {
    my ($id, $action) = @_;
    return $db->dbh->selectrow_array(
        "select count(*) from audit_log where object_type = 'ssh_session'"
        . " and object_id = ? and action = ?", undef, $id, $action);
}

sub end_reason {
    my ($id) = @_;
    return $db->dbh->selectrow_array(
        'select end_reason from ssh_sessions where id = ? and ended_at is not null',
        undef, $id);
}

# --- every line exactly once across a dropped connection -----------------

my $ws = SeguraTest::Session::open_ws($t, $f);
my $c = $ws->wait_event('connected', 20);
ok($c && $c->{resume}, 'connected carries a resume token')
    or diag explain $c;
my ($token, $id) = ($c->{resume}, $c->{session});
like($token, qr/^\d+\.\Q$id\E\.[A-Za-z0-9_-]{43}$/,
     'the token names the worker and the session');
$ws->acking;

$ws->send_binary("seq 1 1000000; echo SEQ-DONE-\$((6*7))\n");
ok($ws->wait_for(sub { ($ws->{output_bytes} // 0) > 1_500_000 }, 30),
   'the output flows') or diag($ws->{output_bytes});

# the connection drops in the middle: no close frame
my $got1 = $ws->{output_bytes};
my $out1 = $ws->{output};
$ws->disconnect;

ok(SeguraTest::wait_for(sub { audit_rows($id, 'session_detached') }, 10),
   'the detach is an audit row');

# the scenario's gap (the issue's 5 s): the device goes on printing into the
# ring meanwhile, then waits on the SSH window
sleep 5;
is(end_reason($id), undef, 'the session is still up while detached');

my $ws2 = resume_ws($token, $got1);
my $r = $ws2->wait_event('resumed', 20);
ok($r, 'resumed') or diag explain [$ws2->{status}, $ws2->{body}];
is($r->{session}, $id, 'the same session');
is($r->{lost}, 0, 'nothing lost');
ok($r->{missed} > 0, "what was missed comes first ($r->{missed} bytes)");
$ws2->acking($got1);

ok($ws2->wait_for(sub { ($ws2->{output} // '') =~ /SEQ-DONE-42/ }, 60),
   'the rest of the output arrives')
    or diag(length($ws2->{output} // ''));

my $all = $out1 . $ws2->{output};
if ($ENV{RESUME_DEBUG}) {
    diag('out1 head: ' . substr($out1, 0, 200) =~ s/\r/\\r/gr =~ s/\n/\\n/gr);
    diag('out1 tail: ' . substr($out1, -100) =~ s/\r/\\r/gr =~ s/\n/\\n/gr);
    diag('out2 head: ' . substr($ws2->{output}, 0, 200) =~ s/\r/\\r/gr =~ s/\n/\\n/gr);
    diag("got1 $got1 len1 " . length($out1) . " missed $r->{missed}");
}
$all =~ s/\e\[\?2004[hl]//g;    # bracketed paste on and off
my @nums = $all =~ /^\r?(\d+)\r$/mg;
my $bad = 0;
for my $i (0 .. $#nums) {
    if ($nums[$i] != $i + 1) { $bad = $i + 1; last }
}
is(scalar(@nums), 1_000_000, 'a million lines');
is($bad, 0, 'every line exactly once, in order')
    or diag("first bad at index $bad: " . join(',', @nums[$bad - 3 .. $bad + 3]));

ok(SeguraTest::wait_for(sub { audit_rows($id, 'session_resumed') }, 10),
   'the re-attach is an audit row');

# the shell is the same one
$ws2->send_binary("echo still-\$((40+2))\n");
ok($ws2->wait_for(sub { $ws2->{output} =~ /still-42/ }, 10),
   'the resumed shell answers');

# --- a resume while the old connection is attached displaces it ----------

my $ws3 = resume_ws($token, $ws2->{output_bytes} + $got1);
ok($ws3->wait_event('resumed', 20), 'a second resume while attached');
is($ws2->wait_close(10), 4015, 'the old connection is told: 4015');
ok(grep({ $_->{type} eq 'error' && $_->{code} eq 'resumed_elsewhere' }
        $ws2->events), 'with the resumed_elsewhere event');
$ws2->disconnect;
$ws3->send_binary("echo third-\$((3*3))\n");
ok($ws3->wait_for(sub { ($ws3->{output} // '') =~ /third-9/ }, 10),
   'the new one has the shell');

# --- a page going away (1001) is resumable; a normal close ends ----------

$ws3->send_frame(opcode => 8, payload => pack('n', 1001));
$ws3->wait_close(10);
$ws3->disconnect;
ok(SeguraTest::wait_for(sub { audit_rows($id, 'session_detached') >= 2 }, 10),
   'close 1001 detaches');
my $ws4 = resume_ws($token, 0);
$r = $ws4->wait_event('resumed', 20);
ok($r, 'and the page resumes');
ok($r && $r->{lost} > 0, 'a client that asks for bytes no longer held is told they are lost');
$ws4->close(1000);
$ws4->wait_close(10);
$ws4->disconnect;
ok(SeguraTest::wait_for(sub { end_reason($id) }, 10), 'close 1000 ends it');
is(end_reason($id), 'client_closed', 'as client_closed');
my $ws5 = resume_ws($token, 0);
is($ws5->{status}, 404, 'an ended session cannot be resumed');
is($ws5->{json} && $ws5->{json}{error}{code}, 'not_found', 'with a JSON error')
    or diag explain $ws5->{json};

# --- timeout, other users, bad tokens, resume off -------------------------

my $wsS = SeguraTest::WS->connect($t->port,
    "/session-short?key=$f->{key}&device=$f->{device}", Cookie => $f->{cookie});
$c = $wsS->wait_event('connected', 20);
my ($tokS, $idS) = ($c->{resume}, $c->{session});
$wsS->disconnect;
ok(SeguraTest::wait_for(sub { end_reason($idS) }, 15),
   'an unresumed session ends');
is(end_reason($idS), 'detached_timeout', 'as detached_timeout');
is(resume_ws($tokS, 0, path => '/session-short')->{status}, 404,
   'and cannot be resumed after');

my $f2 = SeguraTest::Session::fixture($t);
my $wsA = SeguraTest::Session::open_ws($t, $f);
$c = $wsA->wait_event('connected', 20);
my $tokA = $c->{resume};
$wsA->disconnect;
ok(SeguraTest::wait_for(sub { audit_rows($c->{session}, 'session_detached') }, 10),
   'another session detached');
my $other = resume_ws($tokA, 0, fixture => $f2);
is($other->{status}, 404, 'another user cannot use the token');
(my $forged = $tokA) =~ s/.$/$& eq 'A' ? 'B' : 'A'/e;
is(resume_ws($forged, 0)->{status}, 404, 'a forged token finds nothing');
is(resume_ws('x' x 200, 0)->{status}, 400, 'an overlong token is a bad request');
my $wsB = resume_ws($tokA, 0);
ok($wsB->wait_event('resumed', 20), 'the owner still can');
$wsB->close(1000);
$wsB->wait_close(10);

my $wsN = SeguraTest::WS->connect($t->port,
    "/session-noresume?key=$f->{key}&device=$f->{device}", Cookie => $f->{cookie});
$c = $wsN->wait_event('connected', 20);
ok($c && !exists $c->{resume}, 'segura_resume_timeout 0: no token');
$wsN->disconnect;
ok(SeguraTest::wait_for(sub { end_reason($c->{session}) }, 10),
   'and a dropped connection ends the session');
is(end_reason($c->{session}), 'client_gone', 'as client_gone');

$t->{passed} = 1;
done_testing;
