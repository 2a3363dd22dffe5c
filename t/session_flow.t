# End-to-end flow control: a client that acknowledges what it rendered
# ({"type":"ack","bytes":n}) never has more than the window (256 KiB) of
# output sent and not acknowledged, whatever the device prints and however
# long it waits; each acknowledgement lets exactly that much more through;
# its keystrokes (Ctrl-C) still reach the shell; bad acknowledgements are
# bad_message; a client that never acknowledges gets everything as before.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time);
use SeguraTest;
use SeguraTest::Session;
use SeguraTest::WS;

my $WINDOW = 256 * 1024;

my $t = SeguraTest->new(sshd => 1);
$t->run(SeguraTest::Session::config());
my $f = SeguraTest::Session::fixture($t);

# reads whatever comes until $secs pass (no acknowledgement)
sub drain {
    my ($ws, $secs) = @_;
    my $deadline = time + $secs;
    while (time < $deadline && !$ws->{eof}) {
        $ws->fill($deadline);
        $ws->parse;
    }
}

my $ws = SeguraTest::Session::open_ws($t, $f);
ok($ws->wait_event('connected', 20), 'connected');
$ws->{discard} = 1;

$ws->send_json({ type => 'ack', bytes => 0 });
$ws->send_binary("seq 1 50000000\n");

ok($ws->wait_for(sub { ($ws->{output_bytes} // 0) >= $WINDOW / 2 }, 20),
   'the output flows') or diag($ws->{output_bytes});

# the bound holds at every moment: wait and read all that comes
drain($ws, 1.5);
my $got = $ws->{output_bytes};
ok($got <= $WINDOW, "without acknowledgements no more than the window "
                    . "arrives ($got bytes)");
ok($got >= $WINDOW - 70000, 'and the window is used') or diag($got);

# each acknowledgement opens exactly that much more

for my $round (1 .. 3) {
    my $acked = $ws->{output_bytes};
    $ws->send_json({ type => 'ack', bytes => $acked });
    ok($ws->wait_for(sub { $ws->{output_bytes} > $acked + $WINDOW / 2 }, 20),
       "round $round: acknowledged output lets more through");
    drain($ws, 0.5);
    ok($ws->{output_bytes} <= $acked + $WINDOW,
       "round $round: never more than the acknowledged plus the window")
        or diag($ws->{output_bytes} - $acked);
}

# acknowledgements are checked

my $n_err = grep { $_->{type} eq 'error' } $ws->events;
$ws->send_json({ type => 'ack', bytes => $ws->{output_bytes} + 1 });
ok($ws->wait_for(sub { (grep { $_->{type} eq 'error' } $ws->events) > $n_err }, 10),
   'an acknowledgement of more than was sent is refused');
my ($e) = grep { $_->{type} eq 'error' } reverse $ws->events;
is($e->{code}, 'bad_message', 'as bad_message');

$ws->send_json({ type => 'ack', bytes => 1 });
ok($ws->wait_for(sub { (grep { $_->{type} eq 'error' } $ws->events) > $n_err + 1 }, 10),
   'so is one that goes back');
$ws->send_json({ type => 'ack', bytes => '12' });
ok($ws->wait_for(sub { (grep { $_->{type} eq 'error' } $ws->events) > $n_err + 2 }, 10),
   'and one that is not a number');
ok(!defined $ws->{close_code}, 'the session goes on');

# Ctrl-C goes through while the output is held, and a prompt comes back

$ws->{discard} = 0;
$ws->{output} = '';
$ws->send_binary("\x03");
$ws->send_binary("echo FLOW_\$((6*7))_DONE\n");
my $before = $ws->{output_bytes};
ok($ws->wait_for(sub {
        # the client keeps up from here
        $ws->send_json({ type => 'ack', bytes => $ws->{output_bytes} })
            if $ws->{output_bytes} > ($ws->{last_ack} // 0);
        $ws->{last_ack} = $ws->{output_bytes};
        $ws->{output} =~ /FLOW_42_DONE/;
    }, 30), 'the interrupt took effect and the shell answers');
my $after = $ws->{output_bytes} - $before;
ok($after < 4 * 1024 * 1024,
   "what was in flight when the interrupt came is bounded ($after bytes)");

$ws->send_binary("exit\n");
is($ws->wait_close(20), 1000, 'the shell exits normally');
$ws->disconnect;

# a client that never acknowledges: no flow control, as before

my $old = SeguraTest::Session::open_ws($t, $f);
ok($old->wait_event('connected', 20), 'connected without acknowledging');
$old->{discard} = 1;
$old->send_binary("seq 1 2000000\n");
ok($old->wait_for(sub { ($old->{output_bytes} // 0) > 4 * $WINDOW }, 30),
   'it gets more than the window: nothing holds it')
    or diag($old->{output_bytes});
$old->send_binary("exit\n");
is($old->wait_close(30), 1000, 'and exits normally');
$old->disconnect;

$t->done;
