package SeguraTest::Mux;

# Many WebSockets (SeguraTest::WS->start) and plain HTTP requests at once,
# driven by one select loop, with the time of everything that arrives: a
# test that opens fifty sessions to a stalling device can still see when
# each one of them, and a healthy session beside them, got its answer.
#
#   my $mux = SeguraTest::Mux->new;
#   $mux->add(SeguraTest::WS->start($port, $path, Cookie => $c)) for 1 .. 50;
#   my $req = $mux->http($port, 'GET', '/api/me', Cookie => $c);
#   $mux->pump(sub { $req->{done_at} && !grep { !defined $_->{close_code} }
#                                           $mux->ws }, 10);
#   $req->{status}, $req->{done_at} - $req->{started}

use strict;
use warnings;

use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use Time::HiRes qw(time);

sub new {
    my ($class) = @_;
    return bless { ws => [], http => [] }, $class;
}

sub add {
    my ($self, @ws) = @_;
    push @{ $self->{ws} }, @ws;
    return @ws;
}

sub ws { @{ $_[0]{ws} } }

# an HTTP/1.1 request on its own connection (Connection: close), read to
# the end in the loop; the object has started, done_at, status, body, json
sub http {
    my ($self, $port, $method, $path, %o) = @_;

    my $body = delete $o{body};
    $body = encode_json($body) if ref $body;

    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $port, Proto => 'tcp',
                                     Timeout => 5)
        or die "connect: $!";
    binmode $sock;

    my $req = "$method $path HTTP/1.1\r\nHost: 127.0.0.1:$port\r\n"
            . "Connection: close\r\n";
    $req .= "$_: $o{$_}\r\n" for sort keys %o;
    if (defined $body) {
        $req .= "Content-Type: application/json\r\n"
              . 'Content-Length: ' . length($body) . "\r\n";
    }
    $req .= "\r\n" . ($body // '');

    my $r = bless { sock => $sock, buf => '', started => time,
                    method => $method, path => $path },
                  'SeguraTest::Mux::Http';

    my $off = 0;
    while ($off < length $req) {
        my $n = syswrite($sock, $req, length($req) - $off, $off);
        last unless defined $n;
        $off += $n;
    }

    push @{ $self->{http} }, $r;
    return $r;
}

# reads whatever arrives until $cond is true (checked after every pass
# of the loop, at least every 50 ms) or $timeout seconds have passed;
# returns the last value of $cond
sub pump {
    my ($self, $cond, $timeout) = @_;

    my $deadline = time + $timeout;

    while (1) {
        $_->parse for grep { $_->{sock} } @{ $self->{ws} };

        my $r = $cond->();
        return $r if $r;

        my $left = $deadline - time;
        return $r if $left <= 0;

        my %by;
        for my $w (@{ $self->{ws} }, @{ $self->{http} }) {
            next unless $w->{sock} && !$w->{eof};
            $by{ fileno $w->{sock} } = $w;
        }

        my $sel = IO::Select->new(map { $_->{sock} } values %by);
        my $wait = $left < 0.05 ? $left : 0.05;

        unless ($sel->count) {
            select(undef, undef, undef, $wait);
            next;
        }

        for my $fh ($sel->can_read($wait)) {
            my $w = $by{ fileno $fh };
            if ($w->isa('SeguraTest::Mux::Http')) {
                $w->read;
            } else {
                $w->fill(time + 0.01);
                $w->parse;
            }
        }
    }
}


package SeguraTest::Mux::Http;

use strict;
use warnings;

use JSON::PP;
use Time::HiRes qw(time);

sub read {
    my ($self) = @_;

    my $n = sysread($self->{sock}, my $chunk, 65536);
    if ($n) {
        $self->{buf} .= $chunk;
        return;
    }

    # the server closed: the response is complete
    $self->{eof} = 1;
    $self->{done_at} = time;
    close $self->{sock};
    delete $self->{sock};

    my ($head, $body) = split /\r\n\r\n/, $self->{buf}, 2;
    ($self->{status}) = ($head // '') =~ m{^HTTP/1\.1 (\d+)};
    $self->{status} //= 0;
    $self->{body} = $body // '';
    $self->{json} = eval { decode_json($self->{body}) };
}

sub done { defined $_[0]{done_at} }

# seconds from the request to the end of the response (so far, if open)
sub elapsed {
    my ($self) = @_;
    return ($self->{done_at} // time) - $self->{started};
}

1;
