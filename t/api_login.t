# Login, logout, /api/me, the session cookie (expiry, forgery, revocation),
# the failed-login throttle and segura_user delegation.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time);
use Digest::SHA qw(hmac_sha256 hmac_sha256_hex);
use SeguraTest;
use SeguraTest::Api;

my $t = SeguraTest->new;
$t->run(<<'EOF2');
    map $http_x_user $segura_test_user { default $http_x_user; }
    server {
        listen 127.0.0.1:%%PORT%%;
        location /api/ { segura_api; }
    }
    server {
        listen 127.0.0.1:%%PORT%%;
        server_name delegated;
        # the test's stand-in for a trusted front proxy that sets the
        # name (segura_user refuses a request header named directly)
        location /api/ {
            segura_user $segura_test_user;
            segura_api;
        }
    }
EOF2

my $db = $t->db;

# segura_login_concurrency's default: half the CPUs among the workers (one)
chomp(my $ncpu = `nproc`);
my $want = int($ncpu / 2) || 1;
ok(SeguraTest::wait_for(sub {
       SeguraTest::slurp($t->error_log)
           =~ /segura: logins: (\d+) argon2id verifications at a time/ && $1 == $want
   }, 10), "the default is $want verification(s) at a time for $ncpu CPUs and one worker");

# the throttle's key of a name, as the module makes it (016_login_attempts)
sub name_key {
    my ($name) = @_;
    my $sub = hmac_sha256('segura login name key', $t->master_key);
    return hmac_sha256_hex(lc $name, $sub);
}

my $password = 'correct horse battery';
$t->canary($password);
my $alice = SeguraTest::Api::add_user($db, 'alice', $password);
my $g = $db->insert_group(name => 'ops');
$db->grant(group => $g, members => [$alice]);

my $api = SeguraTest::Api->new($t);

my $res = $api->get('/api/me');
is($res->code, 401, 'no cookie: 401');
is($res->json->{error}{code}, 'unauthenticated', '401 code');

$res = $api->login('alice', 'wrong password');
is($res->code, 401, 'wrong password: 401');
like($res->json->{error}{message}, qr/user name or password/, 'does not say which part');
ok(!defined $api->cookie, 'no cookie on failure');

$res = $api->login('nobody', 'wrong password');
is($res->code, 401, 'unknown user: 401, same answer');
is($res->json->{error}{message}, 'Wrong user name or password', 'same message');

$res = $api->post('/api/login', { username => 'alice' });
is($res->code, 422, 'missing password: 422');
is($res->json->{error}{field}, 'password', 'names the field');

$res = $api->post('/api/login', { username => 'alice', password => 1 });
is($res->code, 422, 'password of the wrong type: 422');

$res = $api->post('/api/login', '{"username":');
is($res->code, 400, 'malformed JSON: 400');
is($res->json->{error}{code}, 'invalid_json', 'invalid_json');

$res = $api->post('/api/login', { username => 'alice', password => $password, pasword => 1 });
is($res->code, 422, 'unknown field: 422');
is($res->json->{error}{field}, 'pasword', 'names the unknown field');

$res = $api->login('alice', $password);
is($res->code, 200, 'login: 200');
is($res->json->{username}, 'alice', 'login returns the user');
my $setc = $res->headers->header('Set-Cookie');
like($setc, qr/segura_session=[A-Za-z0-9_-]{43};/, 'cookie set');
like($setc, qr/HttpOnly/, 'HttpOnly');
like($setc, qr/SameSite=Strict/, 'SameSite=Strict');
ok($api->cookie, 'cookie kept');

is($db->dbh->selectrow_array('select count(*) from login_failures'), 1,
   'the unknown name still has its failure record');
is($db->dbh->selectrow_array(q{select count(*) from login_failures where name_key = ?},
                              undef, name_key('alice')), 0,
   'success clears the failures');
is($db->dbh->selectrow_array(q{select count from login_failures where name_key = ?},
                              undef, name_key('nobody')), 1,
   'the unknown name is counted under its keyed hash');
is($db->dbh->selectrow_array(q{select count(*) from login_failures where name_key ~* 'nobody'}), 0,
   'the typed name is not stored');
my $detail = $db->dbh->selectrow_array(q{select detail::text from audit_log
    where action = 'login_failed' and object_id is null});
unlike($detail, qr/nobody/, 'the audit row of an unknown name does not hold it');
like($detail, qr/"name_key": "@{[ substr(name_key('nobody'), 0, 16) ]}"/,
     'but the start of its keyed hash');
like($db->dbh->selectrow_array(q{select detail::text from audit_log
    where action = 'login_failed' and object_id is not null}), qr/"username": "alice"/,
     'the audit row of a known name names the account');

$res = $api->get('/api/me');
is($res->code, 200, 'me: 200');
is($res->json->{username}, 'alice', 'me: alice');
is($res->json->{admin}, Mojo::JSON->false, 'me: not admin');
is($res->json->{groups}[0]{name}, 'ops', 'me: groups');
ok($res->json->{groups}[0]{permissions}{remote_session}, 'me: permissions');

my ($hash) = $db->dbh->selectrow_array('select encode(token_hash, \'hex\') from web_sessions');
like($hash, qr/^[0-9a-f]{64}$/, 'the token is stored hashed');

# a forged cookie
my $forged = SeguraTest::Api->new($t);
$forged->ua->cookie_jar->add(Mojo::Cookie::Response->new(
    name => 'segura_session', value => 'A' x 43, domain => '127.0.0.1', path => '/'));
is($forged->get('/api/me')->code, 401, 'forged cookie: 401');

# logout revokes it server-side
my $cookie = $api->cookie;
$res = $api->post('/api/logout', {});
is($res->code, 200, 'logout: 200');
like($res->headers->header('Set-Cookie'), qr/Max-Age=0/, 'logout clears the cookie');
my $replay = SeguraTest::Api->new($t);
$replay->ua->cookie_jar->add(Mojo::Cookie::Response->new(
    name => 'segura_session', value => $cookie, domain => '127.0.0.1', path => '/'));
is($replay->get('/api/me')->code, 401, 'the revoked cookie replayed: 401');
ok($db->dbh->selectrow_array('select revoked_at is not null from web_sessions'), 'revoked_at set');

# an expired cookie
$api->login('alice', $password);
$db->dbh->do(q{update web_sessions set created_at = now() - interval '2 days', expires_at = now() - interval '1 second' where revoked_at is null});
is($api->get('/api/me')->code, 401, 'expired cookie: 401');

# an idle cookie
$api->login('alice', $password);
$db->dbh->do(q{update web_sessions set last_seen_at = now() - interval '31 minutes' where revoked_at is null});
is($api->get('/api/me')->code, 401, 'idle cookie: 401');
ok($db->dbh->selectrow_array(q{select count(*) = 0 from web_sessions where revoked_at is null}),
   'the idle session was revoked');

# an inactive user cannot log in
$api->login('alice', $password);
$db->dbh->do(q{update users set status = 'inactive' where username = 'alice'});
is($api->get('/api/me')->code, 401, 'a deactivated user\'s cookie stops working');
is($api->login('alice', $password)->code, 401, 'inactive user: 401');
$db->dbh->do(q{update users set status = 'active' where username = 'alice'});

# the throttle: five failures, then 429 even with the right password
$db->dbh->do('delete from login_failures');
for my $i (1 .. 5) {
    is($api->login('alice', "wrong $i")->code, 401, "failure $i: 401");
}
$res = $api->login('alice', $password);
is($res->code, 429, 'sixth attempt: 429');
is($res->json->{error}{code}, 'too_many_attempts', '429 code');
like($res->headers->header('Retry-After') // '', qr/^[1-9]\d*$/, '429 says when to retry');
for my $i (1 .. 5) { $api->login('ghost', "wrong $i") }
is($api->login('ghost', 'x')->code, 429, 'unknown names are throttled too');
is($db->dbh->selectrow_array(q{select failed_logins from users where username = 'alice'}), 5,
   'users.failed_logins counts');
$db->dbh->do(q{update login_failures set last_at = now() - interval '2 seconds'});
is($api->login('alice', $password)->code, 200, 'after the wait (2^0 s) a login works again');

# a failure record quiet for a day is dropped by the next failure
my $stale = '0' x 64;
$db->dbh->do(q{insert into login_failures (name_key, count, last_at) values (?, 9, now() - interval '2 days')},
             undef, $stale);
$api->login('someone', 'wrong');
is($db->dbh->selectrow_array(q{select count(*) from login_failures where name_key = ?}, undef, $stale), 0,
   'stale failure records are dropped');

# audit
my $n = $db->dbh->selectrow_array(q{select count(*) from audit_log where action = 'login_failed'});
ok($n >= 10, 'failed logins are audited');
ok($db->dbh->selectrow_array(q{select count(*) from audit_log where action = 'login' and actor_name = 'alice'}),
   'logins are audited');

# wrong password and unknown user both verify a hash (equal work): compare
# the order of magnitude only, never a hard threshold
$db->dbh->do('delete from login_failures');
my (@known, @unknown);
for (1 .. 3) {
    my $t0 = time; $api->login('alice', 'wrong'); push @known, time - $t0;
    $t0 = time; $api->login('unknown-user', 'wrong'); push @unknown, time - $t0;
    $db->dbh->do('delete from login_failures');
}
my ($k) = sort { $a <=> $b } @known;
my ($u) = sort { $a <=> $b } @unknown;
ok($u > $k / 10, "unknown user costs the same order of work ($u vs $k)");

# segura_user delegation
my $del = SeguraTest::Api->new($t, headers => { Host => 'delegated', 'X-User' => 'alice' });
$res = $del->get('/api/me');
is($res->code, 200, 'delegated identity: 200');
is($res->json->{username}, 'alice', 'delegated identity: alice');
$res = SeguraTest::Api->new($t, headers => { Host => 'delegated', 'X-User' => 'mallory' })->get('/api/me');
is($res->code, 403, 'delegated unknown name: 403');
is($res->json->{error}{code}, 'forbidden', '403 code');
$db->dbh->do(q{update users set status = 'inactive' where username = 'alice'});
is($del->get('/api/me')->code, 403, 'delegated inactive user: 403');
$db->dbh->do(q{update users set status = 'active' where username = 'alice'});
$res = SeguraTest::Api->new($t, headers => { Host => 'delegated' })->get('/api/me');
is($res->code, 401, 'delegation with an empty name falls back to the cookie');

$t->stop;
my $log = SeguraTest::slurp($t->error_log);
like($log, qr/\[info\].*segura api: login of "alice" failed/, 'failure logged at info');
like($log, qr/\[info\].*segura api: login of an unknown name \(key [0-9a-f]{16}\) failed/,
     'an unknown name is logged by its key');
unlike($log, qr/"nobody"|"ghost"|"unknown-user"/, 'typed unknown names are not logged');
like($log, qr/\[info\].*segura api: delegated user "mallory" refused/, 'refused delegation logged');

# the database down: every endpoint that needs it answers 503
my $t2 = SeguraTest->new(no_db => 1);
$t2->run(<<'EOF2', no_defaults => 1);
    segura_database "host=/nonexistent dbname=segura user=segura";
    segura_master_key %%MASTER_KEY%%;
    segura_thread_pool segura;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /api/ { segura_api; }
    }
EOF2
my $down = SeguraTest::Api->new($t2);
$res = $down->login('alice', $password);
is($res->code, 503, 'login with the database down: 503');
is($res->json->{error}{code}, 'database_unavailable', '503 code');
is($down->get('/api/keys')->code, 503, 'a resource with the database down: 503');

SeguraTest::done();
