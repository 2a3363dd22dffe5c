# Protocol abuse on /session: each violation of RFC 6455 closes that
# connection with the right code, and the worker goes on serving the
# other sessions.
use strict;
use warnings;
use Test::More;
use SeguraTest;
use SeguraTest::Session;
use SeguraTest::WS;

my $t = SeguraTest->new(sshd => 1);
$t->run(SeguraTest::Session::config(
    'location = /small { segura_max_message 4k; segura_session; }'));

my $f = SeguraTest::Session::fixture($t);

my $live = SeguraTest::Session::open_ws($t, $f);
ok($live->wait_event('connected', 20), 'a live session');

my $n = 0;
sub still_alive {
    my ($name) = @_;
    $n++;
    $live->send_binary("echo alive-$n-\$((40+2))\n");
    ok($live->wait_for(sub { $live->output =~ /alive-$n-42/ }, 10),
       "$name: the other session still works");
}

sub abuse {
    my ($name, $code, $send, %o) = @_;
    my $ws = $o{path}
        ? SeguraTest::WS->connect($t->port, "$o{path}?key=$f->{key}&device=$f->{device}",
                                  Cookie => $f->{cookie})
        : SeguraTest::Session::open_ws($t, $f);
    ok($ws->wait_event('connected', 20), "$name: connected");
    $send->($ws);
    is($ws->wait_close(10), $code, "$name: closed with $code");
    ok($ws->wait_eof(10), "$name: the connection is closed");
    still_alive($name);
}

abuse('unmasked frame', 1002, sub { $_[0]->send_frame(opcode => 2, payload => "ls\n", mask => 0) });
abuse('reserved bit', 1002, sub { $_[0]->send_frame(opcode => 2, payload => "ls\n", rsv => 4) });
abuse('reserved bits 2 and 3', 1002, sub { $_[0]->send_frame(opcode => 2, payload => "x", rsv => 3) });
abuse('unknown data opcode', 1002, sub { $_[0]->send_frame(opcode => 3, payload => "x") });
abuse('unknown control opcode', 1002, sub { $_[0]->send_frame(opcode => 0xb, payload => "x") });
abuse('fragmented ping', 1002, sub { $_[0]->send_frame(opcode => 9, payload => "x", fin => 0) });
abuse('ping over 125 bytes', 1002, sub { $_[0]->send_frame(opcode => 9, payload => "x" x 126) });
abuse('continuation without a start', 1002, sub { $_[0]->send_frame(opcode => 0, payload => "x") });
abuse('new message inside a fragmented one', 1002, sub {
    $_[0]->send_frame(opcode => 2, payload => "a", fin => 0);
    $_[0]->send_frame(opcode => 2, payload => "b");
});
abuse('invalid UTF-8 text', 1007, sub { $_[0]->send_frame(opcode => 1, payload => "\xc0\x80") });
abuse('UTF-8 surrogate split over fragments', 1007, sub {
    $_[0]->send_frame(opcode => 1, payload => "{\"a\":\"\xed", fin => 0);
    $_[0]->send_frame(opcode => 0, payload => "\xa0\x80\"}");
});
abuse('64-bit length with the high bit set', 1002, sub {
    $_[0]->raw(chr(0x82) . chr(0x80 | 127) . pack('NN', 0x80000000, 1) . "mask");
});
abuse('oversized message (1 MiB default)', 1009, sub {
    $_[0]->raw(chr(0x82) . chr(0x80 | 127) . pack('Q>', 2 * 1024 * 1024) . "mask");
});
abuse('oversized over fragments (segura_max_message 4k)', 1009, sub {
    $_[0]->send_frame(opcode => 2, payload => "x" x 3000, fin => 0);
    $_[0]->send_frame(opcode => 0, payload => "y" x 3000);
}, path => '/small');
abuse('close with an invalid code', 1002, sub { $_[0]->send_frame(opcode => 8, payload => pack('n', 1005)) });
abuse('close with one byte', 1002, sub { $_[0]->send_frame(opcode => 8, payload => "\x03") });

# a ping between fragments is fine, and the message arrives whole
my $ws = SeguraTest::Session::open_ws($t, $f);
ok($ws->wait_event('connected', 20), 'fragments: connected');
$ws->send_frame(opcode => 2, payload => "echo frag", fin => 0);
$ws->send_frame(opcode => 9, payload => "between");
$ws->send_frame(opcode => 0, payload => "mented-ok\n");
ok($ws->wait_for(sub { $ws->output =~ /fragmented-ok/ }, 10), 'a fragmented message with a ping inside');
ok($ws->wait_for(sub { $ws->{pongs} }, 5), 'the ping got its pong');

# 16-bit and 64-bit lengths
my $long = 'echo ' . ('z' x 300) . "\n";
$ws->send_binary($long);
ok($ws->wait_for(sub { $ws->output =~ /z{300}/ }, 10), 'a 16-bit length frame');
$ws->close(1000);
$ws->wait_eof(10);

# a Ping and a Close in one TCP write: the server answers with its Close
# and sends nothing after it (RFC 6455 5.5.1), in particular no Pong; a
# Pong before its Close is allowed (the Ping came first)
for my $round (1 .. 3) {
    $ws = SeguraTest::Session::open_ws($t, $f);
    ok($ws->wait_event('connected', 20), "ping+close $round: connected");
    $ws->send_binary("echo quiet-\$((6*7))\n");
    ok($ws->wait_for(sub { $ws->output =~ /quiet-42.*[#\$] $/s }, 10),
       "ping+close $round: the shell is idle")
        or diag($ws->output);
    my $before = @{ $ws->{frames} };
    $ws->{close_sent} = 1;    # ours is in the write below
    $ws->{no_pong} = 1;
    $ws->raw(SeguraTest::WS::frame(opcode => 9, payload => "p$round")
             . SeguraTest::WS::frame(opcode => 8, payload => pack('n', 1000)));
    ok($ws->wait_eof(10), "ping+close $round: the server closes the connection");
    my @after = map { $_->[0] } @{ $ws->{frames} }[$before .. $#{ $ws->{frames} }];
    my ($at) = grep { $after[$_] == 8 } 0 .. $#after;
    ok(defined $at, "ping+close $round: the server sent its Close")
        or diag('frames after the write: ' . join(' ', @after));
    is($ws->{close_code}, 1000, "ping+close $round: with 1000");
    is_deeply([@after[($at // $#after) + 1 .. $#after]], [],
              "ping+close $round: nothing after the server's Close")
        or diag('frames after the write: ' . join(' ', @after));
    ok(!grep({ $_ != 10 } @after[0 .. ($at // 0) - 1]),
       "ping+close $round: before it at most the Pong")
        or diag('frames after the write: ' . join(' ', @after));
    $ws->disconnect;
}

# a client that just drops the TCP connection
$ws = SeguraTest::Session::open_ws($t, $f);
ok($ws->wait_event('connected', 20), 'drop: connected');
$ws->disconnect;
still_alive('client dropped the connection');

$live->send_binary("exit\n");
is($live->wait_close(10), 1000, 'the live session ends normally');

SeguraTest::done();
