# PostgreSQL stopped and started again under a running nginx (a cluster
# of the test's own): while it is down, the API, login and /session answer
# 503 database_unavailable at once and live sessions go on; once it is
# back, everything works again without restarting nginx, and the listener,
# retrying every 5 s at most, ends a session revoked at the restart.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time);
use SeguraTest;
use SeguraTest::Api;
use SeguraTest::Session;
use SeguraTest::WS;

my $t = SeguraTest->new(sshd => 1, private_pg => 1);
$t->run(SeguraTest::Session::config());
my $db = $t->db;

my $LISTENERS = q{select count(*) from pg_stat_activity
                  where application_name = 'ngx_segura_module listener'
                    and datname = current_database()};
ok(SeguraTest::wait_for(sub { $db->dbh->selectrow_array($LISTENERS) == 1 }, 20),
   'the worker listens');

SeguraTest::Api::add_user($db, 'boss', 'boss-password-1', admin => 1);
my $admin = SeguraTest::Api->new($t);
is($admin->login('boss', 'boss-password-1')->code, 200, 'the administrator logs in');

# a session that is open and echoing, with its audit row
sub live { SeguraTest::Session::live($t, @_) }

my $fa = SeguraTest::Session::fixture($t);
my $fb = SeguraTest::Session::fixture($t);
my ($wa, $ida) = live($fa, 'kept');
my ($wb, $idb) = live($fb, 'revoked');

# --- PostgreSQL down ----------------------------------------------------------

$t->pg->stop;
ok(!$t->pg->running, 'PostgreSQL is stopped');

for my $case (['GET /api/health', sub { SeguraTest::Api->new($t)->get('/api/health') }],
              ['GET /api/devices', sub { $admin->get('/api/devices') }],
              ['POST /api/login', sub { SeguraTest::Api->new($t)->login('boss', 'x' x 12) }]) {
    my ($what, $call) = @$case;
    my $t0 = time;
    my $res = $call->();
    my $took = time - $t0;
    is($res->code, 503, "down: $what: 503");
    is($res->json && $res->json->{error}{code}, 'database_unavailable',
       "down: $what: database_unavailable");
    ok($took < 2, sprintf("down: $what: at once (%.2f s)", $took));
}
my $t0 = time;
my $ws = SeguraTest::Session::open_ws($t, $fa);
is($ws->{status}, 503, 'down: /session: 503');
is($ws->{json} && $ws->{json}{error}{code}, 'database_unavailable',
   'down: /session: database_unavailable');
ok(time - $t0 < 2, 'down: /session: at once');

$wa->send_binary("echo during-$$\n");
ok($wa->wait_for(sub { $wa->output =~ /during-$$\r?\n/ }, 10),
   'down: a live session goes on');

# the listener's retries back off: 1, 2, 4 s, then at most 5 s
ok(SeguraTest::wait_for(sub {
    my @n = SeguraTest::slurp($t->error_log)
        =~ /segura watch: cannot listen for grant changes/g;
    @n >= 4;
}, 30, 'four failed reconnections'), 'the listener tried four times');

# --- PostgreSQL back ----------------------------------------------------------

$t->pg->start;
$t0 = time;
$db->dbh->do('delete from group_members where user_id = ?', undef, $fb->{user});

my $e = $wb->wait_event('error', 10);
is($e && $e->{code}, 'access_revoked', 'back: a grant revoked at the restart: access_revoked');
is($wb->wait_close(10), 4014, 'back: close 4014');
ok(time - $t0 < 8, sprintf('back: within the 5 s retry (%.2f s)', time - $t0));

ok(SeguraTest::wait_for(sub {
    SeguraTest::Api->new($t)->get('/api/health')->code == 200
}, 5), 'back: the API answers');
is($admin->get('/api/devices')->code, 200, 'back: the administrator is still logged in');
my $fc = SeguraTest::Session::fixture($t);
live($fc, 'new');
is($db->dbh->selectrow_array($LISTENERS), 1, 'back: one listener');

$wa->send_binary("exit\n");
is($wa->wait_close(10), 1000, 'the session kept through the outage ends with its shell');
is(SeguraTest::wait_for(sub {
    $db->dbh->selectrow_array('select end_reason from ssh_sessions
                               where id = ? and ended_at is not null', undef, $ida)
}, 10), 'exit', 'and its end is recorded');

SeguraTest::done();
