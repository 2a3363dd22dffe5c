# PostgreSQL failover under a two-host segura_database (a primary and a
# streaming standby, target_session_attrs=read-write): once the standby is
# promoted and the primary stopped, login, the API and new sessions work
# again within 10 s without restarting nginx, and the listener follows:
# a grant revoked after the failover still ends a session with 4014.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time);
use SeguraTest;
use SeguraTest::Api;
use SeguraTest::Session;
use SeguraTest::WS;
use SeguraTest::Pg;

my $t = SeguraTest->new(sshd => 1, no_db => 1);
my $primary = SeguraTest::Pg->private_cluster($t->dir . '/pg1');
my $standby = $primary->standby($t->dir . '/pg2');
my $db = SeguraTest::Pg->database_on([$primary, $standby]);
$t->set_db($db);
like($db->conninfo, qr/^host=\S+pg1\/sock,\S+pg2\/sock .*target_session_attrs=read-write/,
     'segura_database names both hosts');
$t->run(SeguraTest::Session::config());

my $LISTENERS = q{select count(*) from pg_stat_activity
                  where application_name = 'ngx_segura_module listener'
                    and datname = current_database()};

# the same query on one cluster's copy of the database
sub on { my ($pc, $sql) = @_; scalar $pc->db->dbh->selectrow_array($sql) }

ok(SeguraTest::wait_for(sub { on($primary, $LISTENERS) == 1 }, 20),
   'the worker listens on the primary');

SeguraTest::Api::add_user($db, 'boss', 'boss-password-1', admin => 1);

sub works {
    my ($what, $deadline) = @_;
    my $admin = SeguraTest::Api->new($t);
    my $ok = SeguraTest::wait_for(sub {
        $admin->login('boss', 'boss-password-1')->code == 200
    }, $deadline - time);
    ok($ok, sprintf("$what: login works (at %.1f s)", 10 - ($deadline - time)));
    my $res = $admin->get('/api/devices');
    is($res->code, 200, "$what: the API answers") or diag($res->body);
    return $admin;
}

# a session that is open and echoing, with its audit row
sub live { SeguraTest::Session::live($t, @_) }

works('before', time + 10);
my $before = SeguraTest::Session::fixture($t);
my ($bws, $bid) = live($before, 'before');

# --- the failover ----------------------------------------------------------

$primary->wait_replayed($standby);
$standby->promote;
$primary->stop;
my $t0 = time;
my $deadline = $t0 + 10;

works('after', $deadline);
my $after = SeguraTest::Session::fixture($t);
my ($aws, $aid) = live($after, 'after');
ok(time < $deadline, sprintf('a new session within 10 s (%.1f s)', time - $t0));
ok(SeguraTest::wait_for(sub { on($standby, $LISTENERS) == 1 }, $deadline - time),
   sprintf('the listener is on the new primary (%.1f s)', time - $t0));

# --- the listener follows ------------------------------------------------

my $t1 = time;
$db->dbh->do('delete from group_members where user_id = ?', undef, $after->{user});
my $e = $aws->wait_event('error', 10);
is($e && $e->{code}, 'access_revoked', 'a revocation after the failover: access_revoked');
is($aws->wait_close(10), 4014, 'close 4014');
ok(time - $t1 < 3, sprintf('within 3 s (%.2f s)', time - $t1));

# --- the session of before goes on, and its end is recorded ---------------

$bws->send_binary("echo still-$$\n");
ok($bws->wait_for(sub { $bws->output =~ /still-$$\r?\n/ }, 10),
   'the session started before the failover still relays');
$bws->send_binary("exit\n");
is($bws->wait_close(10), 1000, 'it ends with its shell');
is(SeguraTest::wait_for(sub {
    $db->dbh->selectrow_array('select end_reason from ssh_sessions
                               where id = ? and ended_at is not null', undef, $bid)
}, 10), 'exit', 'its end is recorded on the new primary') or
    diag(SeguraTest::slurp($t->error_log) =~ /^(.*\[error\].*)$/mg);

SeguraTest::done();
