# Login abuse: after 5 failures for a name, 32 parallel wrong passwords are
# refused (429) and cost at most one more argon2id run; 200 logins with
# random names from one address are throttled by the address budget;
# argon2id runs at most segura_login_concurrency at a time (503 busy with
# Retry-After, the attempt given back); a password change ends the user's
# other web sessions.
use strict;
use warnings;
use Test::More;
use Mojo::Promise;
use Mojo::UserAgent;
use Mojo::JSON qw(encode_json);
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
my $password = 'alice-password-1';
my $alice = SeguraTest::Api::add_user($db, 'alice', $password);
my $root = SeguraTest::Api::add_user($db, 'root', 'root-password-1', admin => 1);

# argon2id runs so far: the module logs one debug line per verification
sub argon2_runs {
    my @l = SeguraTest::slurp($t->error_log) =~ /segura api: argon2id verification ran/g;
    return scalar @l;
}

# n logins at once; returns the responses
sub parallel {
    my ($host, @creds) = @_;
    my $ua = Mojo::UserAgent->new(request_timeout => 60, max_connections => 0);
    my @p = map {
        $ua->post_p($t->url('/api/login') => { Host => $host, 'Content-Type' => 'application/json' }
                    => encode_json({ username => $_->[0], password => $_->[1] }))
    } @creds;
    my @res;
    Mojo::Promise->all(@p)->then(sub { @res = map { $_->[0]->result } @_ })->wait;
    return @res;
}

my $api = SeguraTest::Api->new($t);

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
$before = argon2_runs();
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

# a login from that address is refused until the window passes
is($api->login('root', 'root-password-1')->code, 429, 'even the right password: 429');
$db->dbh->do(q{update login_addresses set window_start = now() - interval '61 seconds'});
is($api->login('root', 'root-password-1')->code, 200, 'after the window: 200');
is($db->dbh->selectrow_array('select count from login_addresses'), 0,
   'a success gives its attempt back');

# --- argon2id concurrency ----------------------------------------------------

$db->dbh->do('delete from login_failures');
$before = argon2_runs();
@res = parallel('nolimit', map { ["busy-$_", 'wrong password'] } 1 .. 16);
my $busy = grep { $_->code == 503 } @res;
my $fail = grep { $_->code == 401 } @res;
diag("16 parallel logins, concurrency 1: $fail x 401, $busy x 503");
is($busy + $fail, 16, 'each is 401 or 503');
ok($busy > 0, 'some found no free argon2id slot: 503');
ok(!(grep { $_->code == 503 && (($_->json->{error}{code} // '') ne 'busy'
                                || ($_->headers->header('Retry-After') // '') ne '1') } @res),
   '503 busy with Retry-After: 1');
is(argon2_runs() - $before, $fail, 'argon2id ran once per 401');
is($db->dbh->selectrow_array('select coalesce(sum(count), 0) from login_failures'), $fail,
   'a 503 attempt was given back');

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
like($log, qr/\[info\].*segura api: login refused: 1 argon2id verifications under way/,
     'a busy refusal is logged');
unlike($log, qr/flood-\d+/, 'no typed unknown name in the log');

SeguraTest::done();
