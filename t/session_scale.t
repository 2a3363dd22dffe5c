# 200 concurrent sessions on one worker, each echoing its own marker; when
# they are gone the worker holds no descriptor of theirs.
use strict;
use warnings;
use Test::More;
use IO::Select;
use Time::HiRes qw(time);
use SeguraTest;
use SeguraTest::Session;
use SeguraTest::WS;

my $N = $ENV{SEGURA_SCALE_SESSIONS} || 200;

my $t = SeguraTest->new(sshd => 1);
$t->run(SeguraTest::Session::config(), main => "thread_pool segura threads=16;\n");
my $sshd = $t->sshd;

my $f = SeguraTest::Session::fixture($t);
my ($worker) = $t->workers;

# one session first: the worker's database connections and libssh state
# exist before the baseline is taken
my $ws = SeguraTest::Session::open_ws($t, $f);
ok($ws->wait_event('connected', 20), 'warm-up session');
$ws->close(1000);
$ws->wait_eof(10);

my @ports = ($t->port, $sshd->port);
ok(SeguraTest::wait_for(sub { $t->worker_tcp_fds($worker, @ports) == 0 }, 10),
   'no session descriptor before the run');
my $fds_before = $t->worker_fds($worker);

my $t0 = time;
my @ws;
for my $i (1 .. $N) {
    push @ws, SeguraTest::Session::open_ws($t, $f);
}
is(scalar(grep { $_->{status} == 101 } @ws), $N, "$N upgrades accepted");

sub pump {
    my ($cond, $timeout) = @_;
    my $deadline = time + $timeout;
    my $sel = IO::Select->new(map { $_->{sock} } grep { $_->{sock} && !$_->{eof} } @ws);
    my %by = map { fileno($_->{sock}) => $_ } grep { $_->{sock} } @ws;
    while (time < $deadline) {
        return 1 if $cond->();
        for my $fh ($sel->can_read(0.2)) {
            my $w = $by{fileno $fh};
            $w->fill(time + 0.01);
            $w->parse;
            $sel->remove($fh) if $w->{eof};
        }
    }
    return $cond->();
}

ok(pump(sub { !grep { !$_->event('connected') } @ws }, 120), "all $N sessions connected")
    or diag(scalar(grep { !$_->event('connected') } @ws) . ' did not: '
            . explain([map { [$_->events] } grep { !$_->event('connected') } @ws]->[0]));
diag(sprintf('%d sessions set up in %.1f s', $N, time - $t0));

for my $i (0 .. $#ws) {
    $ws[$i]->send_binary("echo marker-$i-\$((1000+$i))\n");
}
sub missing { grep { index($ws[$_]->output, 'marker-' . $_ . '-' . (1000 + $_)) < 0 } 0 .. $#ws }
ok(pump(sub { !missing() }, 90), 'every session echoed its own marker')
    or diag('missing: ' . join(' ', missing()) . "\n" . $ws[(missing())[0]]->output);
my $mixed = grep { my $i = $_; grep { $_ != $i && $ws[$i]->output =~ /marker-$_-@{[1000 + $_]}\b/ } ($i - 1, $i + 1) } 1 .. $#ws - 1;
is($mixed, 0, 'no session saw a neighbour\'s output');

my $peak = $t->worker_fds($worker);
ok($peak >= $fds_before + 2 * $N, "the worker held the sessions ($peak descriptors)");

$_->send_binary("exit\n") for @ws;
ok(pump(sub { !grep { !defined $_->{close_code} } @ws }, 60), 'all sessions closed');
is(scalar(grep { ($_->{close_code} // 0) == 1000 } @ws), $N, 'all with 1000');
$_->wait_eof(5) for @ws;
$_->disconnect for @ws;

ok(SeguraTest::wait_for(sub { $t->worker_tcp_fds($worker, @ports) == 0 }, 30),
   'no client or device socket left in the worker');
# what may remain: the per-worker database pool (segura_database
# connections=, 8 by default), opened on demand and kept
ok(SeguraTest::wait_for(sub { $t->worker_fds($worker) <= $fds_before + 8 }, 30),
   'the worker holds no more descriptors than before, but for its database pool')
    or diag('before ' . $fds_before . ', after ' . $t->worker_fds($worker));

ok(SeguraTest::wait_for(sub {
    $t->db->dbh->selectrow_array('select count(*) from ssh_sessions where ended_at is null') == 0
}, 30), 'every audit row is completed');

SeguraTest::done();
