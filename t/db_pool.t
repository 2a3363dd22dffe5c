# The database pool: a task waits at most 3 s for a free connection, then
# the API and /session answer 503 database_unavailable; connections that
# PostgreSQL closed while they were idle cost no request; a statement that
# must not run twice is sent once, an idempotent one again on a new
# connection when the first died under it.
use strict;
use warnings;
use Test::More;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time);
use SeguraTest;
use SeguraTest::Api;
use SeguraTest::Session;
use SeguraTest::WS;

my $t = SeguraTest->new(sshd => 1);
# more threads than connections: a task waits for a connection, not for
# a thread
$t->run(SeguraTest::Session::config(),
        main => "thread_pool segura threads=8;\n",
        db_params => 'connections=2');
my $db = $t->db;
my $dbh = $db->dbh;

my $f = SeguraTest::Session::fixture($t);
SeguraTest::Api::add_user($db, 'boss', 'boss-password-1', admin => 1);

# the pool's backends in this test's database
my $POOL = q{select count(*) from pg_stat_activity
             where datname = current_database()
               and application_name = 'ngx_segura_module'};

sub raw_get {
    my ($path) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $t->port, Proto => 'tcp',
                                  Timeout => 5) or die "connect: $!";
    syswrite($s, "GET $path HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    return $s;
}

# the whole response of a raw_get (HTTP/1.0: the server closes)
sub response {
    my ($s, $timeout) = @_;
    my $buf = '';
    my $sel = IO::Select->new($s);
    my $deadline = time + $timeout;
    while ((my $left = $deadline - time) > 0) {
        last unless $sel->can_read($left);
        my $n = sysread($s, $buf, 65536, length $buf);
        last unless $n;
    }
    my ($code) = $buf =~ m{^HTTP/1\.\d (\d+)};
    return ($code // 0, $buf);
}

my $api = SeguraTest::Api->new($t);
is($api->get('/api/health')->code, 200, 'the API answers');
my $ws = SeguraTest::Session::open_ws($t, $f);
ok($ws->wait_event('connected', 20), 'a session starts');
$ws->close(1000);
$ws->wait_close(10);

# --- every connection busy: a bounded wait -----------------------------------

my $hold = $db->new_dbh;
$hold->begin_work;
$hold->do('lock table schema_migrations in access exclusive mode');

my @stuck = map { raw_get('/api/health') } 1 .. 2;
ok(SeguraTest::wait_for(sub {
    $dbh->selectrow_array("$POOL and wait_event_type = 'Lock'") == 2
}, 20, 'two health checks waiting on the lock'),
   'both connections of the pool wait on a lock');

my $t0 = time;
my $res = $api->get('/api/health');
my $took = time - $t0;
is($res->code, 503, 'a third request: 503');
is($res->json && $res->json->{error}{code}, 'database_unavailable',
   'database_unavailable');
ok($took >= 2.9 && $took < 5, sprintf('answered after the 3 s bound (%.2f s)', $took));

$t0 = time;
$ws = SeguraTest::Session::open_ws($t, $f);
$took = time - $t0;
is($ws->{status}, 503, '/session: 503');
is($ws->{json} && $ws->{json}{error}{code}, 'database_unavailable',
   '/session: database_unavailable');
ok($took >= 2.9 && $took < 5, sprintf('/session: after the bound (%.2f s)', $took));

my @waited = SeguraTest::slurp($t->error_log)
    =~ /\[error\].*no database connection free within 3000 ms \(all 2 in use\)/g;
is(scalar @waited, 2, 'each refusal is logged as an error');

$hold->rollback;
for my $i (0 .. 1) {
    my ($code) = response($stuck[$i], 20);
    is($code, 200, "the waiting request $i completes once the lock goes");
}
$t0 = time;
is($api->get('/api/health')->code, 200, 'then the API answers at once');
ok(time - $t0 < 1, 'without waiting');

# --- idle connections closed by PostgreSQL -----------------------------------

ok(SeguraTest::wait_for(sub { $dbh->selectrow_array($POOL) == 2 }, 10),
   'the pool holds two idle connections');
$dbh->do(q{select pg_terminate_backend(pid) from pg_stat_activity
           where datname = current_database()
             and application_name = 'ngx_segura_module'});
ok(SeguraTest::wait_for(sub { $dbh->selectrow_array($POOL) == 0 }, 10),
   'PostgreSQL closed them');

my $before = () = SeguraTest::slurp($t->error_log) =~ /\[error\]/g;
is($api->get('/api/health')->code, 200, 'the API answers as before');
is($api->login('boss', 'boss-password-1')->code, 200, 'a login works');
$ws = SeguraTest::Session::open_ws($t, $f);
ok($ws->wait_event('connected', 20), 'a session starts');
$ws->send_binary("echo pool-\$((6*7))\n");
ok($ws->wait_for(sub { $ws->output =~ /pool-42/ }, 10), 'and its shell answers');
$ws->close(1000);
is($ws->wait_close(10), 1000, 'it closes normally');
my $after = () = SeguraTest::slurp($t->error_log) =~ /\[error\]/g;
is($after, $before, 'no error logged');

# --- a statement that dies with its connection -------------------------------
#
# A trigger terminates its own backend the first time it fires (a
# sequence counts the firings: it is not rolled back), the way a server
# can die while a statement runs.

$dbh->do(q{create sequence t_firings});
$dbh->do(q{create function t_die_once() returns trigger language plpgsql as $$
           begin
               if nextval('t_firings') = 1 then
                   perform pg_terminate_backend(pg_backend_pid());
                   perform pg_sleep(10);
               end if;
               return new;
           end $$});
my $FIRINGS = q{select case when is_called then last_value else 0 end
                from t_firings};

# a failed login counts a failure: it must not count twice
$dbh->do(q{create trigger t_die before insert or update on login_failures
           for each row execute function t_die_once()});
my $guest = SeguraTest::Api->new($t);
$res = $guest->login('nobody', 'wrong-password-1');
is($res->code, 503, 'the connection died under the failure count: 503');
is($res->json && $res->json->{error}{code}, 'database_unavailable',
   'database_unavailable');
is($dbh->selectrow_array($FIRINGS), 1, 'the statement was sent once');
is($dbh->selectrow_array(q{select count(*) from login_failures}), 0,
   'and counted nothing');
$dbh->do(q{drop trigger t_die on login_failures});

# a logout is idempotent: it is sent again and succeeds
$dbh->do(q{alter sequence t_firings restart});
my $user = SeguraTest::Api->new($t);
is($user->login('boss', 'boss-password-1')->code, 200, 'another login');
$dbh->do(q{create trigger t_die before update on web_sessions
           for each row when (new.revoked_at is not null)
           execute function t_die_once()});
$res = $user->post('/api/logout', {});
is($res->code, 200, 'a logout whose connection died: retried, 200')
    or diag($res->body);
is($dbh->selectrow_array($FIRINGS), 2, 'sent twice');
is($dbh->selectrow_array(q{select count(*) from audit_log
                           where action = 'logout'}), 1,
   'one audit row');
is($user->get('/api/me')->code, 401, 'the web session is over');
$dbh->do(q{drop trigger t_die on web_sessions});

SeguraTest::done();
