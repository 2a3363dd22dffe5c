package SeguraTest::WS;

# A small blocking WebSocket client for the tests, with full control over
# the frames it sends (unmasked, reserved bits, bad opcodes...) and a
# deadline on every read.
#
#   my $ws = SeguraTest::WS->connect($port, '/session?key=1&device=2',
#                                    Cookie => "segura_session=...");
#   $ws->{status}            101, or the HTTP status with $ws->{body}
#   $ws->send_binary("echo hi\n");
#   $ws->wait_for(sub { $ws->output =~ /hi/ }, 10);
#   my @events = $ws->events;   # decoded JSON text frames
#   $ws->{close_code}           once the server closed
#
# SeguraTest::WS->start(...) sends the request and returns at once, for
# many connections driven by one select loop (SeguraTest::Mux); the times
# of the response head, of each event, of the first output and of the
# close frame are kept ($ws->{started}, {head_at}, event_time('connected'),
# {first_output_at}, {close_at}).

use strict;
use warnings;

use IO::Socket::INET;
use IO::Select;
use JSON::PP;
use MIME::Base64;
use Time::HiRes qw(time);

sub connect {
    my ($class, $port, $path, %headers) = @_;

    my $self = $class->start($port, $path, %headers);

    # the response head
    my $deadline = time + ($headers{_timeout} // 15);
    until ($self->take_head(0)) {
        $self->fill($deadline) or last;
    }
    $self->take_head(1);

    return $self;
}

# sends the upgrade request and returns at once: the response is taken
# by parse() when it is there ($ws->{status} stays undef until then), so
# that one select loop can drive many of them (SeguraTest::Mux)
sub start {
    my ($class, $port, $path, %headers) = @_;

    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $port, Proto => 'tcp',
                                     Timeout => 5)
        or die "connect: $!";
    $sock->autoflush(1);
    binmode $sock;

    my $key = encode_base64(join('', map { chr int rand 256 } 1 .. 16), '');

    my %h = (
        Host                    => "127.0.0.1:$port",
        Upgrade                 => 'websocket',
        Connection              => 'Upgrade',
        'Sec-WebSocket-Key'     => $key,
        'Sec-WebSocket-Version' => 13,
        %headers,
    );

    my $req = "GET $path HTTP/1.1\r\n";
    for my $k (sort keys %h) {
        next unless defined $h{$k};
        $req .= "$k: $h{$k}\r\n";
    }
    $req .= "\r\n";

    my $self = bless { sock => $sock, buf => '', output => '', events => [],
                       event_at => [], frames => [], started => time },
                     $class;

    $self->raw($req);

    return $self;
}

# takes the response head (and a refusal's body) out of the buffer once it
# is complete, or, when $final, whatever is there; true once taken
sub take_head {
    my ($self, $final) = @_;

    return 1 if defined $self->{status};

    my $end = index($self->{buf}, "\r\n\r\n");
    return 0 if $end < 0 && !$final;

    my ($head, $rest) = $end < 0
        ? ($self->{buf}, '')
        : (substr($self->{buf}, 0, $end), substr($self->{buf}, $end + 4));

    my ($status) = $head =~ m{^HTTP/1\.1 (\d+)};
    $status //= 0;

    if ($status != 101) {
        my ($len) = $head =~ /^Content-Length: (\d+)/mi;
        return 0 if !$final && defined $len && length($rest) < $len;
        $self->{body} = $rest;
        $self->{json} = eval { decode_json($rest) };
        $rest = '';
    }

    $self->{status} = $status;
    $self->{head} = $head;
    $self->{head_at} = time;
    $self->{buf} = $rest;

    return 1;
}

sub header {
    my ($self, $name) = @_;
    my ($v) = $self->{head} =~ /^\Q$name\E:\s*(.*?)\r?$/mi;
    return $v;
}

sub raw {
    my ($self, $bytes) = @_;
    my $off = 0;
    while ($off < length $bytes) {
        my $n = syswrite($self->{sock}, $bytes, length($bytes) - $off, $off);
        return unless defined $n;
        $off += $n;
    }
    return 1;
}

# builds a client frame: masked unless told otherwise
sub frame {
    my (%o) = @_;

    my $payload = $o{payload} // '';
    my $len = length $payload;
    my $b0 = (($o{fin} // 1) ? 0x80 : 0) | (($o{rsv} // 0) << 4) | $o{opcode};
    my $mask = $o{mask} // 1;

    my $f = chr($b0);
    my $mbit = $mask ? 0x80 : 0;

    if (defined $o{len64}) {
        $f .= chr($mbit | 127) . pack('Q>', $o{len64});
    } elsif ($len < 126) {
        $f .= chr($mbit | $len);
    } elsif ($len < 65536) {
        $f .= chr($mbit | 126) . pack('n', $len);
    } else {
        $f .= chr($mbit | 127) . pack('Q>', $len);
    }

    if ($mask) {
        my $key = join '', map { chr int rand 256 } 1 .. 4;
        $f .= $key;
        my $k = $key x (int($len / 4) + 1);
        $payload = $payload ^ substr($k, 0, $len);
    }

    return $f . $payload;
}

sub send_frame { my ($self, %o) = @_; $self->raw(frame(%o)) }
sub send_binary { my ($self, $d) = @_; $self->send_frame(opcode => 2, payload => $d) }
sub send_text { my ($self, $d) = @_; $self->send_frame(opcode => 1, payload => $d) }
sub send_json { my ($self, $d) = @_; $self->send_text(encode_json($d)) }
sub ping { my ($self, $d) = @_; $self->send_frame(opcode => 9, payload => $d // '') }

sub resize {
    my ($self, $cols, $rows) = @_;
    $self->send_json({ type => 'resize', cols => $cols, rows => $rows });
}

sub close {
    my ($self, $code) = @_;
    $self->send_frame(opcode => 8, payload => defined $code ? pack('n', $code) : '');
}

# reads what is there (blocking until the deadline); false at EOF/timeout
sub fill {
    my ($self, $deadline) = @_;

    my $left = $deadline - time;
    return 0 if $left <= 0 || $self->{eof};

    my $sel = IO::Select->new($self->{sock});
    return 0 unless $sel->can_read($left);

    my $n = sysread($self->{sock}, my $chunk, 262144);
    if (!$n) {
        $self->{eof} = 1;
        return 0;
    }

    $self->{buf} .= $chunk;
    $self->{received} += $n;
    return 1;
}

# parses complete server frames out of the buffer
sub parse {
    my ($self) = @_;

    return unless $self->take_head(0);

    while (length($self->{buf}) >= 2) {
        my ($b0, $b1) = unpack('CC', $self->{buf});
        my $len = $b1 & 0x7f;
        my $off = 2;
        die "server frame is masked" if $b1 & 0x80;

        if ($len == 126) {
            return if length($self->{buf}) < 4;
            $len = unpack('n', substr($self->{buf}, 2, 2));
            $off = 4;
        } elsif ($len == 127) {
            return if length($self->{buf}) < 10;
            $len = unpack('Q>', substr($self->{buf}, 2, 8));
            $off = 10;
        }

        return if length($self->{buf}) < $off + $len;

        my $payload = substr($self->{buf}, $off, $len);
        substr($self->{buf}, 0, $off + $len) = '';

        my $op = $b0 & 0x0f;
        push @{ $self->{frames} }, [$op, length $payload];

        if ($op == 2) {
            $self->{first_output_at} //= time;
            $self->{output} .= $payload unless $self->{discard};
            $self->{output_bytes} += length $payload;
            $self->{on_binary}->($payload) if $self->{on_binary};
        } elsif ($op == 1) {
            push @{ $self->{events} }, decode_json($payload);
            push @{ $self->{event_at} }, time;
        } elsif ($op == 8) {
            $self->{close_code} = length $payload >= 2 ? unpack('n', $payload) : 1005;
            $self->{close_at} = time;
            $self->{close_reason} = length $payload > 2 ? substr($payload, 2) : '';
            unless ($self->{close_sent}) {
                $self->{close_sent} = 1;
                $self->raw(frame(opcode => 8, payload => substr($payload, 0, 2)));
            }
        } elsif ($op == 9) {
            $self->{pings}++;
            $self->send_frame(opcode => 10, payload => $payload) unless $self->{no_pong};
        } elsif ($op == 10) {
            $self->{pongs}++;
        }
    }
}

# waits until $cond is true (checked after every read), or the deadline
sub wait_for {
    my ($self, $cond, $timeout) = @_;

    my $deadline = time + ($timeout // 10);

    while (1) {
        $self->parse;
        return 1 if $cond->();
        return 0 if time >= $deadline || $self->{eof};
        $self->fill($deadline);
    }
}

sub wait_close {
    my ($self, $timeout) = @_;
    $self->wait_for(sub { defined $self->{close_code} }, $timeout);
    return $self->{close_code};
}

# waits until the server closes the TCP connection
sub wait_eof {
    my ($self, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    while (!$self->{eof} && time < $deadline) {
        $self->fill($deadline);
        $self->parse;
    }
    return $self->{eof};
}

sub output { $_[0]{output} }
sub events { @{ $_[0]{events} } }

sub event {
    my ($self, $type) = @_;
    my ($e) = grep { $_->{type} eq $type } @{ $self->{events} };
    return $e;
}

# when the first event of that type was read (time()), or undef
sub event_time {
    my ($self, $type) = @_;
    for my $i (0 .. $#{ $self->{events} }) {
        return $self->{event_at}[$i] if $self->{events}[$i]{type} eq $type;
    }
    return undef;
}

sub wait_event {
    my ($self, $type, $timeout) = @_;
    $self->wait_for(sub { $self->event($type) }, $timeout);
    return $self->event($type);
}

# acknowledges what it reads as the web UI does (every 32 KiB): output
# counted from the first connected event, across resumes ($base: what was
# received before this connection)
sub acking {
    my ($self, $base) = @_;
    $base //= 0;
    my $last = 0;
    $self->{on_binary} = sub {
        if ($self->{output_bytes} - $last >= 32768) {
            $last = $self->{output_bytes};
            $self->send_json({ type => 'ack', bytes => $base + $last });
        }
    };
    $self->send_json({ type => 'ack', bytes => $base + ($self->{output_bytes} // 0) });
}

sub disconnect {
    my ($self) = @_;
    CORE::close($self->{sock}) if $self->{sock};
    delete $self->{sock};
}

1;
