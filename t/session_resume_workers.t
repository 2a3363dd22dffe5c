# Resume across the workers of a node (worker_processes 2): a resume that
# reaches the worker without the shell is passed to the one with it over
# that worker's unix socket, and the client gets every line exactly once.
# Which worker takes a connection is the kernel's choice: the test drops
# and resumes until the error log shows a resume passed between workers
# (a coin toss each time), then checks the whole output.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time);
use SeguraTest;
use SeguraTest::Session;
use SeguraTest::WS;

my $t = SeguraTest->new(sshd => 1);
$t->run(SeguraTest::Session::config(), workers => 2);
my $f = SeguraTest::Session::fixture($t);
my $db = $t->db;

my @workers = $t->workers;
is(scalar(@workers), 2, 'two workers');

sub passed_between_workers {
    my $log = SeguraTest::slurp($t->error_log);
    my @n = $log =~ /resumed through another worker/g;
    return scalar @n;
}

my $ws = SeguraTest::Session::open_ws($t, $f);
my $c = $ws->wait_event('connected', 20);
ok($c && $c->{resume}, 'connected, with a resume token') or diag explain $c;
my $token = $c->{resume};
my ($owner) = $token =~ /^(\d+)\./;
ok((grep { $_ == $owner } @workers), "the token names a worker ($owner)");
$ws->acking(0);
$ws->send_binary("seq 1 1000000; echo SEQ-DONE-\$((6*7))\n");

my $all = '';
my $received = 0;
my $resumes = 0;
my $deadline = time + 120;

# drop once the output flows, resume, and again until a resume went to the
# other worker and the command is done
while (time < $deadline) {
    my $target = $received + 300_000;
    $ws->wait_for(sub { ($ws->{output} // '') =~ /SEQ-DONE-42/
                        || $received + ($ws->{output_bytes} // 0) > $target }, 30);
    $all .= $ws->{output} // '';
    $received += $ws->{output_bytes} // 0;
    last if $all =~ /SEQ-DONE-42/ && passed_between_workers();

    $ws->disconnect;

    # the drop is seen once its detach row is there
    my $n = $resumes + 1;
    SeguraTest::wait_for(sub {
        $db->dbh->selectrow_array(
            "select count(*) from audit_log where action = 'session_detached'"
            . " and object_id = ?", undef, $c->{session}) >= $n
    }, 10) or last;

    $ws = SeguraTest::WS->connect($t->port,
        "/session?key=$f->{key}&device=$f->{device}&resume=$token&received=$received",
        Cookie => $f->{cookie});
    my $r = $ws->wait_event('resumed', 20);
    ok($r, "resume $n") or do { diag explain [$ws->{status}, $ws->{json}]; last };
    is($r->{lost}, 0, "resume $n: nothing lost");
    $resumes++;
    $ws->acking($received);
}

ok(passed_between_workers() >= 1,
   'a resume was passed from one worker to the other (' . passed_between_workers()
   . " of $resumes)");
ok($all =~ /SEQ-DONE-42/, 'the command finished');

$all =~ s/\e\[\?2004[hl]//g;
my @nums = $all =~ /^\r?(\d+)\r$/mg;
my $bad = 0;
for my $i (0 .. $#nums) {
    if ($nums[$i] != $i + 1) { $bad = $i + 1; last }
}
is(scalar(@nums), 1_000_000, 'a million lines');
is($bad, 0, 'every line exactly once, in order, across the workers');

# the shell answers through the pipe too
$ws->send_binary("echo piped-\$((40+2))\n");
ok($ws->wait_for(sub { ($ws->{output} // '') =~ /piped-42/ }, 10),
   'the resumed shell answers');
$ws->close(1000);
is($ws->wait_close(10), 1000, 'a normal close ends it');
$ws->disconnect;
ok(SeguraTest::wait_for(sub {
    $db->dbh->selectrow_array(
        'select end_reason from ssh_sessions where id = ? and ended_at is not null',
        undef, $c->{session}) }, 10), 'the session ended');

# a token of a worker that is not there: nothing to resume, no hang
my $gone = $token =~ s/^\d+/999999/r;
my $w = SeguraTest::WS->connect($t->port,
    "/session?key=$f->{key}&device=$f->{device}&resume=$gone&received=0",
    Cookie => $f->{cookie});
is($w->{status}, 404, 'a token naming no worker: 404');

$t->{passed} = 1;
done_testing;
