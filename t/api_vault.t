# Secrets at rest and in logs: after keys with passphrases are registered
# and replaced by API, pg_dump of the database holds neither any private
# key's body nor any passphrase, nor does the debug error log.
use strict;
use warnings;
use Test::More;
use SeguraTest;
use SeguraTest::Api;

my $t = SeguraTest->new(sshd => 1);
$t->run(<<'EOF2');
    server {
        listen 127.0.0.1:%%PORT%%;
        location /api/ { segura_api; }
    }
EOF2

my $db = $t->db;
SeguraTest::Api::add_user($db, 'root', 'root-password-1', admin => 1);
my $api = SeguraTest::Api->new($t);
is($api->login('root', 'root-password-1')->code, 200, 'admin logs in');

my @secrets;
my @keys = (
    [ 'rsa', type => 'rsa', bits => 2048, format => 'PEM', passphrase => 'pem passphrase one' ],
    [ 'ecdsa', type => 'ecdsa', passphrase => 'openssh passphrase two' ],
    [ 'ed', type => 'ed25519' ],
    [ 'rsa8', type => 'rsa', bits => 2048, format => 'PKCS8', passphrase => 'pkcs8 passphrase three' ],
);
my @ids;
for my $k (@keys) {
    my ($name, %o) = @$k;
    my ($path) = $t->sshd->keygen($name, %o);
    my $text = SeguraTest::slurp($path);
    my @body = grep { !/^-----|^Proc-Type|^DEK-Info|^\s*$/ } split /\n/, $text;
    push @secrets, @body[1 .. $#body - 1];
    push @secrets, $o{passphrase} if $o{passphrase};
    my $res = $api->post('/api/keys', { name => $name, username => 'u', private_key => $text,
                                        $o{passphrase} ? (passphrase => $o{passphrase}) : () });
    is($res->code, 201, "$name registered") or diag($res->body);
    push @ids, $res->json->{id};
    # a refused attempt with the same material must not leak it either
    $api->post('/api/keys', { name => $name, username => 'u', private_key => $text,
                              passphrase => 'wrong passphrase for the log' });
}
push @secrets, 'wrong passphrase for the log';
$t->canary(@secrets);

# replace one key in place
my ($path) = $t->sshd->keygen('again', type => 'ed25519', passphrase => 'patched passphrase four');
my $text = SeguraTest::slurp($path);
push @secrets, 'patched passphrase four', (grep { !/^-----/ } split /\n/, $text)[1];
$t->canary('patched passphrase four', (grep { !/^-----/ } split /\n/, $text)[1]);
is($api->patch("/api/keys/$ids[2]", { private_key => $text, passphrase => 'patched passphrase four' })->code,
   200, 'key replaced');

# pg_dump of the whole database
my @dump = sort { ($a =~ m{/(\d+)/})[0] <=> ($b =~ m{/(\d+)/})[0] }
           glob '/usr/lib/postgresql/*/bin/pg_dump';
my $pg_dump = $ENV{PG_DUMP} || $dump[-1] || 'pg_dump';
my ($rc, $out, $err) = SeguraTest::Pg::run($pg_dump, '-d', $db->conninfo);
is($rc, 0, 'pg_dump ran') or diag($err);
ok(length $out > 1000, 'the dump has content');
like($out, qr/ssh_keys/, 'the dump has the keys table');
# the OpenSSH format repeats the public key, which is stored in the clear:
# a line of it that lines up with the public_key column is not a secret
my $public = join "\n", map { $_->[0] }
    @{ $db->dbh->selectall_arrayref('select public_key from ssh_keys') };
@secrets = grep { index($public, $_) < 0 } @secrets;
ok(@secrets > 20, 'enough secret lines to look for');
my @found = grep { index($out, $_) >= 0 } @secrets;
is(scalar @found, 0, 'no key body or passphrase in pg_dump')
    or diag('found: ' . join(', ', map { substr($_, 0, 10) . '...' } @found));

# the error log at debug level (the canaries are checked by done())
$t->stop;
my $log = SeguraTest::slurp($t->error_log);
like($log, qr/\[debug\]/, 'the log is at debug level');

SeguraTest::done();
