package SeguraTest::Session;

# Fixtures for /session tests: a real key sealed by the vault's own code
# (build/segura-vault), a device pointing at the test's sshd, a user with
# a login cookie, and a group granting all of it.
#
#   my $f = SeguraTest::Session::fixture($t, type => 'ed25519');
#   my $ws = SeguraTest::Session::open_ws($t, $f);

use strict;
use warnings;

use DBD::Pg qw(:pg_types);
use MIME::Base64;
use Test::More;

use SeguraTest;
use SeguraTest::WS;

our $SERIAL = 0;

sub random_token { SeguraTest::random_bytes(32) }

sub cookie_for {
    my ($token) = @_;
    my $c = encode_base64($token, '');
    $c =~ tr{+/}{-_};
    $c =~ s/=+$//;
    return "segura_session=$c";
}

sub seal {
    my ($t, $aad, $secret) = @_;
    my $tool = "$SeguraTest::TOP/build/segura-vault";
    my $file = $t->dir . "/seal.$$";
    open my $fh, '>:raw', $file or die $!;
    print $fh $secret;
    close $fh;
    my $hex = `$tool seal @{[ $t->master_key_file ]} 1 '$aad' < $file`;
    unlink $file;
    die "segura-vault failed" if $? || $hex !~ /^\\x([0-9a-f]+)$/;
    return pack('H*', $1);
}

# registers the private key at $path (with $passphrase) as an ssh_keys row
sub register_key {
    my ($t, $path, %o) = @_;
    my $db = $t->db;
    my $dbh = $db->dbh;

    my $priv = SeguraTest::slurp($path);
    my $pub = SeguraTest::slurp("$path.pub");
    $pub =~ s/\s+$//;
    my ($type, $b64) = split ' ', $pub;
    my $fp = `ssh-keygen -lf $path.pub`;
    my ($bits, $sha) = $fp =~ /^(\d+) (SHA256:\S+)/;

    my ($id) = $dbh->selectrow_array(
        q{select nextval(pg_get_serial_sequence('ssh_keys', 'id'))});

    my $penc = seal($t, "ssh_keys/$id/private_key", $priv);
    my $ppass = defined $o{passphrase}
                ? seal($t, "ssh_keys/$id/passphrase", $o{passphrase}) : undef;

    my $sth = $dbh->prepare(q{
        insert into ssh_keys (id, name, status, username, key_type, bits,
                              public_key, fingerprint, private_key_enc,
                              passphrase_enc)
        overriding system value
        values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)});
    $sth->bind_param(9, undef, { pg_type => PG_BYTEA });
    $sth->bind_param(10, undef, { pg_type => PG_BYTEA });
    $sth->execute($id, $o{name} // 'key-' . ++$SERIAL . "-$$",
                  $o{status} // 'active', $o{username} // $t->sshd->user,
                  $type, $bits, "$type $b64", $sha, $penc, $ppass);

    $t->canary($b64 ? substr(join('', grep { !/^-/ } split /\n/, $priv), 0, 60) : ());
    $t->canary($o{passphrase}) if defined $o{passphrase};

    return $id;
}

# everything a session needs; options: type, bits, format, passphrase,
# authorize (default 1), perms (hashref), no_group, host_key (pin)
sub fixture {
    my ($t, %o) = @_;
    my $db = $t->db;
    my $sshd = $t->sshd;

    my $name = 'k' . ++$SERIAL;
    my ($path) = $sshd->keygen($name, type => $o{type} // 'ed25519',
                               bits => $o{bits}, format => $o{format},
                               passphrase => $o{passphrase});

    $sshd->authorize(SeguraTest::slurp("$path.pub"))
        unless defined $o{authorize} && !$o{authorize};

    my $key = register_key($t, $path, passphrase => $o{passphrase});

    my $device = $db->insert_device(address => '127.0.0.1',
                                    port => $o{port} // $sshd->port,
                                    ($o{host_key}
                                     ? (host_key => $o{host_key}{line},
                                        host_key_fingerprint => $o{host_key}{fp})
                                     : ()));

    my $user = $db->insert_user;
    my $token = random_token();
    $db->insert_web_session(user => $user, token => $token);

    $db->associate(key => $key, device => $device, main => 1);

    unless ($o{no_group}) {
        my $g = $db->insert_group(%{ $o{perms} || {} });
        $db->grant(group => $g, members => [$user], keys => [$key],
                   devices => [$device]);
    }

    return { key => $key, device => $device, user => $user, token => $token,
             cookie => cookie_for($token), path => $path };
}

sub open_ws {
    my ($t, $f, %o) = @_;
    my $q = "/session?key=" . ($o{key} // $f->{key})
            . "&device=" . ($o{device} // $f->{device})
            . ($o{query} // '');
    return SeguraTest::WS->connect($t->port, $q, Cookie => $f->{cookie},
                                   %{ $o{headers} || {} });
}

# opens a session and checks that it lives: the connected event, an echo,
# and its audit row (which the outbox writes a moment after the event);
# returns the WebSocket and the session id.  Options: those of open_ws,
# and db (where the row is, for a node without a database of its own)
sub live {
    my ($t, $f, $what, %o) = @_;
    my $db = delete $o{db} // $t->db;    # another node's, if need be
    my $ws = open_ws($t, $f, %o);
    my $c = $ws->wait_event('connected', 20);
    ok($c, "$what: a session starts")
        or diag(explain($ws->{json} // $ws->{status}));
    $ws->send_binary("echo alive-$what\n");
    ok($ws->wait_for(sub { $ws->output =~ /alive-\Q$what\E\r?\n/ }, 10),
       "$what: its shell answers");
    my $id = $c ? $c->{session} : '';
    ok(SeguraTest::wait_for(sub {
        eval { $db->dbh->selectrow_array(
            'select count(*) from ssh_sessions where id = ?', undef, $id) }
    }, 10), "$what: its audit row is written");
    return ($ws, $id);
}

sub config {
    my ($extra) = @_;
    $extra //= '';
    return <<"EOF";
    server {
        listen 127.0.0.1:%%PORT%%;
        $extra
        location = /session { segura_session; }
        location /api/ { segura_api; }
        location = /static { return 200 "static\\n"; }
    }
EOF
}

1;
