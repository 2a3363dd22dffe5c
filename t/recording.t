# Recording: a session's output, resizes and markers are stored in
# PostgreSQL as sealed chunks of at most 64 KiB of events; nothing printed
# or typed is readable in a dump of the database.
use strict;
use warnings;
use Test::More;
use Digest::SHA qw(sha256_hex);
use Encode ();
use JSON::PP;
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


# --- a few MiB of random base64, two resizes --------------------------------

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

$ws->send_binary("head -c 3000000 /dev/urandom | base64; printf '$octal\\n'; "
                 . "printf '\\105\\116\\104\\n'\n");
ok($ws->wait_for(sub { $ws->output =~ /\r?\nEND\r?\n/ }, 120),
   'bulk: the stream arrived');
like($ws->output, qr/\Q$printed\E/, 'bulk: the printed marker arrived');

my $secret = 'pass-' . join('', map { ('a' .. 'z')[rand 26] } 1 .. 20);
password_prompt($ws, $secret, 'input off');

$ws->send_binary("exit 7\n");
is($ws->wait_close(20), 1000, 'bulk: the shell exits');
my $received = $ws->output;
ok(length($received) > 4_000_000, 'bulk: more than 4 MB went to the client');
recorded($id, 'bulk');

my $chunks = $dbh->selectrow_array(
    'select count(*) from ssh_session_chunks where session_id = ?', undef, $id);
ok($chunks >= 4_000_000 / 65536, "bulk: stored in chunks of at most 64 KiB ($chunks)");
my $bad = $dbh->selectrow_array(q{select count(*) from ssh_session_chunks
                                  where session_id = ? and plain_size > 65536},
                                undef, $id);
is($bad, 0, 'bulk: no chunk holds more than 64 KiB of events');
my ($stored, $plain) = $dbh->selectrow_array(q{select sum(length(data)),
    sum(plain_size) from ssh_session_chunks where session_id = ?}, undef, $id);
diag(sprintf('%d output bytes, %d event bytes stored as %d (%.3f per output byte)',
             length $received, $plain, $stored, $stored / length $received));

# --- input recorded ---------------------------------------------------------

$ws = ws_at('/session-in');
$c = $ws->wait_event('connected', 20);
ok($c, 'input on: connected');
my $id2 = $c->{session};
my $secret2 = 'pass-' . join('', map { ('a' .. 'z')[rand 26] } 1 .. 20);
password_prompt($ws, $secret2, 'input on');
$ws->send_binary("exit\n");
is($ws->wait_close(20), 1000, 'input on: the shell exits');
recorded($id2, 'input on');


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


# --- the database holds nothing readable ----------------------------------------

my $dump = pg_dump();
like($dump, qr/COPY public\.ssh_session_chunks/, 'the dump has the chunks');
unlike($dump, qr/\Q$printed\E/, 'a marker the session printed is not in the dump');
unlike($dump, qr/\Q$secret\E/, 'a passphrase typed with input off is not in the dump');
unlike($dump, qr/\Q$secret2\E/, 'nor one typed with input on (sealed)');

SeguraTest::done();
