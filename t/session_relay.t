# The /session relay end to end: log in (cookie), open a terminal on the
# test sshd, run commands, resize, exit; the audit row is completed.
use strict;
use warnings;
use Test::More;
use SeguraTest;
use SeguraTest::Session;

my $t = SeguraTest->new(sshd => 1);
$t->run(SeguraTest::Session::config());
my $dbh = $t->db->dbh;

my $f = SeguraTest::Session::fixture($t);

# echo hello; exit 3
my $ws = SeguraTest::Session::open_ws($t, $f);
is($ws->{status}, 101, 'the upgrade is accepted');
is($ws->header('Sec-WebSocket-Accept') ne '', 1, 'with an accept value');
my $c = $ws->wait_event('connected', 15);
ok($c, 'connected event') or diag(explain [$ws->events]);
like($c->{session} // '', qr/^[0-9a-f-]{36}$/, 'it names the session');

$ws->send_binary("echo hel''lo; exit 3\n");
ok($ws->wait_for(sub { $ws->output =~ /\bhello\b/ }, 10), 'output contains hello')
    or diag($ws->output);
my $e = $ws->wait_event('exit', 10);
is_deeply($e, { type => 'exit', status => 3 }, 'exit event with status 3');
is($ws->wait_close(10), 1000, 'close code 1000');
ok($ws->wait_eof(10), 'the server closes the TCP connection');

ok(SeguraTest::wait_for(sub {
    $dbh->selectrow_array('select count(*) from ssh_sessions where ended_at is not null')
}, 10), 'the audit row is completed');
my $row = $dbh->selectrow_hashref('select * from ssh_sessions where id = ?', undef, $c->{session});
is($row->{exit_status}, 3, 'audit: exit status 3');
ok($row->{bytes_in} > 0, 'audit: bytes in counted');
ok($row->{bytes_out} > 0, 'audit: bytes out counted');
is($row->{end_reason}, 'exit', 'audit: ended by exit');
is($row->{user_id}, $f->{user}, 'audit: the user');
is($row->{key_id}, $f->{key}, 'audit: the key');
is($row->{device_id}, $f->{device}, 'audit: the device');
is($row->{client_addr}, '127.0.0.1', 'audit: the client address');

# resize: stty size follows
$ws = SeguraTest::Session::open_ws($t, $f, query => '&cols=90&rows=20');
ok($ws->wait_event('connected', 15), 'second session connected');
$ws->send_binary("stty size\n");
ok($ws->wait_for(sub { $ws->output =~ /\b20 90\r?\n/ }, 10), 'initial size 20x90')
    or diag($ws->output);
$ws->resize(100, 30);
$ws->send_binary("stty size\n");
ok($ws->wait_for(sub { $ws->output =~ /\b30 100\r?\n/ }, 10), 'after resize: 30 100')
    or diag($ws->output);

# the shell is told the terminal speaks UTF-8 (LANG, as ssh(1) forwards
# it; the test sshd accepts it), and UTF-8 passes both ways
$ws->send_binary("echo lang=\$LANG \xc3\xa9\xe2\x9c\x93\n");
ok($ws->wait_for(sub { $ws->output =~ /lang=C\.UTF-8 \xc3\xa9\xe2\x9c\x93\r?\n/ }, 10),
   'LANG=C.UTF-8 and UTF-8 echoed') or diag($ws->output);

# bytes pass through as they are: a paste with every byte that a shell
# line may carry, checked by its checksum on the device side
my $paste = join '', map { chr } (0x20 .. 0x7e);
$paste =~ s/'//g;
$ws->send_binary("printf '%s' '$paste' | sha256sum\n");
require Digest::SHA;
my $sum = Digest::SHA::sha256_hex($paste);
ok($ws->wait_for(sub { $ws->output =~ /$sum/ }, 10), 'a paste arrives byte for byte');

# bad control messages are answered, the session goes on
$ws->send_text('{"type":"resize","cols":0,"rows":10}');
my $bad = $ws->wait_event('error', 5);
is($bad && $bad->{code}, 'bad_message', 'a bad resize gets a bad_message error event');
$ws->send_text('not json');
$ws->send_binary("echo still-here\n");
ok($ws->wait_for(sub { $ws->output =~ /still-here/ }, 10), 'the session survives bad control messages');

# ping/pong
$ws->ping('abc');
ok($ws->wait_for(sub { $ws->{pongs} }, 5), 'a ping is answered with a pong');

# the client closes
$ws->close(1000);
is($ws->wait_close(10), 1000, 'client close is echoed');
ok($ws->wait_eof(10), 'and the connection closed');
ok(SeguraTest::wait_for(sub {
    $dbh->selectrow_array(q{select end_reason from ssh_sessions where ended_at is not null and end_reason = 'client_closed'})
}, 10), 'audit: ended by the client');

unlike(SeguraTest::slurp($t->error_log), qr/\[error\]/, 'no [error] in the log');

SeguraTest::done();
