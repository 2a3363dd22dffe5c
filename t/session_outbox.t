# The audit survives a database outage: PostgreSQL (a cluster of the
# test's own) stops for 10 s while sessions run, end and start, and
# starts again without nginx being restarted.  Live sessions keep
# relaying; new ones are refused with 503 database_unavailable; every
# session that ended meanwhile gets its complete row (bytes, end_reason,
# exit status, the time it really ended) once the database is back, and
# no row is written twice.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time);
use SeguraTest;
use SeguraTest::Session;
use SeguraTest::WS;

my $t = SeguraTest->new(sshd => 1, private_pg => 1);
$t->run(SeguraTest::Session::config());
my $db = $t->db;

# a session that is open and echoing, with its audit row
sub live { SeguraTest::Session::live($t, @_) }

my @f = map { SeguraTest::Session::fixture($t) } 1 .. 4;
my ($w_exit, $id_exit) = live($f[0], 'exits');
my ($w_close, $id_close) = live($f[1], 'closes');
my ($w_kept, $id_kept) = live($f[2], 'kept');

ok(SeguraTest::wait_for(sub {
    $db->dbh->selectrow_array('select count(*) from ssh_sessions') == 3 }, 10),
   'the three start rows are written');

# --- PostgreSQL down for 10 s -------------------------------------------------

my $down = time;
$t->pg->stop;
ok(!$t->pg->running, 'PostgreSQL is stopped');

# one session exits with a status, another is closed by its client
$w_exit->send_binary("echo bye; exit 5\n");
my $e = $w_exit->wait_event('exit', 10);
is($e && $e->{status}, 5, 'down: a shell exits with 5');
is($w_exit->wait_close(10), 1000, 'down: it closes with 1000');
my $exit_at = time;

$w_close->send_binary("echo more-\$((40+2))\n");
ok($w_close->wait_for(sub { $w_close->output =~ /more-42/ }, 10), 'down: more output');
$w_close->close(1000);
is($w_close->wait_close(10), 1000, 'down: a client closes its session');

# the live one keeps relaying, without the database
my $mark = 'during-' . int(rand(1e9));
$w_kept->send_binary("echo $mark\n");
ok($w_kept->wait_for(sub { $w_kept->output =~ /\Q$mark\E\r?\n/ }, 10),
   'down: a live session keeps relaying');

# a new session cannot be checked: 503, at once
my $t0 = time;
my $ws = SeguraTest::Session::open_ws($t, $f[3]);
is($ws->{status}, 503, 'down: a new session is refused with 503');
like($ws->{body} // '', qr/database_unavailable/, 'down: database_unavailable');
ok(time - $t0 < 5, sprintf('down: refused in %.2f s', time - $t0));

like(SeguraTest::slurp($t->error_log), qr/segura outbox: \d+ writes wait for the database/,
     'the outbox says that it waits');

# the rest of the 10 s
sleep 0.2 while time - $down < 10;
$t->pg->start;
ok($t->pg->running, 'PostgreSQL is back after 10 s');

# --- the rows, once it is back --------------------------------------------------

my $dbh = $db->dbh;
my $row = sub {
    my ($id) = @_;
    SeguraTest::wait_for(sub {
        my $r = eval { $db->dbh->selectrow_hashref(
            q{select ended_at, end_reason, exit_status, bytes_in, bytes_out,
                     extract(epoch from ended_at) as ended_epoch,
                     extract(epoch from started_at) as started_epoch
              from ssh_sessions where id = ? and ended_at is not null},
            undef, $id) };
        $r;
    }, 20);
};

my $r = $row->($id_exit);
ok($r, 'the exited session gets its end');
is($r && $r->{end_reason}, 'exit', 'end_reason exit');
is($r && $r->{exit_status}, 5, 'exit status 5');
ok($r && $r->{bytes_in} > 0 && $r->{bytes_out} > 0, 'bytes both ways');
ok($r && abs($r->{ended_epoch} - $exit_at) < 3,
   'ended_at is when it ended, not when the row was written');

$r = $row->($id_close);
ok($r, 'the closed session gets its end');
is($r && $r->{end_reason}, 'client_closed', 'end_reason client_closed');
ok($r && !defined $r->{exit_status}, 'no exit status');

ok(SeguraTest::wait_for(sub {
    $db->dbh->selectrow_array(q{select count(*) from ssh_sessions
                                 where id = ? and ended_at is null}, undef, $id_kept) == 1 }, 5),
   'the live session is still live');

like(SeguraTest::slurp($t->error_log), qr/segura outbox: the database takes writes again/,
     'the outbox says that it recovered');

# new sessions work again; a start and an end written while down count once
my ($w_new, $id_new) = live($f[3], 'after');
$w_new->send_binary("exit 0\n");
is($w_new->wait_close(10), 1000, 'after: ends');
ok($row->($id_new), 'after: its row is complete');

$w_kept->send_binary("exit 2\n");
is($w_kept->wait_close(10), 1000, 'the kept session ends');
$r = $row->($id_kept);
is($r && $r->{exit_status}, 2, 'the kept session: exit status 2');

is($db->dbh->selectrow_array('select count(*) from ssh_sessions'), 4, 'four rows, no duplicate');
is($db->dbh->selectrow_array('select count(distinct id) from ssh_sessions'), 4, 'four ids');
unlike(SeguraTest::slurp($t->error_log), qr/is dropped/, 'no write was dropped');

SeguraTest::done();
