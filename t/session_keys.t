# Every kind of key an administrator has opens a session: RSA in PEM
# (ssh-keygen -m PEM), PKCS#8, OpenSSH-format Ed25519 and ECDSA, and a
# passphrase-protected key.
use strict;
use warnings;
use Test::More;
use SeguraTest;
use SeguraTest::Session;

my $t = SeguraTest->new(sshd => 1);
$t->run(SeguraTest::Session::config());

my @cases = (
    [ 'RSA PEM',                 type => 'rsa', bits => 2048, format => 'PEM' ],
    [ 'RSA PKCS#8',              type => 'rsa', bits => 3072, format => 'PKCS8' ],
    [ 'Ed25519 OpenSSH',         type => 'ed25519' ],
    [ 'ECDSA P-256',             type => 'ecdsa', bits => 256 ],
    [ 'ECDSA P-384 PEM',         type => 'ecdsa', bits => 384, format => 'PEM' ],
    [ 'RSA PEM with passphrase', type => 'rsa', bits => 2048, format => 'PEM',
                                 passphrase => 'correct horse battery' ],
    [ 'Ed25519 with passphrase', type => 'ed25519', passphrase => 'pa55-phrase!' ],
);

for my $case (@cases) {
    my ($name, %o) = @$case;
    my $f = SeguraTest::Session::fixture($t, %o);
    my $ws = SeguraTest::Session::open_ws($t, $f);
    ok($ws->wait_event('connected', 20), "$name: connected")
        or diag(explain [$ws->events]);
    $ws->send_binary("echo key-\$((6*7))\n");
    ok($ws->wait_for(sub { $ws->output =~ /key-42/ }, 10), "$name: the shell answers");
    $ws->send_binary("exit\n");
    is($ws->wait_close(10), 1000, "$name: closed with 1000");
}

unlike(SeguraTest::slurp($t->error_log), qr/\[error\]/, 'no [error] in the log');

SeguraTest::done();
