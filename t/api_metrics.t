# GET /api/metrics and segura_metrics: the Prometheus text, parsed by a
# real parser (npm parse-prometheus-text-format), shows known work: a
# session, a refused key, logins, and the sums of two workers.
use strict;
use warnings;
use Test::More;
use IPC::Open3;
use Mojo::JSON qw(decode_json);
use Mojo::UserAgent;
use SeguraTest;
use SeguraTest::Api;
use SeguraTest::Session;

# --- the parser, from npm at the version of its package-lock.json ---------

my $npm = "$SeguraTest::TOP/t/prometheus";
my $stamp = "$npm/node_modules/.segura-installed";
unless (-f $stamp && -M $stamp < -M "$npm/package-lock.json"
        && -M $stamp < -M "$npm/package.json") {
    is(system('timeout', '300', 'npm', 'ci', '--no-audit', '--no-fund',
              '--loglevel=error', '--prefix', $npm), 0,
       'npm ci of the Prometheus parser') or BAIL_OUT('no parser');
    open my $fh, '>', $stamp or die "$stamp: $!";
    close $fh;
}

# the families of a scrape as { name => { 'l=v,...' => value } }, with
# their types; fails the test when the parser refuses the text
sub parse_text {
    my ($text, $what) = @_;
    my $pid = open3(my $in, my $out, undef, 'node', "$npm/parse.mjs");
    print $in $text;
    close $in;
    local $/;
    my $json = <$out>;
    waitpid($pid, 0);
    ok($? == 0, "$what: the parser accepts the text") or return;
    my %m;
    for my $f (@{ decode_json($json) }) {
        ok(length($f->{help} // '') && length($f->{type} // ''),
           "$what: $f->{name} has HELP and TYPE")
            unless $m{_types}{ $f->{name} };
        $m{_types}{ $f->{name} } = $f->{type};
        for my $s (@{ $f->{metrics} }) {
            if ($f->{type} eq 'HISTOGRAM') {
                $m{ $f->{name} }{count} = $s->{count};
                $m{ $f->{name} }{sum} = $s->{sum};
                $m{ $f->{name} }{buckets} = $s->{buckets};
                next;
            }
            my $l = join ',', map { "$_=$s->{labels}{$_}" }
                              sort keys %{ $s->{labels} || {} };
            $m{ $f->{name} }{$l} = $s->{value};
        }
    }
    return \%m;
}

my $TYPE = qr{^text/plain; version=0\.0\.4};

sub scrape {
    my ($client, $what) = @_;
    my $res = $client->get('/api/metrics');
    is($res->code, 200, "$what: 200") or diag($res->body);
    like($res->headers->content_type, $TYPE, "$what: Content-Type");
    return parse_text($res->body, $what);
}

my $t = SeguraTest->new(sshd => 1);
$t->run(SeguraTest::Session::config(
    'location = /metrics { allow 127.0.0.1; deny all; segura_metrics; }
     location = /metrics-closed { deny all; segura_metrics; }'));
my $db = $t->db;
my $dbh = $db->dbh;

SeguraTest::Api::add_user($db, 'boss', 'boss-password-1', admin => 1);
SeguraTest::Api::add_user($db, 'viewer', 'viewer-password-1');

my $admin = SeguraTest::Api->new($t);
is($admin->login('boss', 'boss-password-1')->code, 200, 'the administrator logs in');

# --- who may read -----------------------------------------------------------

my $anon = SeguraTest::Api->new($t);
my $res = $anon->get('/api/metrics');
is($res->code, 401, 'without a login: 401');
is(eval { $res->json->{error}{code} }, 'unauthenticated', 'as JSON: unauthenticated');

my $viewer = SeguraTest::Api->new($t);
is($viewer->login('viewer', 'viewer-password-1')->code, 200, 'a user logs in');
$res = $viewer->get('/api/metrics');
is($res->code, 403, 'a user who is no administrator: 403');
is(eval { $res->json->{error}{code} }, 'forbidden', 'as JSON: forbidden');

$res = $admin->post('/api/metrics', {});
is($res->code, 405, 'POST /api/metrics: 405');

$res = $anon->get('/metrics');
is($res->code, 200, 'segura_metrics: answers without a login');
like($res->headers->content_type, $TYPE, 'segura_metrics: Content-Type');
my $m = parse_text($res->body, 'segura_metrics');
is($m->{segura_pool_tasks}{'kind=api'}, 0, 'segura_metrics: no API task in flight');
is($m->{segura_workers}{''}, 1, 'one worker reports');
is($anon->get('/metrics-closed')->code, 403, 'segura_metrics under deny all: 403');

my $m0 = scrape($admin, 'GET /api/metrics');
is($m0->{_types}{segura_session_setup_seconds}, 'HISTOGRAM', 'the set-up latency is a histogram');
is($m0->{_types}{segura_session_setups_total}, 'COUNTER', 'set-ups are a counter');
is($m0->{_types}{segura_sessions_live}, 'GAUGE', 'live sessions are a gauge');
cmp_ok($m0->{segura_pool_tasks}{'kind=api'}, '>=', 1,
       'the scrape itself is an API task in flight');
is($m0->{segura_logins_total}{'outcome=ok'}, 2, 'two logins so far');
is($m0->{segura_login_password_checks_total}{''}, 2, 'two password checks so far');
is($m0->{segura_sessions_live}{''}, 0, 'no session yet');
for my $code (qw(ok aborted auth_rejected device_unreachable connect_timeout
                 host_key_mismatch)) {
    is($m0->{segura_session_setups_total}{"outcome=$code"}, 0, "set-ups $code: 0");
}

# --- one session -----------------------------------------------------------

my $f = SeguraTest::Session::fixture($t);
my ($ws, $id) = SeguraTest::Session::live($t, $f, 'metered');
my $m1 = scrape($admin, 'with a session open');
is($m1->{segura_sessions_live}{''}, 1, 'one live session');
is($m1->{segura_session_setups_total}{'outcome=ok'}, 1, 'set-ups ok: 1');
is($m1->{segura_session_setup_seconds}{count}, 1, 'the latency histogram counts it');
is($m1->{segura_session_setup_seconds}{buckets}{'+Inf'}, 1, 'in the +Inf bucket');
cmp_ok($m1->{segura_session_setup_seconds}{sum}, '>', 0, 'with a positive sum');
my $prev = 0;
my $monotonic = 1;
for my $le (qw(0.05 0.1 0.25 0.5 1 2.5 5 10 +Inf)) {
    my $n = $m1->{segura_session_setup_seconds}{buckets}{$le};
    $monotonic = 0 unless defined $n && $n >= $prev;
    $prev = $n // 0;
}
ok($monotonic, 'every bucket is there, cumulative');

$ws->send_binary("exit\n");
is($ws->wait_close(10), 1000, 'the session ends with its shell');
my $m2;
ok(SeguraTest::wait_for(sub {
    $m2 = scrape($admin, 'after the session');
    $m2->{segura_sessions_live}{''} == 0;
}, 10), 'no live session after it');
my ($in, $out) = @{ SeguraTest::wait_for(sub {
    $dbh->selectrow_arrayref('select bytes_in, bytes_out from ssh_sessions
                              where id = ? and ended_at is not null', undef, $id)
}, 10) || [] };
cmp_ok($m2->{segura_session_bytes_total}{'direction=in'}, '>', 0, 'bytes in > 0');
cmp_ok($m2->{segura_session_bytes_total}{'direction=out'}, '>', 0, 'bytes out > 0');
is($m2->{segura_session_bytes_total}{'direction=in'}, $in, 'bytes in as in the audit row');
is($m2->{segura_session_bytes_total}{'direction=out'}, $out, 'bytes out as in the audit row');
is($m2->{segura_session_setup_seconds}{count}, 1, 'the histogram still counts one');

ok(SeguraTest::wait_for(sub {
    scrape($admin, 'the outbox')->{segura_outbox_statements}{''} == 0
}, 10), 'the outbox is empty once the audit row is written');

# --- a key the device refuses ------------------------------------------------

my $f2 = SeguraTest::Session::fixture($t, authorize => 0);
$ws = SeguraTest::Session::open_ws($t, $f2);
my $e = $ws->wait_event('error', 20);
is($e && $e->{code}, 'auth_rejected', 'a key not in authorized_keys: auth_rejected');
$ws->wait_close(10);
my $m3 = scrape($admin, 'after auth_rejected');
is($m3->{segura_session_setups_total}{'outcome=auth_rejected'}, 1, 'set-ups auth_rejected: 1');
is($m3->{segura_session_setups_total}{'outcome=ok'}, 1, 'set-ups ok: still 1');
is($m3->{segura_session_setup_seconds}{count}, 1, 'a failed set-up is not in the histogram');
is($m3->{segura_sessions_live}{''}, 0, 'and was never live');

# --- logins ------------------------------------------------------------------

my $N = 3;
my $someone = SeguraTest::Api->new($t);
is($someone->login('viewer', "wrong-$_")->code, 401, "wrong password $_: 401") for 1 .. $N;
is($someone->login('viewer', 'viewer-password-1')->code, 200, 'then the right one');
is($someone->post('/api/login', '{')->code, 400, 'a body that is no JSON: 400');
my $m4 = scrape($admin, 'after the logins');
is($m4->{segura_logins_total}{'outcome=unauthenticated'}, $N, "logins unauthenticated: $N");
is($m4->{segura_logins_total}{'outcome=ok'}, 3, 'logins ok: 3');
is($m4->{segura_logins_total}{'outcome=invalid_json'}, 1, 'logins invalid_json: 1');
is($m4->{segura_login_password_checks_total}{''}, 3 + $N, 'a password check for each login with a password');

# a conflict is refused by a constraint: the client's fault, not the database's
is($admin->post('/api/users', { username => 'viewer', password => 'another-pass-1' })->code,
   409, 'a duplicate user name: 409');
my $m5 = scrape($admin, 'after a conflict');
is($m5->{segura_db_errors_total}{"kind=$_"}, 0, "database errors $_: 0")
    for qw(connect pool_timeout statement);
is($m5->{segura_outbox_retries_total}{''}, 0, 'no outbox retry');
is($m5->{segura_outbox_dropped_total}{''}, 0, 'nothing dropped');

# --- two workers: the sums, a killed worker, a reload --------------------

my $t2 = SeguraTest->new(sshd => 1);
$t2->run(<<'EOF', workers => 2);
    server {
        listen 127.0.0.1:%%PORT%% reuseport;
        location = /session { segura_session; }
        location = /metrics { segura_metrics; }
    }
EOF
my $dbh2 = $t2->db->dbh;

# a scrape of the directive's location: each connection may land on
# either worker, and each must see the node's sums
sub node_scrape {
    my ($what) = @_;
    my $r = Mojo::UserAgent->new(request_timeout => 20)->get($t2->url('/metrics'))->result;
    return parse_text($r->body, $what);
}

my @w = $t2->workers;
is(scalar @w, 2, 'two workers run');
ok(SeguraTest::wait_for(sub { node_scrape('two workers')->{segura_workers}{''} == 2 }, 10),
   'both report');

# sessions until each worker has one (the kernel spreads the connections)
sub worker_of {
    my ($id) = @_;
    return SeguraTest::wait_for(sub {
        $dbh2->selectrow_array('select w.pid from ssh_sessions s
                                join segura_workers w on w.id = s.worker_id
                                where s.id = ?', undef, $id)
    }, 10);
}
my $f3 = SeguraTest::Session::fixture($t2);
my %on;
my @open;
for my $n (1 .. 24) {
    my ($w3, $id3) = SeguraTest::Session::live($t2, $f3, "spread$n");
    my $pid = worker_of($id3);
    push @open, [$w3, $id3, $pid];
    $on{$pid}++;
    last if keys %on == 2;
}
is(scalar keys %on, 2, 'sessions on both workers');
my $nopen = scalar @open;
for my $k (1 .. 4) {
    my $m6 = node_scrape("two workers, scrape $k");
    is($m6->{segura_sessions_live}{''}, $nopen, "scrape $k: $nopen live sessions, summed");
    is($m6->{segura_session_setups_total}{'outcome=ok'}, $nopen, "scrape $k: $nopen set-ups ok");
}

# a worker killed with its sessions: they are no longer live, the rest are
my $victim = $open[-1][2];
my $left = grep { $_->[2] != $victim } @open;
ok(kill('KILL', $victim), "kill -9 worker $victim");
$_->[0]->wait_eof(10) for grep { $_->[2] == $victim } @open;
my $m7;
ok(SeguraTest::wait_for(sub {
    $m7 = node_scrape('after the kill');
    $m7->{segura_sessions_live}{''} == $left && $m7->{segura_workers}{''} == 2
}, 20), "after the kill: $left live, the respawned worker reports");
is($m7->{segura_session_setups_total}{'outcome=ok'}, $nopen, 'the counters keep what the dead worker added');
cmp_ok($m7->{segura_session_bytes_total}{'direction=out'}, '>', 0, 'and its bytes');

# a reload: the old worker keeps its live sessions in the sums, the
# counters go on
$t2->reload;
my $m8;
ok(SeguraTest::wait_for(sub {
    $m8 = node_scrape('after the reload');
    $m8->{segura_workers}{''} >= 3
}, 20), 'after the reload the new workers and the draining old one report');
is($m8->{segura_sessions_live}{''}, $left, "still $left live sessions");
is($m8->{segura_session_setups_total}{'outcome=ok'}, $nopen, 'the counters survive the reload');
cmp_ok($m8->{segura_session_bytes_total}{'direction=out'}, '>=',
       $m7->{segura_session_bytes_total}{'direction=out'}, 'bytes too');
for my $o (grep { $_->[2] != $victim } @open) {
    $o->[0]->send_binary("exit\n");
    $o->[0]->wait_close(10);
}
ok(SeguraTest::wait_for(sub {
    my $m9 = node_scrape('all ended');
    $m9->{segura_sessions_live}{''} == 0 && $m9->{segura_workers}{''} == 2
}, 20), 'all ended: none live, the old worker gone');

# the master's alert about the worker this test killed is expected
$t2->stop;
my $log2 = SeguraTest::slurp($t2->error_log);
my @killed = $log2 =~ /^.*\[alert\].*worker process $victim exited on signal 9.*$/mg;
is(scalar @killed, 1, 'the master reports the killed worker');
$log2 =~ s/^.*\[alert\].*worker process $victim exited on signal 9.*\n//mg;
open my $lf, '>', $t2->error_log or die $!;
print $lf $log2;
close $lf;

# --- a node that only shows metrics needs no database ---------------------

my $t3 = SeguraTest->new(no_db => 1);
$t3->run(<<'EOF', no_defaults => 1, main => '');
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /metrics { segura_metrics; }
    }
EOF
my $r3 = Mojo::UserAgent->new->get($t3->url('/metrics'))->result;
is($r3->code, 200, 'segura_metrics without segura_database: 200');
my $m10 = parse_text($r3->body, 'metrics only');
is($m10->{segura_workers}{''}, 1, 'metrics only: one worker reports');
is($m10->{segura_sessions_live}{''}, 0, 'metrics only: nothing live');

# the two refusals this test asked for are errors; nothing else is
my $log = SeguraTest::slurp($t->error_log);
$log =~ s/^.*\[error\].*access forbidden by rule.*metrics-closed.*\n//mg;
$log =~ s/^.*\[error\].*the device refused the key.*\n//mg;
unlike($log, qr/\[error\]/, 'no other [error] in the log');

SeguraTest::done();
