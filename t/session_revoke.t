# Live sessions end when the database stops allowing them, whatever the
# change was made through: a grant revoked (a member removed, a key
# deactivated, a permission withdrawn) closes with 4014 access_revoked; an
# administrator's POST /api/sessions/<id>/end closes with 4013
# session_ended. Sessions the change does not concern go on. The worker's
# listener comes back after losing its connection and catches up on what
# it missed.
use strict;
use warnings;
use Test::More;
use SeguraTest;
use SeguraTest::Session;
use SeguraTest::WS;
use SeguraTest::Api;

my $t = SeguraTest->new(sshd => 1);
$t->run(SeguraTest::Session::config());
my $db = $t->db;
my $dbh = $db->dbh;

# this test's listeners only: other files run beside it on the same cluster
my $LISTENERS = q{select count(*) from pg_stat_activity
                  where application_name = 'ngx_segura_module listener'
                    and datname = current_database()};
ok(SeguraTest::wait_for(sub { $dbh->selectrow_array($LISTENERS) == 1 }, 20,
                        'the listener'), 'the worker listens');

# a session that is open and echoing, with its audit row
sub live { SeguraTest::Session::live($t, @_) }

sub still_alive {
    my ($ws, $what) = @_;
    my $mark = 'still-' . int(rand(1e9));
    $ws->send_binary("echo $mark\n");
    ok($ws->wait_for(sub { $ws->output =~ /\Q$mark\E\r?\n/ }, 10), "$what: still echoes");
    ok(!defined $ws->{close_code}, "$what: not closed");
}

sub ends {
    my ($ws, $id, $code, $name, $reason, $what) = @_;
    my $e = $ws->wait_event('error', 15);
    is($e && $e->{code}, $name, "$what: error event $name");
    is($ws->wait_close(10), $code, "$what: close $code");
    ok($ws->wait_eof(10), "$what: the connection is closed");
    is(SeguraTest::wait_for(sub {
        $dbh->selectrow_array('select end_reason from ssh_sessions
                               where id = ? and ended_at is not null', undef, $id)
    }, 10), $reason, "$what: audit end_reason $reason");
}

my $bystander = SeguraTest::Session::fixture($t);
my ($bws) = live($bystander, 'bystander');

# --- grants revoked -------------------------------------------------------

my $f = SeguraTest::Session::fixture($t);
my ($ws, $id) = live($f, 'member');
$dbh->do('delete from group_members where user_id = ?', undef, $f->{user});
ends($ws, $id, 4014, 'access_revoked', 'access_revoked', 'member removed');
still_alive($bws, 'bystander after a member left another group');

$f = SeguraTest::Session::fixture($t);
($ws, $id) = live($f, 'key');
$dbh->do(q{update ssh_keys set status = 'inactive' where id = ?}, undef, $f->{key});
ends($ws, $id, 4014, 'access_revoked', 'access_revoked', 'key deactivated');

$f = SeguraTest::Session::fixture($t);
($ws, $id) = live($f, 'perm');
$dbh->do(q{update access_groups set remote_session = false
           where id in (select group_id from group_members where user_id = ?)},
         undef, $f->{user});
ends($ws, $id, 4014, 'access_revoked', 'access_revoked', 'permission withdrawn');

# a change that keeps every grant re-checks and ends nothing
$dbh->do(q{update access_groups set description = 'renamed'});
$db->insert_group;
still_alive($bws, 'bystander after harmless changes');

# --- an administrator ends a session -------------------------------------

SeguraTest::Api::add_user($db, 'boss', 'boss-password-1', admin => 1);
my $admin = SeguraTest::Api->new($t);
is($admin->login('boss', 'boss-password-1')->code, 200, 'the administrator logs in');

$f = SeguraTest::Session::fixture($t);
($ws, $id) = live($f, 'ended');

my $user = SeguraTest::Api->new($t, headers => { Cookie => $f->{cookie} });
my $res = $user->post("/api/sessions/$id/end", {});
is($res->code, 403, 'a user who is not an administrator may not end a session');

$res = $admin->post("/api/sessions/$id/end", {});
is($res->code, 202, 'POST /api/sessions/<id>/end: 202') or diag($res->body);
is($res->json->{id}, $id, 'it names the session');
ok($res->json->{ending}, 'ending: true');
ends($ws, $id, 4013, 'session_ended', 'ended_by_admin', 'ended by the administrator');

$res = $admin->post("/api/sessions/$id/end", {});
is($res->code, 409, 'an ended session: 409');
is($res->json->{error}{code}, 'already_ended', 'already_ended');
my ($by, $at) = $dbh->selectrow_array(
    'select end_requested_by, end_requested_at from ssh_sessions where id = ?', undef, $id);
ok($by && $at, 'the request is recorded on the session');
is($dbh->selectrow_array(q{select count(*) from audit_log where action = 'session_terminate'
                           and object_id = ?}, undef, $id), 1, 'and in audit_log');
my ($item) = grep { $_->{id} eq $id } @{ $admin->get('/api/sessions')->json->{items} };
ok($item && $item->{end_requested_at}, 'GET /api/sessions shows end_requested_at');

is($admin->post('/api/sessions/00000000-0000-4000-8000-000000000000/end', {})->code, 404,
   'an unknown session: 404');
for my $p ("$id/stop", "$id/end/x", 'not-a-uuid/end', substr($id, 0, 35) . 'g/end', "$id") {
    is($admin->post("/api/sessions/$p", {})->code, 404, "/api/sessions/$p: 404");
}
is($admin->get("/api/sessions/$id/end")->code, 405, 'GET on end: 405');
still_alive($bws, 'bystander after another session was ended');

# --- the listener is lost, a grant is revoked meanwhile ------------------

$f = SeguraTest::Session::fixture($t);
($ws, $id) = live($f, 'missed');
$dbh->do(q{select pg_terminate_backend(pid) from pg_stat_activity
           where application_name = 'ngx_segura_module listener'
             and datname = current_database()});
# revoked while nobody listens: the notification is lost, the re-check on
# reconnection finds it
$dbh->do('delete from group_members where user_id = ?', undef, $f->{user});
ends($ws, $id, 4014, 'access_revoked', 'access_revoked', 'revoked while the listener was down');
ok(SeguraTest::wait_for(sub { $dbh->selectrow_array($LISTENERS) == 1 }, 20),
   'the listener is back');
like(SeguraTest::slurp($t->error_log), qr/segura watch: the listener connection was lost/,
     'the loss is logged');

# and it still hears
$f = SeguraTest::Session::fixture($t);
($ws, $id) = live($f, 'after');
$dbh->do('delete from group_members where user_id = ?', undef, $f->{user});
ends($ws, $id, 4014, 'access_revoked', 'access_revoked', 'revoked after the reconnection');

still_alive($bws, 'bystander at the end');
$bws->close(1000);
is($bws->wait_close(10), 1000, 'the bystander closes normally');

SeguraTest::done();
