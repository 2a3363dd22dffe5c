# Login abuse: after 5 failures for a name, 32 parallel wrong passwords are
# refused (429) and cost at most one more argon2id run; 200 logins with
# random names from one address are throttled by the address budget, and
# once the database has refused the address its logins are answered 429 on
# the event loop, without a pool task; logins enter the pool only
# segura_login_concurrency at a time, the rest wait in line (256 per
# worker, then 503 busy with Retry-After), and none is lost; POST
# /api/login/ takes the same path; a password change ends the user's other
# web sessions.
use strict;
use warnings;
use Test::More;
use Mojo::Promise;
use Mojo::UserAgent;
use Mojo::JSON qw(encode_json);
use IO::Socket::INET;
use Digest::SHA qw(hmac_sha256 hmac_sha256_hex);
use SeguraTest;
use SeguraTest::Api;

my $t = SeguraTest->new;
$t->run(<<'EOF2');
    segura_login_concurrency 1;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /api/ { segura_api; }
    }
    server {
        listen 127.0.0.1:%%PORT%%;
        server_name nolimit;
        location /api/ { segura_api; segura_login_address_limit off; }
    }
EOF2

my $db = $t->db;
ok(SeguraTest::wait_for(sub {
       SeguraTest::slurp($t->error_log)
           =~ /segura: logins: 1 argon2id verifications at a time in this worker/ }, 10),
   'segura_login_concurrency 1 is what the worker uses');
my $password = 'alice-password-1';
my $alice = SeguraTest::Api::add_user($db, 'alice', $password);
my $root = SeguraTest::Api::add_user($db, 'root', 'root-password-1', admin => 1);

# argon2id runs so far: the module logs one debug line per verification
sub argon2_runs {
    my @l = SeguraTest::slurp($t->error_log) =~ /segura api: argon2id verification ran/g;
    return scalar @l;
}

# n logins at once (every other one to /api/login/ when $slash); returns
# the responses
sub parallel {
    my ($host, @creds) = @_;
    my $slash = ref $creds[0] ne 'ARRAY' ? shift @creds : 0;
    my $ua = Mojo::UserAgent->new(request_timeout => 180, connect_timeout => 60,
                                  max_connections => 0);
    my $i = 0;
    my @p = map {
        my $path = $slash && $i++ % 2 ? '/api/login/' : '/api/login';
        $ua->post_p($t->url($path) => { Host => $host, 'Content-Type' => 'application/json' }
                    => encode_json({ username => $_->[0], password => $_->[1] }))
    } @creds;
    my @res;
    Mojo::Promise->all(@p)->then(sub { @res = map { $_->[0]->result } @_ })->wait;
    return @res;
}

my $api = SeguraTest::Api->new($t);

# the node's counters (an administrator's session of the nolimit server)
my $admin = SeguraTest::Api->new($t, headers => { Host => 'nolimit' });
sub metric {
    my ($name) = @_;
    my $res = $admin->get('/api/metrics');
    die 'GET /api/metrics: ' . $res->code unless $res->code == 200;
    my ($v) = $res->body =~ /^\Q$name\E (\d+)$/m or die "no $name";
    return $v;
}

# --- one name, 5 failures, then 32 at once ---------------------------------

for my $i (1 .. 5) {
    is($api->login('alice', "wrong password $i")->code, 401, "failure $i: 401");
}
my $before = argon2_runs();
is($before, 5, 'five argon2id runs for five failures');

my @res = parallel('localhost', map { ['alice', "wrong password x$_"] } 1 .. 32);
my @codes = map { $_->code } @res;
my $n429 = grep { $_ == 429 } @codes;
diag("32 parallel after 5 failures: $n429 x 429, others: @{[ grep { $_ != 429 } @codes ]}");
ok($n429 >= 31, "32 parallel wrong passwords: at least 31 are 429 ($n429)");
ok(!(grep { $_ != 429 && $_ != 401 } @codes), 'and none is anything but 429 or 401');
ok((grep { ($_->json->{error}{code} // '') eq 'too_many_attempts' } @res) == $n429,
   'the 429s are too_many_attempts');
ok(!(grep { $_->code == 429 && ($_->headers->header('Retry-After') // '') !~ /^\d+$/ } @res),
   'every 429 says when to retry');
my $after = argon2_runs();
ok($after - $before <= 1, 'argon2id ran at most once more (' . ($after - $before) . ')');
is($db->dbh->selectrow_array('select max(count) from login_failures'), 5 + ($after - $before),
   'only attempts that ran argon2id were counted');

# the right password is refused too while the name is throttled
is($api->login('alice', $password)->code, 429, 'the right password: 429 as well');
is(argon2_runs(), $after, 'and no argon2id for it');

# --- one address, 200 random names ------------------------------------------

$db->dbh->do('delete from login_failures');
$db->dbh->do('delete from login_addresses');
is($admin->login('root', 'root-password-1')->code, 200, 'root logs in for the metrics');
$before = argon2_runs();
my $tasks = metric('segura_login_tasks_total');
my %by;
for my $i (1 .. 200) {
    my $name = sprintf('flood-%d-%08x', $i, int rand 0xffffffff);
    $by{ $api->login($name, 'wrong password')->code }++;
}
diag('200 random names from one address: ' . join(', ', map { "$_ x $by{$_}" } sort keys %by));
is($by{401}, 30, 'the address budget (30 a minute) lets 30 through');
is($by{429}, 170, 'the rest are 429');
ok(argon2_runs() - $before <= 30, 'argon2id ran only for the 30');
like($db->dbh->selectrow_array('select count from login_addresses'), qr/^30$/,
     'the address row counts 30');
is($db->dbh->selectrow_array(q{select count(*) from login_failures}), 30,
   'refused attempts are not counted against their names');
my $pooled = metric('segura_login_tasks_total') - $tasks;
diag("200 logins, 170 refused: $pooled pool tasks");
ok($pooled >= 31 && $pooled <= 40,
   "the refusals after the first are answered on the event loop ($pooled tasks for 200)");

# a login from that address is refused until the window passes, on the
# event loop while the worker remembers the refusal (2 s), then by the
# database
$tasks = metric('segura_login_tasks_total');
my $res = $api->login('root', 'root-password-1');
is($res->code, 429, 'even the right password: 429');
like($res->headers->header('Retry-After') // '', qr/^\d+$/, 'with Retry-After');
is($res->json->{error}{code}, 'too_many_attempts', 'too_many_attempts');
$res = $api->post('/api/login/', { username => 'root', password => 'root-password-1' });
is($res->code, 429, 'POST /api/login/ as well');
my $loop_tasks = metric('segura_login_tasks_total') - $tasks;
ok($loop_tasks <= 1, "at most one of them was a pool task ($loop_tasks)");
$db->dbh->do(q{update login_addresses set window_start = now() - interval '61 seconds'});
my $code;
ok(SeguraTest::wait_for(sub {
       $code = $api->login('root', 'root-password-1')->code;
       $code != 429 }, 10, 'the worker forgets the refusal'),
   'after the window and the worker\'s 2 s: no longer 429');
is($code, 200, 'after the window: 200');
is($db->dbh->selectrow_array('select count from login_addresses'), 0,
   'a success gives its attempt back');

# --- the admission line: concurrency 1, 256 waiting -------------------------

# 16 at once: one in the pool at a time, the others wait; all are verified
$db->dbh->do('delete from login_failures');
$before = argon2_runs();
$tasks = metric('segura_login_tasks_total');
@res = parallel('nolimit', 1, map { ["line-$_", 'wrong password'] } 1 .. 16);
is(scalar(grep { $_->code == 401 } @res), 16, '16 at once: all wait their turn, 16 x 401');
is(argon2_runs() - $before, 16, 'argon2id ran 16 times');
is(metric('segura_login_tasks_total') - $tasks, 16, 'as 16 pool tasks');

# 400 at once: 1 in the pool and 256 in line at most; the rest 503 busy at
# once; none is lost or hangs
my $n = 400;
$db->dbh->do('delete from login_failures');
$before = argon2_runs();
$tasks = metric('segura_login_tasks_total');
my $busy0 = metric('segura_logins_total{outcome="busy"}');
@res = parallel('nolimit', 1, map { ["busy-$_", 'wrong password'] } 1 .. $n);
my $busy = grep { $_->code == 503 } @res;
my $fail = grep { $_->code == 401 } @res;
diag("$n parallel logins, concurrency 1: $fail x 401, $busy x 503");
is(scalar @res, $n, "$n answers");
is($busy + $fail, $n, 'each is 401 or 503: none lost');
ok($busy > 0, 'beyond the line: 503');
ok($fail >= 257, "the one in the pool and the 256 in line were verified ($fail)");
ok(!(grep { $_->code == 503 && (($_->json->{error}{code} // '') ne 'busy'
                                || ($_->headers->header('Retry-After') // '') ne '1'
                                || ($_->headers->content_type // '') !~ m{^application/json}) } @res),
   '503 busy JSON with Retry-After: 1');
is(argon2_runs() - $before, $fail, 'argon2id ran once per 401');
is(metric('segura_login_tasks_total') - $tasks, $fail,
   'a pool task only for those verified: the 503s were answered on the event loop');
is(metric('segura_logins_total{outcome="busy"}') - $busy0, $busy, 'the 503s are counted as busy');
is($db->dbh->selectrow_array('select coalesce(sum(count), 0) from login_failures'), $fail,
   'a 503 attempt was never counted');

# --- clients that leave the line cost nothing --------------------------------

# the one slot is held: a login blocks in segura_login_attempt() on its
# name's row, locked here; 40 logins sent behind it on connections of
# their own, which close; then the lock goes
sub raw_login {
    my ($name) = @_;
    my $body = encode_json({ username => $name, password => 'wrong password' });
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->port,
                                  Proto => 'tcp') or die "connect: $!";
    print $s "POST /api/login HTTP/1.1\r\nHost: nolimit\r\n"
        . "Content-Type: application/json\r\nContent-Length: " . length($body)
        . "\r\nConnection: close\r\n\r\n$body";
    return $s;
}
sub closed_early {
    my @l = SeguraTest::slurp($t->error_log) =~ /client prematurely closed connection/g;
    return scalar @l;
}
my $holder_key = hmac_sha256_hex('holder', hmac_sha256('segura login name key', $t->master_key));
my $dbh = $db->dbh;
$dbh->do('delete from login_failures');
$dbh->do(q{insert into login_failures (name_key, count, last_at) values (?, 0, now())},
         undef, $holder_key);
$dbh->begin_work;
$dbh->selectall_arrayref('select 1 from login_failures where name_key = ? for update',
                         undef, $holder_key);
$tasks = metric('segura_login_tasks_total');
my $holder = raw_login('holder');
ok(SeguraTest::wait_for(sub { metric('segura_login_tasks_total') == $tasks + 1 }, 10),
   'the holder\'s login is in the pool, waiting for its row');
my $closed = closed_early();
my @socks = map { raw_login("gone-$_") } 1 .. 40;
close $_ for @socks;
ok(SeguraTest::wait_for(sub { closed_early() - $closed >= 40 }, 20),
   'nginx saw the 40 clients go while they waited');
$dbh->commit;
my $answer = do { local $/; <$holder> };
like($answer // '', qr{^HTTP/1\.1 401 }, 'the holder\'s login is answered once its row is free');
close $holder;
@res = parallel('nolimit', ['after-gone', 'wrong password']);
is($res[0]->code, 401, 'a login after them is answered');
is(metric('segura_login_tasks_total') - $tasks, 2,
   'of the 40 clients that left the line, none reached the pool');

# --- a password change ends the other web sessions ---------------------------

$db->dbh->do('delete from login_failures');
$db->dbh->do('delete from login_addresses');
my ($a1, $a2) = map { SeguraTest::Api->new($t) } 1 .. 2;
is($a1->login('alice', $password)->code, 200, 'alice logs in (1)');
is($a2->login('alice', $password)->code, 200, 'alice logs in (2)');
my ($r1, $r2) = map { SeguraTest::Api->new($t) } 1 .. 2;
is($r1->login('root', 'root-password-1')->code, 200, 'root logs in (1)');
is($r2->login('root', 'root-password-1')->code, 200, 'root logs in (2)');

is($r1->patch("/api/users/$alice", { password => 'alice-password-2' })->code, 200,
   'root changes alice\'s password');
is($a1->get('/api/me')->code, 401, 'alice\'s first session ended');
is($a2->get('/api/me')->code, 401, 'alice\'s second session ended');
is($r1->get('/api/me')->code, 200, 'root\'s own sessions are not touched');

is($r1->patch("/api/users/$root", { password => 'root-password-2' })->code, 200,
   'root changes his own password');
is($r1->get('/api/me')->code, 200, 'the session that made the change stays');
is($r2->get('/api/me')->code, 401, 'his other session ended');
is($r1->patch("/api/users/$root", { display_name => 'Root' })->code, 200,
   'a change without a password');
is($db->dbh->selectrow_array(q{select count(*) from web_sessions where revoked_at is null
                               and user_id = ?}, undef, $root), 1,
   'ends nothing');

$t->stop;
my $log = SeguraTest::slurp($t->error_log);
like($log, qr/\[info\].*segura api: logins from 127\.0\.0\.1 throttled/, 'the address throttle is logged');
like($log, qr/\[info\].*segura api: login refused: 256 logins wait/,
     'a busy refusal is logged');
like($log, qr/\[info\].*segura api: logins from 127\.0\.0\.1 throttled \(on the event loop\)/,
     'a refusal on the event loop is logged');
unlike($log, qr/flood-\d+/, 'no typed unknown name in the log');

SeguraTest::done();
