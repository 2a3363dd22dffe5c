# Recording: a session's output, resizes and markers are stored in
# PostgreSQL as sealed chunks and replayed as asciicast v2 by
# GET /api/sessions/{id}/recording; the output events are exactly the bytes
# the client got, what was typed is stored only with segura_recording_input
# on, and nothing printed or typed is readable in a dump of the database.
use strict;
use warnings;
use Test::More;
use Digest::SHA qw(sha256_hex);
use Encode ();
use JSON::PP;
use IO::Socket::INET;
use Socket ();
use Time::HiRes qw(time);
use SeguraTest;
use SeguraTest::Api;
use SeguraTest::Pg;
use SeguraTest::Session;
use SeguraTest::WS;

my $t = SeguraTest->new(sshd => 1);
$t->run(SeguraTest::Session::config(q{
        location = /session-in { segura_session; segura_recording_input on; }
        location = /session-off { segura_session; segura_recording off; }
}));
my $db = $t->db;
my $dbh = $db->dbh;

my $f = SeguraTest::Session::fixture($t);

SeguraTest::Api::add_user($db, 'auditor', 'auditor-password-1', admin => 1);
my $admin = SeguraTest::Api->new($t);
is($admin->login('auditor', 'auditor-password-1')->code, 200,
   'the administrator logs in');

my $JSON = JSON::PP->new->utf8;

sub ws_at {
    my ($path, $query) = @_;
    return SeguraTest::WS->connect($t->port, "$path?key=$f->{key}"
                                   . "&device=$f->{device}" . ($query // ''),
                                   Cookie => $f->{cookie});
}

# the recording's row is completed once the session ended and its chunks
# went through the outbox
sub recorded {
    my ($id, $what) = @_;
    ok(SeguraTest::wait_for(sub {
        $dbh->selectrow_array(q{select count(*) from ssh_session_recordings
                                where session_id = ? and ended_at is not null},
                              undef, $id)
    }, 20), "$what: the recording is complete in the database");
}

# the asciicast of a session: (header, events)
sub cast {
    my ($id, $what) = @_;
    my $res = $admin->get("/api/sessions/$id/recording");
    is($res->code, 200, "$what: the recording is served") or diag($res->body);
    like($res->headers->content_type // '', qr{^application/x-asciicast},
         "$what: as application/x-asciicast");
    my @lines = split /\n/, $res->body;
    my $header = eval { $JSON->decode(shift @lines) } || {};
    my @ev = map { $JSON->decode($_) } @lines;
    return ($header, @ev);
}

sub data_of {
    my ($code, @ev) = @_;
    return join '', map { Encode::encode_utf8($_->[2]) }
                    grep { $_->[1] eq $code } @ev;
}

sub password_prompt {
    my ($ws, $secret, $what) = @_;
    # the passphrase is typed with echo off, as at a password prompt
    $ws->send_binary("stty -echo; printf 'Pass''word: '; read -r pw;"
                     . " stty echo; echo; echo got-\${#pw}\n");
    ok($ws->wait_for(sub { $ws->output =~ /Password: / }, 10),
       "$what: the prompt") or diag($ws->output);
    $ws->send_binary("$secret\n");
    my $n = length $secret;
    ok($ws->wait_for(sub { $ws->output =~ /got-$n\r?\n/ }, 10),
       "$what: the shell read the passphrase");
    unlike($ws->output, qr/\Q$secret\E/, "$what: the terminal did not echo it");
}

sub pg_dump {
    my $bin = (sort glob '/usr/lib/postgresql/*/bin/pg_dump')[-1] || 'pg_dump';
    my ($rc, $out, $err) = SeguraTest::Pg::run($bin, '-d', $db->conninfo,
                                               '--data-only');
    is($rc, 0, 'pg_dump of the test database') or diag($err);
    return $out;
}


# --- 20 MiB of random base64, two resizes -----------------------------------

my $ws = ws_at('/session', '&cols=80&rows=24');
my $c = $ws->wait_event('connected', 20);
ok($c, 'bulk: connected');
my $id = $c->{session};

$ws->resize(100, 30);
$ws->send_binary("stty size\n");
ok($ws->wait_for(sub { $ws->output =~ /\b30 100\r?\n/ }, 10), 'bulk: resized');
$ws->resize(120, 40);
$ws->send_binary("stty size\n");
ok($ws->wait_for(sub { $ws->output =~ /\b40 120\r?\n/ }, 10), 'bulk: resized again');

# a marker the session prints (the command line holds its octal escapes)
my $printed = 'PRINTED-' . join('', map { ('A' .. 'Z')[rand 26] } 1 .. 16);
my $octal = join '', map { sprintf '\\%03o', ord } split //, $printed;

$ws->send_binary("head -c 15728640 /dev/urandom | base64 -w 0; printf '\\n$octal\\n'; "
                 . "printf '\\105\\116\\104\\n'\n");
ok($ws->wait_for(sub { $ws->output =~ /\r?\nEND\r?\n/ }, 120),
   'bulk: the stream arrived');
like($ws->output, qr/\Q$printed\E/, 'bulk: the printed marker arrived');

my $secret = 'pass-' . join('', map { ('a' .. 'z')[rand 26] } 1 .. 20);
password_prompt($ws, $secret, 'input off');

$ws->send_binary("exit 7\n");
is($ws->wait_close(20), 1000, 'bulk: the shell exits');
my $received = $ws->output;
ok(length($received) > 20 * 1024 * 1024, 'bulk: more than 20 MiB went to the client');
recorded($id, 'bulk');

my $chunks = $dbh->selectrow_array(
    'select count(*) from ssh_session_chunks where session_id = ?', undef, $id);
ok($chunks >= 20 * 1024 * 1024 / 65536, "bulk: stored in chunks of at most 64 KiB ($chunks)");
my $bad = $dbh->selectrow_array(q{select count(*) from ssh_session_chunks
                                  where session_id = ? and plain_size > 65536},
                                undef, $id);
is($bad, 0, 'bulk: no chunk holds more than 64 KiB of events');
my ($stored, $plain) = $dbh->selectrow_array(q{select sum(length(data)),
    sum(plain_size) from ssh_session_chunks where session_id = ?}, undef, $id);
diag(sprintf('%d output bytes, %d event bytes stored as %d (%.3f per output byte)',
             length $received, $plain, $stored, $stored / length $received));

my ($header, @ev) = cast($id, 'bulk');
my $ev_body = $admin->get("/api/sessions/$id/recording")->body;
is($header->{version}, 2, 'bulk: asciicast version 2');
is($header->{width}, 80, 'bulk: the width at the start');
is($header->{height}, 24, 'bulk: the height at the start');
like($header->{timestamp} // '', qr/^\d{10}$/, 'bulk: a timestamp');
like($header->{title} // '', qr/\@/, 'bulk: a title (user@device)');

my $out = data_of('o', @ev);
is(length $out, length $received, 'bulk: as many output bytes as the client got');
is(sha256_hex($out), sha256_hex($received),
   'bulk: the output events are the bytes the client got (SHA-256)');

my @times = map { $_->[0] } @ev;
is(scalar(grep { $times[$_] < $times[$_ - 1] } 1 .. $#times), 0,
   'bulk: times never go back');
ok((grep { !/^(?:\d+\.\d+|\d+)$/ } @times) == 0, 'bulk: times are numbers');
is_deeply([map { $_->[2] } grep { $_->[1] eq 'r' } @ev], ['100x30', '120x40'],
          'bulk: two resize events');
my @marks = map { $_->[2] } grep { $_->[1] eq 'm' } @ev;
is($marks[0], 'session started', 'bulk: the start marker');
ok((grep { $_ eq 'exit 7' } @marks), 'bulk: the exit marker') or diag(explain \@marks);
is($marks[-1], 'session ended: exit', 'bulk: the end marker');
is(scalar(grep { $_->[1] eq 'i' } @ev), 0, 'input off: no input events');
my $whole = join '', map { Encode::encode_utf8($_->[2]) } @ev;
unlike($whole, qr/\Q$secret\E/, 'input off: the passphrase is not in the recording');
like($whole, qr/\Q$printed\E/, 'the printed marker is in the recording');

# asciinema's own parser (Debian's asciinema package) reads the file and
# gives back the same output
SKIP: {
    skip 'asciinema (Debian package) is not installed', 2
        unless -e '/usr/lib/python3/dist-packages/asciinema/asciicast/v2.py';
    my $file = $t->dir . '/bulk.cast';
    open my $fh, '>:raw', $file or die $!;
    print $fh $admin->get("/api/sessions/$id/recording")->body;
    close $fh;
    my $py = q{import sys
from asciinema import asciicast
with asciicast.open_from_url(sys.argv[1]) as a:
    for _, _t, text in a.stdout_events():
        sys.stdout.buffer.write(text.encode("utf-8"))
};
    my ($rc, $stdout, $stderr) = SeguraTest::Pg::run('/usr/bin/python3', '-c', $py, $file);
    is($rc, 0, "asciinema's parser accepts the recording") or diag($stderr);
    is(sha256_hex($stdout), sha256_hex($received),
       "asciinema's parser gets the bytes the client got");
}

my $raw = $admin->get("/api/sessions/$id/recording?format=raw");
is($raw->code, 200, 'raw: served');
like($raw->headers->content_type // '', qr{^application/octet-stream}, 'raw: octet-stream');
is(sha256_hex($raw->body), sha256_hex($received), 'raw: the output bytes alone');

my $replays = $dbh->selectrow_array(q{select count(*) from audit_log
    where action = 'session_replay' and object_id = ?}, undef, $id);
is($replays, 4, 'every replay is an audit_log row');


# --- the index: the whole session from the rows' clear columns ------------

my $res = $admin->get("/api/sessions/$id/recording?format=index");
is($res->code, 200, 'index: served');
like($res->headers->content_type // '', qr{^application/json}, 'index: JSON');
my $index = eval { $res->json } || {};
my $rows = $dbh->selectall_arrayref(q{select seq, t_first, t_last, plain_size
    from ssh_session_chunks where session_id = ? order by seq}, undef, $id);
is_deeply($index->{chunks}, $rows, 'index: every chunk, its seq, times and size');
is($index->{duration}, $rows->[-1][2], 'index: the duration is the last event time (ms)');
is($index->{bytes}, $plain, 'index: the event bytes');
is($index->{width}, 80, 'index: the size at the start');
ok(!$index->{live} && !$index->{incomplete}, 'index: ended, complete');
my @ev_marks = map { [int($_->[0] * 1000 + 0.5), $_->[2]] } grep { $_->[1] eq 'm' } @ev;
is_deeply($index->{markers}, \@ev_marks,
          'index: the markers, at the times of the asciicast')
    or diag(explain $index->{markers});

# --- a window from the middle ----------------------------------------------

# every event of the whole cast, with its time in ms
my @all = map { [int($_->[0] * 1000 + 0.5), $_->[1], Encode::encode_utf8($_->[2])] } @ev;
my $mid = $rows->[int(@$rows / 2)];
my ($from, $to) = ($mid->[1] + 1, $mid->[1] + 1500);
my $t0 = time;
$res = $admin->get("/api/sessions/$id/recording?from=$from&to=$to");
my $took = time - $t0;
is($res->code, 200, 'window: served');
like($res->headers->content_type // '', qr{^application/x-asciicast}, 'window: asciicast');
my @wl = split /\n/, $res->body;
my $wh = eval { $JSON->decode(shift @wl) } || {};
my @wev = map { $JSON->decode($_) } @wl;
is($wh->{version}, 2, 'window: asciicast version 2');
is("$wh->{width}x$wh->{height}", '120x40', 'window: the size at from (after both resizes)');
is($wev[0][0], 0, 'window: the first event is at time 0');
is($wev[0][1], 'o', 'window: an output event redraws the screen');
my $before = join '', map { $_->[2] } grep { $_->[0] < $from && $_->[1] eq 'o' } @all;
my $restore = Encode::encode_utf8($wev[0][2]);
ok(length $restore > 0 && length $restore <= 256 * 1024,
   'window: the redraw is at most 256 KiB (' . length($restore) . ')');
is(substr($before, -length $restore), $restore,
   'window: the redraw is the output just before from');
my $inside = join '', map { $_->[2] } grep { $_->[0] >= $from && $_->[0] < $to && $_->[1] eq 'o' } @all;
my $got = join '', map { Encode::encode_utf8($_->[2]) } grep { $_->[1] eq 'o' } @wev[1 .. $#wev];
ok(length $inside > 0, 'window: the window holds output (' . length($inside) . ' bytes)');
is(sha256_hex($got), sha256_hex($inside), 'window: then the output events in [from, to), whole');
my @wt = map { $_->[0] } @wev;
is(scalar(grep { $_ < 0 || $_ * 1000 >= $to - $from + 0.5 } @wt), 0,
   'window: times are from 0 to to - from');
is(scalar(grep { $wt[$_] < $wt[$_ - 1] } 1 .. $#wt), 0, 'window: times never go back');
diag(sprintf 'window of %d bytes from the middle served in %.3f s', length $res->body, $took);

# to alone: from the start, no redraw, the events before to as they are
my $to0 = $rows->[1][2];
$res = $admin->get("/api/sessions/$id/recording?to=$to0");
my (undef, @hl) = split /\n/, $res->body;
my @head = map { $JSON->decode($_) } @hl;
is_deeply([map { [int($_->[0] * 1000 + 0.5), $_->[1], Encode::encode_utf8($_->[2])] } @head],
          [grep { $_->[0] < $to0 } @all], 'window without from: the events before to, unchanged');

# from alone: to the end, with the end marker
$res = $admin->get("/api/sessions/$id/recording?from=$from");
my (undef, @tl) = split /\n/, $res->body;
my @tail = map { $JSON->decode($_) } @tl;
is($tail[-1][2], 'session ended: exit', 'window without to: up to the end');
# a window after the last event: the screen at the end, nothing else
$res = $admin->get("/api/sessions/$id/recording?from=" . ($index->{duration} + 10));
my @end = split /\n/, $res->body;
is(scalar @end, 2, 'window after the end: the header and the redraw');

# asciinema's own parser reads a window too
SKIP: {
    skip 'asciinema (Debian package) is not installed', 2
        unless -e '/usr/lib/python3/dist-packages/asciinema/asciicast/v2.py';
    my $file = $t->dir . '/window.cast';
    open my $fh, '>:raw', $file or die $!;
    print $fh $admin->get("/api/sessions/$id/recording?from=$from&to=$to")->body;
    close $fh;
    my $py = q{import sys
from asciinema import asciicast
with asciicast.open_from_url(sys.argv[1]) as a:
    for _, _t, text in a.stdout_events():
        sys.stdout.buffer.write(text.encode("utf-8"))
};
    my ($rc, $stdout, $stderr) = SeguraTest::Pg::run('/usr/bin/python3', '-c', $py, $file);
    is($rc, 0, "asciinema's parser accepts a window") or diag($stderr);
    is(sha256_hex($stdout), sha256_hex($restore . $inside),
       "asciinema's parser gets the redraw and the window's output");
}

# HEAD: the headers alone
my $head_res = $admin->request("HEAD", "/api/sessions/$id/recording");
is($head_res->code, 200, 'HEAD: 200');
like($head_res->headers->content_type // '', qr{^application/x-asciicast}, 'HEAD: the type');
is(length $head_res->body, 0, 'HEAD: no body');

# bounds: every parameter is checked, 422 with the field
for my $bad (['from=abc', 'from'], ['from=-1', 'from'], ['from=2147483648', 'from'],
             ['from=00000000001', 'from'], ['to=', 'to'], ['from=5&to=5', 'to'],
             ['from=10&to=4', 'to'], ['format=raw&from=0', 'format'],
             ['format=index&to=9', 'format'], ['from=1%00', 'from']) {
    my $r = $admin->get("/api/sessions/$id/recording?$bad->[0]");
    is($r->code, 422, "bounds: $bad->[0] is 422");
    is(eval { $r->json->{error}{field} }, $bad->[1], "bounds: $bad->[0] names $bad->[1]");
}
my $u = SeguraTest::Api->new($t);
is($u->get("/api/sessions/$id/recording?format=index")->code, 401, 'index: no login, 401');

my @details = map { $JSON->decode($_->[0]) } @{ $dbh->selectall_arrayref(
    q{select detail::text from audit_log where action = 'session_replay'
      and object_id = ? order by id}, undef, $id) };
is(scalar @details, 4 + 7, 'every index and window request is an audit_log row');
is_deeply($details[4], { format => 'index' }, 'audited: the index');
is_deeply($details[5], { format => 'asciicast', from => $from, to => $to },
          'audited: the window, with from and to');

# --- a client that reads slowly: the worker holds one batch ----------------

SKIP: {
    my ($worker) = $t->workers;
    my $cookie = $admin->cookie;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->port,
                                     Proto => 'tcp');
    ok($sock, 'slow: connected') or skip 'no connection', 9;
    setsockopt($sock, Socket::SOL_SOCKET(), Socket::SO_RCVBUF(), 32768);
    my $log0 = length SeguraTest::slurp($t->error_log);
    my $rss0 = $t->worker_rss_kb($worker);
    print $sock "GET /api/sessions/$id/recording HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              . "Cookie: segura_session=$cookie\r\nConnection: close\r\n\r\n";
    my $buf = '';
    sysread($sock, $buf, 4096, length $buf) until $buf =~ /\r\n\r\n/;
    my ($head) = $buf =~ /^(.*?\r\n)\r\n/s;
    like($head, qr{^HTTP/1\.1 200}, 'slow: 200');
    like($head, qr{Transfer-Encoding: chunked}i, 'slow: chunked, no length known in advance');
    # the client reads nothing for 2 s (a slow downloader): what the worker
    # holds meanwhile
    my ($rss_max, $until) = (0, time + 2);
    while (time < $until) {
        my $rss = $t->worker_rss_kb($worker);
        $rss_max = $rss if $rss > $rss_max;
        select(undef, undef, undef, 0.05);
    }
    is($dbh->selectrow_array(q{select count(*) from pg_stat_activity
        where datname = current_database() and pid <> pg_backend_pid()
        and state <> 'idle'}), 0,
       'slow: no database connection is busy for it meanwhile');
    my @batches = substr(SeguraTest::slurp($t->error_log), $log0)
                  =~ /segura api: recording batch of (\d+) bytes/g;
    my $sent = 0;
    $sent += $_ for @batches;
    ok(@batches >= 1 && $sent < length($ev_body) / 2,
       sprintf('slow: while the client reads nothing, %d batches (%d bytes of %d) went out',
               scalar @batches, $sent, length $ev_body));
    my $biggest = (sort { $b <=> $a } @batches)[0] // 0;
    ok($biggest <= 16 * (65536 + 1024) * 1.1, "slow: a batch is at most 16 chunks ($biggest bytes)");
    if ($ENV{ASAN}) {
        pass('slow: RSS not measured under ASan (its quarantine keeps freed memory)');
    } else {
        ok($rss_max - $rss0 < 8192, sprintf('slow: the worker grew by %d KiB, not the %d KiB of the recording',
                                             $rss_max - $rss0, length($ev_body) / 1024));
    }
    # then it reads all of it: the same file as a fast client gets
    $buf = substr($buf, length($head) + 2);
    while (1) {
        my $n = sysread($sock, $buf, 1 << 20, length $buf);
        last unless $n;
    }
    close $sock;
    my $body = '';
    while ($buf =~ s/^([0-9a-fA-F]+)\r\n//) {
        my $n = hex $1;
        last if $n == 0;
        $body .= substr($buf, 0, $n, '');
        $buf =~ s/^\r\n//;
    }
    is(length $body, length $ev_body, 'slow: the whole recording arrived');
    is(sha256_hex($body), sha256_hex($ev_body), 'slow: byte for byte the file a fast client gets');
}


# --- input recorded ---------------------------------------------------------

$ws = ws_at('/session-in');
$c = $ws->wait_event('connected', 20);
ok($c, 'input on: connected');
my $id2 = $c->{session};
my $secret2 = 'pass-' . join('', map { ('a' .. 'z')[rand 26] } 1 .. 20);
password_prompt($ws, $secret2, 'input on');
# UTF-8 as it is in asciicast, what is not UTF-8 as U+FFFD; raw as it was
$ws->send_binary("printf 'u8:caf\\303\\251 \\342\\234\\223 \\377:end\\n'\n");
ok($ws->wait_for(sub { $ws->output =~ /u8:caf\xc3\xa9 \xe2\x9c\x93 \xff:end/ }, 10),
   'utf-8: printed');
$ws->send_binary("exit\n");
is($ws->wait_close(20), 1000, 'input on: the shell exits');
recorded($id2, 'input on');
my ($h2, @ev2) = cast($id2, 'input on');
my $in = data_of('i', @ev2);
like($in, qr/\Q$secret2\E\r?\n/, 'input on: the passphrase is in the input events');
like($in, qr/exit\n/, 'input on: so is what else was typed');
unlike(data_of('o', @ev2), qr/\Q$secret2\E/, 'input on: not in the output events');
like(data_of('o', @ev2), qr/u8:caf\xc3\xa9 \xe2\x9c\x93 \xef\xbf\xbd:end/,
     'utf-8: kept in asciicast, the byte that is not UTF-8 as U+FFFD');
like($admin->get("/api/sessions/$id2/recording?format=raw")->body,
     qr/u8:caf\xc3\xa9 \xe2\x9c\x93 \xff:end/, 'utf-8: raw has the bytes as they were');


# --- a window's redraw starts at the last full clear -------------------------

$ws = ws_at('/session');
$c = $ws->wait_event('connected', 20);
ok($c, 'clear: connected');
my $id4 = $c->{session};
# BEFORE-CLEAR, a clear screen, AFTER-CLEAR, then a second later LATER-ONE
# (octal escapes: the echoed command line holds none of the words)
my $oct = sub { join '', map { sprintf '\\%03o', ord } split //, shift };
$ws->send_binary("printf '" . $oct->('BEFORE-CLEAR') . "\\n\\033[H\\033[2J" . $oct->('AFTER-CLEAR')
                 . "\\n'; sleep 1.2; printf '" . $oct->('LATER-ONE') . "\\n'; exit\n");
is($ws->wait_close(20), 1000, 'clear: the shell exits');
recorded($id4, 'clear');
my (undef, @ev4) = cast($id4, 'clear');
my ($later) = grep { $_->[1] eq 'o' && $_->[2] =~ /LATER-ONE/ } @ev4;
ok($later, 'clear: the later output is recorded');
my $at = int($later->[0] * 1000 + 0.5);
my (undef, $redraw, @rest) = map { $JSON->decode($_) }
    split /\n/, $admin->get("/api/sessions/$id4/recording?from=$at")->body;
like($redraw->[2], qr/^\e\[H\e\[2J/, 'clear: the redraw starts at the clear (with its cursor home)');
like($redraw->[2], qr/AFTER-CLEAR/, 'clear: and has what came after it');
unlike($redraw->[2], qr/BEFORE-CLEAR/, 'clear: not what the clear wiped');
like(join('', map { $_->[2] } grep { $_->[1] eq 'o' } @rest), qr/LATER-ONE/,
     'clear: the window then has the later output');


# --- a live session: what is stored so far ---------------------------------

$ws = ws_at('/session');
$c = $ws->wait_event('connected', 20);
ok($c, 'live: connected');
my $id5 = $c->{session};
$ws->send_binary("printf '" . $oct->('LIVE-NOW') . "\\n'\n");
ok(SeguraTest::wait_for(sub {
    $dbh->selectrow_array(q{select count(*) from ssh_session_chunks
                            where session_id = ?}, undef, $id5)
}, 20), 'live: a chunk is stored while the session goes on');
my $live = eval { $admin->get("/api/sessions/$id5/recording?format=index")->json } || {};
ok($live->{live} && @{ $live->{chunks} || [] } >= 1, 'live: the index says live, with its chunks');
# the output is stored within about a second of being printed
ok(SeguraTest::wait_for(sub {
    $admin->get("/api/sessions/$id5/recording")->body =~ /LIVE-NOW/
}, 20), 'live: the recording so far is served, with what was printed');
$ws->send_binary("exit\n");
is($ws->wait_close(20), 1000, 'live: the shell exits');


# a title of the longest names (64 + 128 characters, 2 bytes each) whole
my $long = "\x{e9}" x 128;
$dbh->do('update ssh_sessions set device_name = ? where id = ?', undef,
         $long, $id2);   # DBD::Pg encodes it
my ($h2l) = cast($id2, 'long title');
is($h2l->{title}, "$h2->{title}" =~ s/\@.*//r . "\@$long", 'a long UTF-8 title, whole');


# --- not recorded -----------------------------------------------------------

$ws = ws_at('/session-off');
$c = $ws->wait_event('connected', 20);
ok($c, 'recording off: connected');
my $id3 = $c->{session};
$ws->send_binary("echo unrecorded; exit\n");
is($ws->wait_close(20), 1000, 'recording off: the shell exits');
ok(SeguraTest::wait_for(sub {
    $dbh->selectrow_array(q{select count(*) from ssh_sessions
                            where id = ? and ended_at is not null}, undef, $id3)
}, 20), 'recording off: the audit row is complete');
is($dbh->selectrow_array(q{select count(*) from ssh_session_recordings
                           where session_id = ?}, undef, $id3), 0,
   'recording off: no recording');
is($admin->get("/api/sessions/$id3/recording")->code, 404,
   'recording off: 404');


# --- who may replay ---------------------------------------------------------

my $user = SeguraTest::Api->new($t);
SeguraTest::Api::add_user($db, 'someone', 'someone-password-1');
is($user->login('someone', 'someone-password-1')->code, 200, 'a user logs in');
my $r = $user->get("/api/sessions/$id/recording");
is($r->code, 404, 'a user who is not an administrator gets 404');
is(eval { $r->json->{error}{code} }, 'not_found', 'with not_found');
is(SeguraTest::Api->new($t)->get("/api/sessions/$id/recording")->code, 401,
   'no login: 401');
$r = $admin->get("/api/sessions/$id/recording?format=mp4");
is($r->code, 422, 'an unknown format: 422');
is(eval { $r->json->{error}{field} }, 'format', 'field format');
is($admin->get('/api/sessions/00000000-0000-4000-8000-000000000000/recording')->code,
   404, 'an unknown session: 404');
is($admin->post("/api/sessions/$id/recording", {})->code, 405, 'POST: 405');


# --- the database holds nothing readable ----------------------------------------

my $dump = pg_dump();
like($dump, qr/COPY public\.ssh_session_chunks/, 'the dump has the chunks');
unlike($dump, qr/\Q$printed\E/, 'a marker the session printed is not in the dump');
unlike($dump, qr/\Q$secret\E/, 'a passphrase typed with input off is not in the dump');
unlike($dump, qr/\Q$secret2\E/, 'nor one typed with input on (sealed)');

SeguraTest::done();
