# A slow, silent or hostile device delays only its own session (issue
# 11). With four pool threads and segura_connect_timeout 3s, for each kind
# of stalling device (build/test/stall-sshd, t/device/stall-sshd.c):
#
#   accept    accepts TCP, never sends a byte (a black hole)
#   banner    sends its banner, then never answers the key exchange
#   kex       completes the key exchange, never answers the service request
#   auth      accepts the key, never answers the channel open
#   channel   opens the channel, never answers the pty request
#
# 50 sessions are opened to it at once; while they hang, a session to the
# healthy OpenSSH device reaches its prompt in under a second, the API
# answers every request in under a second, and each of the 50 ends with
# the error event connect_timeout and close code 4002 within the timeout
# plus one second of its own start (and not before the timeout). After
# all of it the worker holds no descriptor of these sessions, and the
# only [error] lines are the stalled devices' timeouts.
#
# SEGURA_SLOW_SESSIONS (50), SEGURA_SLOW_TIMEOUT (3, seconds),
# SEGURA_SLOW_MODES ("accept banner kex auth channel") and
# SEGURA_SLOW_THREADS (4) change the run: with more pool threads than
# stalled sessions a connect that holds a thread passes too, which checks
# the test itself.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time);
use SeguraTest;
use SeguraTest::Api;
use SeguraTest::Device;
use SeguraTest::Mux;
use SeguraTest::Session;
use SeguraTest::WS;

my $N = $ENV{SEGURA_SLOW_SESSIONS} || 50;
my $TIMEOUT = $ENV{SEGURA_SLOW_TIMEOUT} || 3;
my @MODES = split ' ', ($ENV{SEGURA_SLOW_MODES} || 'accept banner kex auth channel');
my $THREADS = $ENV{SEGURA_SLOW_THREADS} || 4;

# a device connect that has not ended this long after the deadline is
# left to the end of the file (and counts as failed already)
my $DRAIN = 120;

my $t = SeguraTest->new(sshd => 1);
$t->run(SeguraTest::Session::config(
            "location = /slow { segura_connect_timeout ${TIMEOUT}s; segura_session; }"),
        main => "thread_pool segura threads=$THREADS;\n");
my $db = $t->db;
my $sshd = $t->sshd;
my ($worker) = $t->workers;

my $healthy = SeguraTest::Session::fixture($t);
SeguraTest::Api::add_user($db, 'prober', 'prober-pass-1');

sub fmt_s { sprintf '%.3f s', $_[0] }

# one session to the healthy device, start to finish in the select loop:
# returns the times of its connected event and of its shell's prompt
# (from its start), and whether it echoed
sub healthy_session {
    my ($mux, $tag, $tick) = @_;
    $tick //= sub {};
    my $ws = SeguraTest::WS->start($t->port,
        "/session?key=$healthy->{key}&device=$healthy->{device}",
        Cookie => $healthy->{cookie});
    $mux->add($ws);
    my $prompt_at;
    $mux->pump(sub {
        $tick->();
        $prompt_at //= time if $ws->output =~ /[#\$] $/;
        ($ws->event('connected') && $prompt_at)
            || defined $ws->{close_code} || $ws->{eof}
    }, 30);
    my $connected = $ws->event_time('connected');
    my %r = (
        ws        => $ws,
        connected => defined $connected ? $connected - $ws->{started} : undef,
        prompt    => defined $prompt_at ? $prompt_at - $ws->{started} : undef,
    );
    $ws->send_binary("echo $tag-\$((6*7))\n");
    $r{echoed} = $mux->pump(sub { $tick->(); $ws->output =~ /\Q$tag\E-42/ || $ws->{eof} }, 10)
                 && $ws->output =~ /\Q$tag\E-42/;
    return \%r;
}

# warm-up: the worker's database connections and libssh state exist before
# the baseline of descriptors is taken
{
    my $mux = SeguraTest::Mux->new;
    my $h = healthy_session($mux, 'warm');
    ok($h->{echoed}, 'warm-up: the healthy device works')
        or diag(explain [$h->{ws}->events]);
    $h->{ws}->send_binary("exit\n");
    $mux->pump(sub { defined $h->{ws}{close_code} }, 10);
    $h->{ws}->wait_eof(10);
    $h->{ws}->disconnect;
}

my @devices;
my @device_ids;
my @ports = ($t->port, $sshd->port);
ok(SeguraTest::wait_for(sub { $t->worker_tcp_fds($worker, @ports) == 0 }, 10),
   'no session descriptor before the run');
my $fds_before = $t->worker_fds($worker);

for my $mode (@MODES) {
    my $dev = SeguraTest::Device->stall($t, $mode);
    push @devices, $dev;
    push @ports, $dev->port;

    # the key does not matter to the device (it takes any); the host key is
    # pinned so that the 50 set-ups are alike (no first-use pinning race)
    my $f = SeguraTest::Session::fixture($t, port => $dev->port, authorize => 0,
                                         host_key => $dev->host_key);
    push @device_ids, $f->{device};

    my $mux = SeguraTest::Mux->new;
    my (@probes, $login);
    my $probe = sub {
        # one /api/me at a time, one every 200 ms
        my $last = $probes[-1];
        if (!$last || ($last->done && time - $last->{started} >= 0.2)) {
            push @probes, $mux->http($t->port, 'GET', '/api/me',
                                     Cookie => $healthy->{cookie});
        }
    };

    my $t0 = time;
    my @slow = $mux->add(map {
        SeguraTest::WS->start($t->port, "/slow?key=$f->{key}&device=$f->{device}",
                              Cookie => $f->{cookie})
    } 1 .. $N);
    my $opened = time - $t0;

    # the premise: all of them are stalled at the device at the same time
    my $hung = sub { scalar grep { !defined $_->{close_code} && !$_->{eof} } @slow };
    $mux->pump(sub { $probe->(); $dev->count('stalled') >= $N }, $TIMEOUT - 1);
    my $stalled = $dev->count('stalled');
    is($stalled, $N, "$mode: all $N sessions reached the stall point within "
                     . ($TIMEOUT - 1) . ' s (' . fmt_s(time - $t0) . ')')
        or diag("$stalled of $N reached it; the device accepted "
                . $dev->count('accepted'));

    # a healthy session meanwhile, and a login
    $login = $mux->http($t->port, 'POST', '/api/login',
                        body => { username => 'prober', password => 'prober-pass-1' });
    my $h = healthy_session($mux, "ok-$mode", $probe);
    my $still = $hung->();
    ok(defined $h->{connected} && $h->{connected} < 1,
       "$mode: a healthy session is connected in under 1 s while they hang ("
       . (defined $h->{connected} ? fmt_s($h->{connected}) : 'never') . ')')
        or diag(explain [$h->{ws}->events]);
    ok(defined $h->{prompt} && $h->{prompt} < 1,
       "$mode: and shows its shell's prompt in under 1 s ("
       . (defined $h->{prompt} ? fmt_s($h->{prompt}) : 'never') . ')');
    ok($h->{echoed}, "$mode: and echoes");
    is($still, $N, "$mode: the $N were all still hanging meanwhile");
    $h->{ws}->send_binary("exit\n");

    # until every one of the 50 has ended (or long past its deadline)
    $mux->pump(sub {
        $probe->();
        !$hung->() && $login->done && defined $h->{ws}{close_code}
    }, $TIMEOUT + 1.5);
    $mux->pump(sub { !$hung->() && $login->done && $probes[-1]->done },
               $DRAIN) if $hung->() || !$login->done;
    $mux->pump(sub { $probes[-1]->done }, 5);

    is($h->{ws}{close_code}, 1000, "$mode: the healthy session ends with 1000");

    my @timeout = grep { my $e = $_->event('error');
                         $e && $e->{code} eq 'connect_timeout' } @slow;
    my @c4002 = grep { ($_->{close_code} // 0) == 4002 } @slow;
    my @late = grep { !defined $_->{close_at}
                      || $_->{close_at} - $_->{started} > $TIMEOUT + 1 } @slow;
    my @early = grep { my $e = $_->event_time('error');
                       defined $e && $e - $_->{started} < $TIMEOUT - 0.25 } @slow;
    my ($worst) = sort { $b <=> $a }
                  map { ($_->{close_at} // time) - $_->{started} } @slow;
    my %codes;
    $codes{ $_->event('error') ? $_->event('error')->{code} : 'none' }++ for @slow;

    is(scalar @timeout, $N, "$mode: each of the $N got the error event connect_timeout")
        or diag('error codes: ' . join(', ', map { "$_ $codes{$_}" } sort keys %codes));
    is(scalar @c4002, $N, "$mode: each closed with 4002");
    is(scalar @late, 0, "$mode: each within ${TIMEOUT} s + 1 s of its start (worst "
                        . fmt_s($worst) . ')')
        or diag(scalar(@late) . " of $N later; the $N requests took "
                . fmt_s($opened) . ' to send');
    is(scalar @early, 0, "$mode: none before its timeout");
    ok(!grep({ $_->event('connected') } @slow), "$mode: none connected");

    my @slowp = grep { $_->elapsed >= 1 || !$_->done || $_->{status} != 200 } @probes;
    my ($pworst) = sort { $b <=> $a } map { $_->elapsed } @probes;
    is(scalar @slowp, 0, "$mode: the API answered each of " . scalar(@probes)
                         . ' GET /api/me with 200 in under 1 s (worst '
                         . fmt_s($pworst // 0) . ')')
        or diag(join ', ', map { ($_->{status} // 'none') . ' in ' . fmt_s($_->elapsed) }
                           @slowp[0 .. ($#slowp < 4 ? $#slowp : 4)]);
    ok($login->done && $login->{status} == 200 && $login->elapsed < 1,
       "$mode: a login answered 200 in under 1 s (" . ($login->{status} // 'none')
       . ' in ' . fmt_s($login->elapsed) . ')');

    $_->disconnect for @slow, $h->{ws};
    ok(SeguraTest::wait_for(sub { $dev->open_connections == 0 }, 10),
       "$mode: nginx closed every connection to the device")
        or diag($dev->open_connections . ' still open');
}

ok(SeguraTest::wait_for(sub { $t->worker_tcp_fds($worker, @ports) == 0 }, 30),
   'no client or device socket left in the worker')
    or diag($t->worker_tcp_fds($worker, @ports) . ' left');
# what may remain: the per-worker database pool (8 by default)
ok(SeguraTest::wait_for(sub { $t->worker_fds($worker) <= $fds_before + 8 }, 30),
   'the worker holds no more descriptors than before, but for its database pool')
    or diag('before ' . $fds_before . ', after ' . $t->worker_fds($worker));

# the stalled devices' timeouts are [error]s (the devices' fault); nothing
# else is
my %stall = map { $_ => 1 } @device_ids;
my @errors = SeguraTest::slurp($t->error_log) =~ /^(.*\[error\].*)$/mg;
my @other = grep { !(/\bdevice (\d+)\b/ && $stall{$1}
                     && /time(?:d)? ?out|time is up|deadline/i) } @errors;
is(scalar @other, 0, 'no [error] but the stalled devices\' connect timeouts ('
                     . scalar(@errors) . ' [error] lines)')
    or diag(join "\n", @other[0 .. ($#other < 9 ? $#other : 9)]);

SeguraTest::done();
