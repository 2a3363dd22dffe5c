#!/usr/bin/perl
# The Debian package (make deb): what it holds and depends on, then dpkg -i
# into this machine's own Debian nginx, nginx -t with the system's
# configuration and with the example site, segura-migrate as installed on an
# empty database, and a clean removal and purge.
#
# It installs for real (dpkg -i), so it touches only what the package owns
# (/usr/lib/nginx/modules, /usr/share/{nginx,segura}, /usr/sbin/segura-*,
# the modules-enabled link) and leaves a machine where the package was
# already installed alone.

use strict;
use warnings;

use Test::More;
use File::Temp ();

use SeguraTest;
use SeguraTest::Pg;

my $ROOT = SeguraTest::Pg::root();
my $PKG  = 'libnginx-mod-http-segura';

my ($version) = SeguraTest::slurp("$ROOT/ngx_segura_module/ngx_segura.h")
    =~ /#define NGX_SEGURA_VERSION\s+"([^"]+)"/;
my $deb = "$ROOT/build/deb/${PKG}_${version}_amd64.deb";

BAIL_OUT("$deb is missing: make test builds it (make deb)") unless -f $deb;

plan skip_all => 'dpkg -i needs root' if $> != 0;

sub sh {
    my ($cmd) = @_;
    my $out = `$cmd 2>&1`;
    return ($? >> 8, $out);
}

my ($rc, $status) = sh("dpkg-query -W -f='\${Status}' $PKG");
plan skip_all => "$PKG is installed on this machine: not touching it"
    if $rc == 0 && $status =~ /\binstalled\b/ && $status !~ /not-installed/;

# what it holds

my ($irc, $info) = sh("dpkg-deb -f $deb Package Version Architecture Depends");
is($irc, 0, 'dpkg-deb reads the package');
like($info, qr/^Package: \Q$PKG\E$/m, 'its name');
like($info, qr/^Version: \Q$version\E$/m, 'the module version');
like($info, qr/^Depends:.*\bnginx-abi-1\.22\.1-\d+\b/m,
     "it depends on the nginx ABI it was built for");
like($info, qr/^Depends:.*\blibssh-4\b.*/m, 'and on the libraries it links');

my ($crc, $list) = sh("dpkg-deb -c $deb");
for my $path (qw(/usr/lib/nginx/modules/ngx_http_segura_module.so
                 /usr/share/nginx/modules-available/mod-http-segura.conf
                 /usr/share/segura/html/index.html
                 /usr/share/segura/html/vendor/xterm/xterm.js
                 /usr/share/segura/ui-headers.conf
                 /usr/share/segura/sql/001_init.sql
                 /usr/share/segura/bin/segura-migrate
                 /usr/sbin/segura-migrate
                 /usr/sbin/segura-passwd
                 /usr/sbin/segura-vault
                 /usr/share/doc/libnginx-mod-http-segura/copyright
                 /usr/share/doc/libnginx-mod-http-segura/examples/segura-site.conf))
{
    like($list, qr/ \.\Q$path\E( ->|$)/m, "it holds $path");
}

unlike($list, qr/package(-lock)?\.json|node_modules/,
       'no npm metadata in the UI');

# a purge on every way out, whatever happened

my $installed = 0;
END { system("dpkg -P $PKG >/dev/null 2>&1") if $installed }

($rc, my $out) = sh("dpkg -i $deb");
is($rc, 0, 'dpkg -i installs it') or diag $out;
$installed = 1;

ok(-f '/usr/lib/nginx/modules/ngx_http_segura_module.so',
   'the module is in nginx\'s module directory');
my $link = '/etc/nginx/modules-enabled/50-mod-http-segura.conf';
is(readlink($link), '/usr/share/nginx/modules-available/mod-http-segura.conf',
   'and enabled the way libnginx-mod-* packages are');

($rc, $out) = sh('nginx -t');
is($rc, 0, "Debian's nginx loads it with the system configuration")
    or diag $out;

# the example site, with its paths made this test's own

my $tmp = File::Temp->newdir('segura-pkg-XXXXXX', TMPDIR => 1);
my $dir = $tmp->dirname;
chmod 0700, $dir;
open my $kf, '>', "$dir/master.key" or die $!;
print $kf "k" x 32;
close $kf;
chmod 0600, "$dir/master.key";

my $site = SeguraTest::slurp(
    '/usr/share/doc/libnginx-mod-http-segura/examples/segura-site.conf');
$site =~ s{/etc/segura/master\.key}{$dir/master.key}g;
$site =~ s{listen 443 ssl;}{listen 127.0.0.1:1;}g;
$site =~ s{^\s*ssl_certificate.*$}{}mg;

open my $cf, '>', "$dir/nginx.conf" or die $!;
print $cf <<"EOF";
include /etc/nginx/modules-enabled/*.conf;
pid $dir/nginx.pid;
error_log $dir/error.log;
thread_pool segura threads=4;
events { worker_connections 64; }
http {
    include /etc/nginx/mime.types;
    access_log off;
    client_body_temp_path $dir/client_body;
$site
}
EOF
close $cf;

($rc, $out) = sh("nginx -t -c $dir/nginx.conf");
is($rc, 0, 'the example site passes nginx -t') or diag $out;

my $db = SeguraTest::Pg->new_database(empty => 1);
($rc, $out) = sh("/usr/sbin/segura-migrate '" . $db->conninfo . "'");
is($rc, 0, 'segura-migrate as installed applies the schema') or diag $out;
like($out, qr/applied 001_init/, 'from /usr/share/segura/sql');

# removal, then purge

($rc, $out) = sh("dpkg -r $PKG");
is($rc, 0, 'dpkg -r removes it') or diag $out;
ok(!-e '/usr/lib/nginx/modules/ngx_http_segura_module.so', 'the module went');
ok(!-l $link, 'and its modules-enabled link');
ok(!-e '/usr/sbin/segura-migrate', 'and the tools');

($rc, $out) = sh('nginx -t');
is($rc, 0, 'nginx -t passes without it') or diag $out;

($rc, $out) = sh("dpkg -P $PKG");
is($rc, 0, 'dpkg -P purges it') or diag $out;
$installed = 0;

($rc, $status) = sh("dpkg-query -W -f='\${Status}' $PKG");
unlike($status, qr/\binstalled\b(?<!not-installed)/, 'nothing of it is left')
    or diag $status;
ok(!-d '/usr/share/segura', 'no directory of it is left');

done_testing;
