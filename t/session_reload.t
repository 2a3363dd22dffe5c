# After nginx -s reload (no worker_shutdown_timeout), the old worker
# still ends the sessions it keeps: a revoked grant closes one with 4014
# access_revoked within 2 s, an administrator's end another with 4013,
# also after its listener lost its connection; it exits once its last
# session is over.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time);
use SeguraTest;
use SeguraTest::Api;
use SeguraTest::Session;
use SeguraTest::WS;

my $t = SeguraTest->new(sshd => 1);
$t->run(SeguraTest::Session::config());
my $db = $t->db;
my $dbh = $db->dbh;

# this test's listeners only: other files run beside it on the cluster
my $LISTENERS = q{select count(*) from pg_stat_activity
                  where application_name = 'ngx_segura_module listener'
                    and datname = current_database()};
ok(SeguraTest::wait_for(sub { $dbh->selectrow_array($LISTENERS) == 1 }, 20,
                        'the listener'), 'the worker listens');

SeguraTest::Api::add_user($db, 'boss', 'boss-password-1', admin => 1);
my $admin = SeguraTest::Api->new($t);
is($admin->login('boss', 'boss-password-1')->code, 200, 'the administrator logs in');

# a session that is open and echoing, with its audit row
sub live { SeguraTest::Session::live($t, @_) }

# the session ends with $code within $within seconds of $t0
sub ends {
    my ($ws, $id, $t0, $within, $code, $name, $reason, $what) = @_;
    my $e = $ws->wait_event('error', $within + 5);
    is($e && $e->{code}, $name, "$what: error event $name");
    is($ws->wait_close($within + 5), $code, "$what: close $code");
    my $took = time - $t0;
    ok($took < $within, sprintf("$what: within %d s (%.2f s)", $within, $took));
    ok($ws->wait_eof(10), "$what: the connection is closed");
    is(SeguraTest::wait_for(sub {
        $dbh->selectrow_array('select end_reason from ssh_sessions
                               where id = ? and ended_at is not null', undef, $id)
    }, 10), $reason, "$what: audit end_reason $reason");
}

my %f = map { $_ => SeguraTest::Session::fixture($t) }
        qw(revoked ended missed last);
my %ws;
my %id;
($ws{$_}, $id{$_}) = live($f{$_}, $_) for sort keys %f;

# --- the reload ----------------------------------------------------------

my ($old) = $t->workers;
$t->reload;
ok(SeguraTest::wait_for(sub {
    SeguraTest::slurp($t->error_log) =~ /\b$old#\d+: gracefully shutting down/
}, 20), 'the old worker is shutting down');
my $new;
ok(SeguraTest::wait_for(sub {
    ($new) = grep { $_ != $old } $t->workers;
    $new && $dbh->selectrow_array($LISTENERS) == 2;
}, 20, 'the new worker and its listener'),
   'a new worker runs, and both workers listen');
ok(kill(0, $old), 'the old worker stays for its sessions');

# the new generation takes new sessions
my $fresh = SeguraTest::Session::fixture($t);
my ($fws, $fid) = live($fresh, 'fresh');

# --- revoked on the old worker -------------------------------------------

my $t0 = time;
$dbh->do('delete from group_members where user_id = ?', undef, $f{revoked}{user});
ends($ws{revoked}, $id{revoked}, $t0, 2, 4014, 'access_revoked',
     'access_revoked', 'revoked on the old worker');

# --- ended by an administrator -------------------------------------------

$t0 = time;
my $res = $admin->post("/api/sessions/$id{ended}/end", {});
is($res->code, 202, 'POST /api/sessions/<id>/end: 202') or diag($res->body);
ends($ws{ended}, $id{ended}, $t0, 2, 4013, 'session_ended', 'ended_by_admin',
     'ended on the old worker by the administrator');

# --- the listeners lost, a grant revoked meanwhile -----------------------

$dbh->do(q{select pg_terminate_backend(pid) from pg_stat_activity
           where application_name = 'ngx_segura_module listener'
             and datname = current_database()});
$t0 = time;
$dbh->do('delete from group_members where user_id = ?', undef, $f{missed}{user});
ends($ws{missed}, $id{missed}, $t0, 10, 4014, 'access_revoked',
     'access_revoked', 'revoked while the old worker did not listen');
ok(SeguraTest::wait_for(sub { $dbh->selectrow_array($LISTENERS) == 2 }, 20),
   'both listeners are back');
my @lost = SeguraTest::slurp($t->error_log)
    =~ /segura watch: the listener connection was lost/g;
is(scalar @lost, 2, 'each worker logged its loss');

# --- the new worker's session is untouched -------------------------------

$fws->send_binary("echo still-fresh\n");
ok($fws->wait_for(sub { $fws->output =~ /still-fresh\r?\n/ }, 10),
   'the session on the new worker goes on');

# --- the last session ends: the old worker exits -------------------------

ok(kill(0, $old), 'the old worker is still there for its last session');
$ws{last}->send_binary("exit\n");
is($ws{last}->wait_close(10), 1000, 'the last session ends with its shell');
ok(SeguraTest::wait_for(sub {
    !kill(0, $old) || `ps -o stat= -p $old` =~ /Z/
}, 10), 'then the old worker exits');
is($dbh->selectrow_array($LISTENERS), 1, 'and its listener is gone');
unlike(SeguraTest::slurp($t->error_log), qr/open socket #\d+ left/,
       'it left no socket open');

$fws->close(1000);
is($fws->wait_close(10), 1000, 'the fresh session closes normally');

SeguraTest::done();
