# Moderating a live session from another node: POST /api/sessions/<id>/lock
# {"locked":true} on node B drops the owner's keystrokes on node A and
# tells the owner (and the watchers) with a "locked" event; unlock restores
# the input; POST /api/sessions/<id>/end {"message":...} ends it and the
# owner's error event carries who and the message.  Each action is a
# marker in the recording and a row in audit_log.  Bad requests: 403,
# 404, 409, 422.
use strict;
use warnings;
use Test::More;
use SeguraTest;
use SeguraTest::Pg;
use SeguraTest::Session;
use SeguraTest::WS;
use SeguraTest::Api;

my $na = SeguraTest->new(sshd => 1);
$na->run(SeguraTest::Session::config());
my $db = $na->db;
my $dbh = $db->dbh;

my $nb = SeguraTest->new(no_db => 1);
my $conninfo = $db->conninfo;
my $key_file = $na->master_key_file;
$nb->run(<<"EOF" . SeguraTest::Session::config(), no_defaults => 1);
    segura_database    "$conninfo";
    segura_master_key  $key_file;
    segura_thread_pool segura;
EOF

# the administrator works on node B
SeguraTest::Api::add_user($db, 'boss', 'boss-password-1', admin => 1);
my $boss = SeguraTest::Api->new($nb);
is($boss->login('boss', 'boss-password-1')->code, 200, 'node B: the administrator logs in');

# both listeners (one worker per node) are up before anything is notified
ok(SeguraTest::wait_for(sub {
    $dbh->selectrow_array(q{select count(*) from pg_stat_activity
                            where application_name = 'ngx_segura_module listener'
                              and datname = current_database()}) == 2
}, 20), 'both nodes listen');

my $f = SeguraTest::Session::fixture($na);
my ($ws, $id) = SeguraTest::Session::live($na, $f, 'owner');

# a watcher on node A sees the moderation too
my $w = SeguraTest::WS->connect($na->port, "/session?watch=$id",
                                Cookie => 'segura_session=' . $boss->cookie);
is($w->{status}, 101, 'node A: the administrator watches');
my $e = $w->wait_event('watching', 10);
ok($e && !$e->{locked}, 'the session is not locked');

# --- refusals ---------------------------------------------------------------

my $user = SeguraTest::Api->new($nb, headers => { Cookie => $f->{cookie} });
is($user->post("/api/sessions/$id/lock", { locked => JSON::PP::true })->code, 403,
   'a user who is not an administrator may not lock');
my $res = $boss->post("/api/sessions/$id/lock", {});
is($res->code, 422, 'lock without locked: 422');
is($res->json->{error}{field}, 'locked', 'field locked');
is($boss->post("/api/sessions/$id/lock", { locked => 'yes' })->code, 422, 'locked not a boolean: 422');
is($boss->post("/api/sessions/$id/lock", { locked => JSON::PP::true, x => 1 })->code, 422,
   'an unknown member: 422');
is($boss->get("/api/sessions/$id/lock")->code, 405, 'GET on lock: 405');
is($boss->post('/api/sessions/00000000-0000-4000-8000-000000000000/lock',
               { locked => JSON::PP::true })->code, 404, 'an unknown session: 404');
$res = $boss->post("/api/sessions/$id/end", { message => 'x' x 501 });
is($res->code, 422, 'an end message over 500 bytes: 422');
is($res->json->{error}{field}, 'message', 'field message');
is($boss->post("/api/sessions/$id/end", { message => "two\nlines" })->code, 422,
   'an end message with a control character: 422');
is($boss->post("/api/sessions/$id/end", { message => 5 })->code, 422, 'an end message not a string: 422');
ok(!$ws->{close_code}, 'the session goes on after the refusals');

# --- lock -------------------------------------------------------------------

$res = $boss->post("/api/sessions/$id/lock", { locked => JSON::PP::true });
is($res->code, 200, 'node B: POST lock {"locked":true}: 200') or diag($res->body);
ok($res->json->{locked}, 'the answer says locked');
$e = $ws->wait_event('locked', 10);
ok($e && $e->{locked}, 'node A: the owner is told the input is locked');
is($e && $e->{by}, 'boss', 'by whom');
$e = $w->wait_event('locked', 10);
ok($e && $e->{locked}, 'the watcher is told too');

my $before = length $ws->output;
$ws->send_binary("echo typed-while-LOCKED-\$((3*3))\n");
# what reaches the shell would be echoed by its pty; a later marker after
# the unlock proves the shell has answered everything it got by then
$res = $boss->post("/api/sessions/$id/lock", { locked => JSON::PP::false });
is($res->code, 200, 'node B: POST lock {"locked":false}: 200');
ok($ws->wait_for(sub { grep { $_->{type} eq 'locked' && !$_->{locked} } $ws->events }, 10),
   'node A: the owner is told the input is unlocked');
$ws->send_binary("echo after-unlock-\$((4*4))\n");
ok($ws->wait_for(sub { $ws->output =~ /after-unlock-16/ }, 10), 'after the unlock the keys reach the shell');
unlike(substr($ws->output, $before), qr/LOCKED/, 'what was typed while locked never reached the shell');
ok(!grep({ $_->{type} eq 'error' } $ws->events), 'no error for the owner');
is($dbh->selectrow_array('select locked from ssh_sessions where id = ?', undef, $id), 0,
   'the session row is unlocked');

# lock again: GET /api/sessions shows it
is($boss->post("/api/sessions/$id/lock", { locked => JSON::PP::true })->code, 200, 'locked again');
my ($item) = grep { $_->{id} eq $id } @{ $boss->get('/api/sessions')->json->{items} };
ok($item && $item->{locked}, 'GET /api/sessions shows locked');

# --- end with a message -----------------------------------------------------

my $note = "Maintenance window: please log in again after 18:00 \x{2014} the team";
$res = $boss->post("/api/sessions/$id/end", { message => $note });
is($res->code, 202, 'node B: POST end with a message: 202') or diag($res->body);
$e = $ws->wait_event('error', 15);
is($e && $e->{code}, 'session_ended', 'node A: the owner hears session_ended');
is($e && $e->{note}, $note, 'with the message');
is($e && $e->{by}, 'boss', 'and who ended it');
is($ws->wait_close(10), 4013, 'close 4013');
$e = $w->wait_event('error', 10);
is($e && $e->{note}, $note, 'the watcher sees the message too');
is($dbh->selectrow_array('select end_message from ssh_sessions where id = ?', undef, $id),
   $note, 'the message is kept on the session row');

ok(SeguraTest::wait_for(sub {
    $dbh->selectrow_array('select ended_at is not null from ssh_sessions where id = ?', undef, $id)
}, 10), 'the audit row says it ended');
is($boss->post("/api/sessions/$id/lock", { locked => JSON::PP::false })->code, 409,
   'an ended session cannot be unlocked: 409');

# --- the recording and the audit ------------------------------------------

ok(SeguraTest::wait_for(sub {
    $dbh->selectrow_array('select ended_at is not null from ssh_session_recordings
                           where session_id = ?', undef, $id)
}, 15), 'the recording is complete');
$res = $boss->get("/api/sessions/$id/recording");
is($res->code, 200, 'the recording is served by node B');
my @markers = map { $_->[2] } grep { ref $_ eq 'ARRAY' && $_->[1] eq 'm' }
              map { eval { JSON::PP::decode_json($_) } } split /\n/, $res->body;
ok((grep { $_ eq 'locked by boss' } @markers) == 2, 'two lock markers') or diag(explain(\@markers));
ok((grep { $_ eq 'unlocked by boss' } @markers) == 1, 'one unlock marker');
ok((grep { index($_, 'ended by boss: Maintenance window') == 0 } @markers) == 1,
   'the end marker with the message');

my %audit;
for my $r (@{ $dbh->selectall_arrayref(q{select action, actor_name, detail->>'message'
                                         from audit_log where object_id = ?
                                         order by id}, undef, $id) }) {
    push @{ $audit{$r->[0]} }, $r;
}
is(scalar @{ $audit{session_lock} || [] }, 2, 'two session_lock rows in audit_log');
is(scalar @{ $audit{session_unlock} || [] }, 1, 'one session_unlock row');
is($audit{session_terminate} && $audit{session_terminate}[0][2], $note,
   'the session_terminate row keeps the message');
is($audit{session_lock} && $audit{session_lock}[0][1], 'boss', 'by the administrator');

# --- an end without a message still names who ended it --------------------

my $g = SeguraTest::Session::fixture($na);
my ($ws2, $id2) = SeguraTest::Session::live($na, $g, 'plain');
is($boss->post("/api/sessions/$id2/end", {})->code, 202, 'end without a message: 202');
$e = $ws2->wait_event('error', 15);
is($e && $e->{code}, 'session_ended', 'session_ended');
is($e && $e->{by}, 'boss', 'by boss');
is($e && $e->{note}, '', 'and an empty note');
is($ws2->wait_close(10), 4013, 'close 4013');

# --- a lock while node A's listener is down: its re-check catches up -------

my $k = SeguraTest::Session::fixture($na);
my ($ws3, $id3) = SeguraTest::Session::live($na, $k, 'missed');
my $lost = () = SeguraTest::slurp($na->error_log) =~ /the listener connection was lost/g;
$dbh->do(q{select pg_terminate_backend(pid) from pg_stat_activity
           where application_name = 'ngx_segura_module listener'
             and datname = current_database()});
ok(SeguraTest::wait_for(sub {
    (() = SeguraTest::slurp($na->error_log) =~ /the listener connection was lost/g) > $lost
}, 10), 'node A lost its listener');
is($boss->post("/api/sessions/$id3/lock", { locked => JSON::PP::true })->code, 200,
   'locked while node A does not listen');
$e = $ws3->wait_event('locked', 15);
ok($e && $e->{locked}, 'node A applies the lock when its listener is back');
$ws3->send_binary("echo missed-LOCKED\n");
is($boss->post("/api/sessions/$id3/lock", { locked => JSON::PP::false })->code, 200, 'unlocked');
ok($ws3->wait_for(sub { grep { $_->{type} eq 'locked' && !$_->{locked} } $ws3->events }, 15),
   'the unlock is heard');
$ws3->send_binary("echo missed-after-\$((7*7))\n");
ok($ws3->wait_for(sub { $ws3->output =~ /missed-after-49/ }, 10), 'the keys reach the shell again');
unlike($ws3->output, qr/missed-LOCKED/, 'not those typed while locked');
$ws3->close(1000);
is($ws3->wait_close(10), 1000, 'the owner closes');

SeguraTest::done();
