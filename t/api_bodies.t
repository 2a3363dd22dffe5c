# API request bodies never reach the disk: 12 KB and 60 KB key bodies, sent
# slowly, by Content-Length and chunked, under client_body_in_file_only and
# a 1k client_body_buffer_size, leave nothing under client_body_temp_path;
# bodies over segura_max_body are 413 JSON, and nginx's own errors at the
# module's locations (413, 414, 400) are JSON too.
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use Mojo::JSON qw(encode_json decode_json);
use Time::HiRes qw(time sleep);
use SeguraTest;
use SeguraTest::Api;

my $t = SeguraTest->new(sshd => 1);
my $tmp = $t->dir . '/logs/client_body';

# the settings that would spool a body to a file the soonest, and keep it
$t->run(<<'EOF');
    large_client_header_buffers 4 2k;
    server {
        listen 127.0.0.1:%%PORT%%;
        client_body_buffer_size 1k;
        client_body_in_file_only on;
        location /api/ { segura_api; }
        location /api/limited/ { segura_api; client_max_body_size 2k; }
        location = /session { segura_session; }
        location / { return 404; }
    }
EOF

my $db = $t->db;
SeguraTest::Api::add_user($db, 'root', 'root-password-1', admin => 1);
my $api = SeguraTest::Api->new($t);
is($api->login('root', 'root-password-1')->code, 200, 'admin logs in');
my ($cookie) = $api->cookie;

my %key;
for my $n (1 .. 3) {
    my ($path) = $t->sshd->keygen("k$n", type => 'ed25519');
    $key{$n} = SeguraTest::slurp($path);
    $t->canary((split /\n/, $key{$n})[2]);
}

# what nginx has under its temporary directory, or holds open there
sub spooled {
    my @found;
    if (opendir my $dh, $tmp) {
        push @found, map { "$tmp/$_" } grep { !/^\.\.?$/ } readdir $dh;
    }
    for my $pid ($t->workers) {
        opendir my $dh, "/proc/$pid/fd" or next;
        for my $fd (grep { /^\d+$/ } readdir $dh) {
            my $l = readlink "/proc/$pid/fd/$fd" // next;
            push @found, $l if index($l, $tmp) == 0;
        }
    }
    return @found;
}

# a JSON body of about $size bytes: a real key, padded with whitespace
sub key_body {
    my ($name, $key, $size) = @_;
    my $json = encode_json({ name => $name, username => 'u', private_key => $key });
    my $pad = $size - length($json);
    substr($json, -1, 0) = ' ' x $pad if $pad > 0;
    return $json;
}

# sends a request in parts, looking at the temporary directory between
# them while the request is in flight; returns (status, json, spooled)
sub slow_request {
    my (%o) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->port,
                                  Proto => 'tcp', Timeout => 10) or die $!;
    my $body = $o{body};
    my @parts;
    my $head = "$o{method} $o{path} HTTP/1.1\r\nHost: localhost\r\n"
             . "Content-Type: application/json\r\nConnection: close\r\n"
             . "Cookie: segura_session=$cookie\r\n";
    if ($o{chunked}) {
        $head .= "Transfer-Encoding: chunked\r\n\r\n";
        my $n = int(length($body) / 8) + 1;
        for (my $i = 0; $i < length $body; $i += $n) {
            my $c = substr($body, $i, $n);
            push @parts, sprintf("%x\r\n%s\r\n", length $c, $c);
        }
        push @parts, "0\r\n\r\n";
    } else {
        $head .= 'Content-Length: ' . length($body) . "\r\n\r\n";
        my $n = int(length($body) / 8) + 1;
        for (my $i = 0; $i < length $body; $i += $n) {
            push @parts, substr($body, $i, $n);
        }
    }

    my @seen;
    print $s $head;
    for my $p (@parts) {
        last unless print $s $p;
        # in flight: list the directory repeatedly for a moment
        my $until = time + 0.05;
        while (time < $until) {
            push @seen, spooled();
            sleep 0.005;
        }
    }

    my $resp = '';
    $s->blocking(1);
    while (1) {
        my $n = sysread($s, my $buf, 65536);
        last unless $n;
        $resp .= $buf;
    }
    close $s;
    push @seen, spooled();

    my ($status) = $resp =~ m{^HTTP/1\.1 (\d{3})};
    my ($headers, $content) = split /\r\n\r\n/, $resp, 2;
    if ($headers =~ /Transfer-Encoding: chunked/i) {
        my $plain = '';
        while ($content =~ s/^([0-9a-f]+)\r\n//i) {
            my $len = hex $1;
            last if $len == 0;
            $plain .= substr($content, 0, $len, '');
            $content =~ s/^\r\n//;
        }
        $content = $plain;
    }
    my $json = eval { decode_json($content) };
    return ($status // 0, $json, $headers // '', \@seen);
}

my @ok = (
    [ '12 KB', key_body('k12', $key{1}, 12 * 1024), 0 ],
    [ '60 KB', key_body('k60', $key{2}, 60 * 1024), 0 ],
    [ '12 KB chunked', key_body('k12c', $key{3}, 12 * 1024), 1 ],
);

for my $c (@ok) {
    my ($name, $body, $chunked) = @$c;
    my ($status, $json, $headers, $seen) =
        slow_request(method => 'POST', path => '/api/keys', body => $body,
                     chunked => $chunked);
    is($status, 201, "$name key body: 201") or diag(explain($json));
    ok($json && $json->{id}, "$name key body: the key") ;
    is_deeply($seen, [], "$name key body: nothing under client_body_temp_path");
}

my $n = $db->dbh->selectrow_array('select count(*) from ssh_keys');
is($n, 3, 'three keys stored');

# a 60 KB chunked body that is not JSON: refused with JSON, no file
my ($status, $json, $headers, $seen) =
    slow_request(method => 'POST', path => '/api/keys', chunked => 1,
                 body => ('{"name":' . (' ' x 60000) . '5'));
is($status, 400, '60 KB chunked non-JSON: 400');
is($json->{error}{code}, 'invalid_json', '60 KB chunked non-JSON: JSON error');
is_deeply($seen, [], '60 KB chunked non-JSON: nothing on disk');

# over segura_max_body (64k): 413 JSON, by Content-Length before reading,
# and chunked as soon as the total passes the limit
my $big = key_body('k70', $key{1}, 70 * 1024);
($status, $json, $headers, $seen) =
    slow_request(method => 'POST', path => '/api/keys', body => $big);
is($status, 413, '70 KB body: 413');
is($json->{error}{code}, 'too_large', '70 KB body: JSON too_large');
is_deeply($seen, [], '70 KB body: nothing on disk');

($status, $json, $headers, $seen) =
    slow_request(method => 'POST', path => '/api/keys', body => $big, chunked => 1);
is($status, 413, '70 KB chunked body: 413');
is($json->{error}{code}, 'too_large', '70 KB chunked body: JSON too_large');
is_deeply($seen, [], '70 KB chunked body: nothing on disk');

is($db->dbh->selectrow_array('select count(*) from ssh_keys'), 3, 'no key from the refused bodies');

# an empty chunked body is an empty body
($status, $json) = slow_request(method => 'POST', path => '/api/keys', body => '', chunked => 1);
is($status, 400, 'empty chunked body: 400');
is($json->{error}{code}, 'invalid_json', 'empty chunked body: invalid_json');

# a request pipelined behind a chunked body is answered too: the body's
# buffers are wiped, not the bytes that follow it
{
    my $body = '{"name":' . (' ' x 12000) . '5';
    my $chunks = '';
    for (my $i = 0; $i < length $body; $i += 3000) {
        my $c = substr($body, $i, 3000);
        $chunks .= sprintf("%x\r\n%s\r\n", length $c, $c);
    }
    my $req = "POST /api/keys HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
            . "Cookie: segura_session=$cookie\r\nTransfer-Encoding: chunked\r\n\r\n"
            . $chunks . "0\r\n\r\n"
            . "GET /api/health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->port,
                                  Proto => 'tcp', Timeout => 10) or die $!;
    print $s $req;
    my $resp = '';
    while (sysread($s, my $buf, 65536)) { $resp .= $buf }
    my @st = $resp =~ m{^HTTP/1\.1 (\d{3})}mg;
    is_deeply(\@st, [400, 200], 'chunked body then a pipelined request: both answered')
        or diag($resp);
    like($resp, qr/"status":"ok"/, 'the pipelined request is intact');
}

# nginx's own errors at the module's locations are JSON
($status, $json, $headers) =
    slow_request(method => 'POST', path => '/api/limited/x', body => 'x' x 3000);
is($status, 413, 'over client_max_body_size: 413 from nginx');
is($json->{error}{code}, 'too_large', 'nginx 413: JSON');
like($headers, qr{Content-Type: application/json}i, 'nginx 413: application/json');

sub raw {
    my ($req) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->port,
                                  Proto => 'tcp', Timeout => 10) or die $!;
    print $s $req;
    my $resp = '';
    while (sysread($s, my $buf, 65536)) { $resp .= $buf }
    my ($st) = $resp =~ m{^HTTP/1\.1 (\d{3})};
    my ($h, $b) = split /\r\n\r\n/, $resp, 2;
    return ($st // 0, $h // '', $b // '');
}

my ($st, $h, $b) = raw('GET /api/' . ('x' x 3000) . " HTTP/1.1\r\nHost: a\r\n\r\n");
is($st, 414, 'URI too long at /api/: 414');
like($h, qr{Content-Type: application/json}i, '414 at /api/: JSON');
is(eval { decode_json($b)->{error}{code} }, 'uri_too_long', '414 at /api/: uri_too_long');

($st, $h, $b) = raw('GET /elsewhere/' . ('x' x 3000) . " HTTP/1.1\r\nHost: a\r\n\r\n");
is($st, 414, 'URI too long elsewhere: 414');
like($h, qr{Content-Type: text/html}i, '414 elsewhere: nginx\'s page');

($st, $h, $b) = raw("GET /api/health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
is($st, 400, 'duplicate Host at /api/: 400');
is(eval { decode_json($b)->{error}{code} }, 'bad_request', '400 at /api/: JSON');

($st, $h, $b) = raw("GET /session HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
is($st, 400, 'duplicate Host at /session: 400');
is(eval { decode_json($b)->{error}{code} }, 'bad_request', '400 at /session: JSON');

($st, $h, $b) = raw("GET /api/health HTTP/1.1\r\nHost: a\r\nX: " . ('y' x 3000) . "\r\n\r\n");
is($st, 400, 'header too large at /api/: 400');
is(eval { decode_json($b)->{error}{code} }, 'bad_request', 'header too large at /api/: JSON');

($st, $h, $b) = raw("HEAD /api/limited/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n");
is($st, 413, 'HEAD over client_max_body_size: 413');
is($b, '', 'HEAD: no body');

is_deeply([spooled()], [], 'nothing under client_body_temp_path at the end');

$t->stop;
my $log = SeguraTest::slurp($t->error_log);
ok($log !~ /buffered to a temporary file/, 'nginx never buffered a body to a file');
like($log, qr/\[info\].*segura api: request body over 65536 bytes/,
     'a chunked body over the limit is logged at info');

SeguraTest::done();
