# The Debian package: tools/mkdeb.sh (make deb) builds
# libnginx-mod-http-segura_<version>_<arch>.deb, lintian finds no error in
# it, its dependencies are installed packages of this Debian, dpkg installs
# it into a root of the test's own (--instdir, the machine's own root is not
# touched) the way libnginx-mod-* install, nginx -t loads the installed
# module through modules-available, and dpkg removes and purges it cleanly.
use strict;
use warnings;
use Test::More;
use File::Find;
use File::Path qw(make_path);
use SeguraTest;

my $t = SeguraTest->new(no_db => 1);
my $dir = $t->dir;
my $module = $ENV{MODULE} || "$SeguraTest::TOP/build/ngx_http_segura_module.so";
my $nginx = $ENV{NGINX_BIN} || '/usr/sbin/nginx';

# --- build ---------------------------------------------------------------

my $deb = `$SeguraTest::TOP/tools/mkdeb.sh $module $dir/out 2>&1`;
is($?, 0, 'mkdeb.sh builds the package') or diag($deb);
chomp $deb;
($deb) = grep { /\.deb$/ } split /\n/, $deb;
like($deb // '', qr{/libnginx-mod-http-segura_\d+\.\d+\.\d+-1_\w+\.deb$}, 'named as libnginx-mod-* are');

my %f = map { chomp; split /: /, $_, 2 } grep { /^\S+: / }
        `dpkg-deb -f $deb Package Version Architecture Depends Section`;
is($f{Package}, 'libnginx-mod-http-segura', 'package name');
like($f{Depends}, qr/^nginx-abi-[\w.-]+/, 'depends on the nginx ABI it was built for');
my ($abi) = $f{Depends} =~ /^(nginx-abi-[^,\s]+)/;
ok(!system("dpkg-query -W -f='\${Provides}' nginx 2>/dev/null | grep -q -- '$abi'"),
   "the installed nginx provides $abi");
for my $dep (map { s/\s*\(.*//r } grep { !/^nginx-abi-/ } split /,\s*/, $f{Depends}) {
    my $st = `dpkg-query -W -f='\${Status}' $dep 2>/dev/null`;
    like($st, qr/install ok installed/, "dependency $dep is a package of this system");
}

my @files = map { (split ' ', $_, 6)[5] } `dpkg-deb -c $deb`;
chomp @files;
my %has = map { s{^\./}{/}r => 1 } @files;
for my $p ('/usr/lib/nginx/modules/ngx_http_segura_module.so',
           '/usr/share/nginx/modules-available/mod-http-segura.conf',
           '/usr/share/segura/html/index.html', '/usr/share/segura/html/vendor/xterm/xterm.js',
           '/usr/share/segura/sql/001_init.sql', '/usr/share/segura/bin/segura-migrate',
           '/usr/sbin/segura-passwd', '/usr/share/segura/ui-headers.conf',
           '/usr/share/doc/libnginx-mod-http-segura/copyright',
           '/usr/share/doc/libnginx-mod-http-segura/docs/directives.md',
           '/usr/share/doc/libnginx-mod-http-segura/examples/segura-site.conf') {
    ok($has{$p}, "ships $p");
}
ok(!(grep { m{/package(-lock)?\.json$} } @files), 'no npm manifests in the UI');

# --- lintian ----------------------------------------------------------------

my $lint = `lintian --fail-on error --no-tag-display-limit $deb 2>&1`;
is($?, 0, 'lintian: no error') or diag($lint);
my @errors = $lint =~ /^(E: .*)$/mg;
is_deeply(\@errors, [], 'lintian reports no E: line');

# --- install into a root of our own --------------------------------------------

my $system_link = '/etc/nginx/modules-enabled/50-mod-http-segura.conf';
my $system_before = -l $system_link ? 1 : 0;
my $root = "$dir/root";
make_path("$root/var/lib/dpkg/info", "$root/var/lib/dpkg/updates",
          "$root/etc/nginx/modules-enabled");
open my $fh, '>', "$root/var/lib/dpkg/status" or die $!;
close $fh;
my @dpkg = ('dpkg', "--admindir=$root/var/lib/dpkg", "--instdir=$root",
            '--force-script-chrootless', '--force-depends', '--log=/dev/null');
push @dpkg, '--force-not-root' if $> != 0;

my $out = `@dpkg -i $deb 2>&1`;
is($?, 0, 'dpkg -i into the test root') or diag($out);
ok(-f "$root/usr/lib/nginx/modules/ngx_http_segura_module.so", 'the module is installed');
my $link = readlink "$root/etc/nginx/modules-enabled/50-mod-http-segura.conf";
is($link, '/usr/share/nginx/modules-available/mod-http-segura.conf',
   'postinst enables it in modules-enabled, as libnginx-mod-* do');
is(-l $system_link ? 1 : 0, $system_before, 'the machine\'s own /etc/nginx is not touched');
is(`@dpkg -s libnginx-mod-http-segura 2>&1` =~ /^Status: install ok installed/m ? 1 : 0, 1,
   'dpkg records it as installed');

# nginx -t loads the installed module the way Debian's nginx.conf does
make_path("$dir/prefix/logs", "$dir/prefix/conf");
symlink "$root/usr/lib/nginx/modules", "$dir/prefix/modules" or die $!;
open $fh, '>', "$dir/prefix/conf/nginx.conf" or die $!;
print $fh $t->expand(<<"EOF");
include $root/usr/share/nginx/modules-available/mod-http-segura.conf;
pid logs/nginx.pid;
error_log logs/error.log;
thread_pool segura threads=2;
events { }
http {
    client_body_temp_path logs/client_body;
    segura_database    "host=/nonexistent dbname=segura";
    segura_master_key  %%MASTER_KEY%%;
    segura_thread_pool segura;
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /session { segura_session; }
        location /api/      { segura_api; }
        location /          { root $root/usr/share/segura/html;
                              include $root/usr/share/segura/ui-headers.conf; }
    }
}
EOF
close $fh;
{
    my %env = $t->nginx_env(1);
    local @ENV{ keys %env } = values %env;
    $out = `$nginx -p $dir/prefix/ -c conf/nginx.conf -e logs/error.log -t 2>&1`;
}
is($?, 0, 'nginx -t loads the installed module and its example configuration')
    or diag($out);

# the tools work from where they are installed
my $hash = `printf 'a-password-1\\n' | $root/usr/sbin/segura-passwd`;
like($hash, qr/^\$argon2id\$/, 'segura-passwd from the package hashes');
$out = `$root/usr/share/segura/bin/segura-migrate 2>&1`;
like($out, qr/usage: /, 'segura-migrate from the package runs');

# --- remove, purge ------------------------------------------------------------

$out = `@dpkg -r libnginx-mod-http-segura 2>&1`;
is($?, 0, 'dpkg -r') or diag($out);
ok(!-e "$root/usr/lib/nginx/modules/ngx_http_segura_module.so", 'the module is gone');
ok(!-l "$root/etc/nginx/modules-enabled/50-mod-http-segura.conf", 'and its modules-enabled link');
$out = `@dpkg --purge libnginx-mod-http-segura 2>&1`;
is($?, 0, 'dpkg --purge') or diag($out);
my @left;
# dpkg removes the directories it emptied: look only where something is left
my @dirs = grep { -d } ("$root/usr", "$root/etc");
find(sub { push @left, $File::Find::name if -f || -l }, @dirs) if @dirs;
is_deeply(\@left, [], 'nothing of the package is left');

SeguraTest::done();
