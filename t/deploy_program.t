# The fixed programs that deploy and withdraw run on a device
# (ngx_segura_module/ngx_segura_deploy_program.h), run here directly, as a
# throwaway user, under dash and bash as the login shell: the cases the
# API test does not reach (an empty file, a read-only ~/.ssh, a line that
# is not a key, shell syntax in the key's comment, a file that is a
# symbolic link).
use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use POSIX ();
use SeguraTest;
use SeguraTest::LoginUser;

plan skip_all => 'needs root (a throwaway login user)' unless $> == 0;

# the commands, printed by a tiny C program that includes the header
my $dir = tempdir('segura-deploy-prog-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $dir;
open my $c, '>', "$dir/print.c" or die $!;
print $c <<'C';
#include <stdio.h>
#include "ngx_segura_deploy_program.h"
int main(int argc, char **argv) {
    fputs(argc > 1 ? NGX_SEGURA_DEPLOY_REMOVE_COMMAND
                   : NGX_SEGURA_DEPLOY_ADD_COMMAND, stdout);
    return 0;
}
C
close $c;
system('cc', '-Wall', '-Werror', "-I$SeguraTest::TOP/ngx_segura_module",
       '-o', "$dir/print", "$dir/print.c") == 0 or die 'cc failed';
my $add = `$dir/print`;
my $remove = `$dir/print remove`;
for ([add => $add], [remove => $remove]) {
    my ($what, $cmd) = @$_;
    is(($cmd =~ tr/'//), 2, "$what: one quoted program, no quote in it");
    unlike($cmd, qr/\n/, "$what: one line");
}

{
    package Stub;
    sub dir { $_[0]{dir} }
}
my $user = SeguraTest::LoginUser->new(bless { dir => $dir }, 'Stub');
my $home = $user->home;
my $ssh = "$home/.ssh";
my $file = "$ssh/authorized_keys";
my ($uid, $gid) = (getpwnam($user->name))[2, 3];

# runs a command as the user, its login shell $shell, the line on stdin
sub run_as {
    my ($shell, $cmd, $stdin) = @_;
    pipe(my $in_r, my $in_w) or die $!;
    pipe(my $out_r, my $out_w) or die $!;
    pipe(my $err_r, my $err_w) or die $!;
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        close $in_w; close $out_r; close $err_r;
        open STDIN, '<&', $in_r or POSIX::_exit(126);
        open STDOUT, '>&', $out_w or POSIX::_exit(126);
        open STDERR, '>&', $err_w or POSIX::_exit(126);
        POSIX::setgid($gid);
        POSIX::setuid($uid) or POSIX::_exit(126);
        $ENV{HOME} = $home;
        chdir '/';
        { exec $shell, '-c', $cmd }
        POSIX::_exit(127);
    }
    close $in_r; close $out_w; close $err_w;
    print $in_w $stdin;
    close $in_w;
    local $/;
    my $out = <$out_r> // '';
    my $err = <$err_r> // '';
    waitpid($pid, 0);
    return ($? >> 8, $out, $err);
}

sub mode { sprintf '%04o', (stat $_[0])[2] & 07777 }
sub put {
    my ($text, $mode) = @_;
    open my $fh, '>', $file or die $!;
    print $fh $text;
    close $fh;
    chown $uid, $gid, $file;
    chmod $mode // 0600, $file;
}
sub fresh { system('rm', '-rf', $ssh) }

my $line = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDeployProgramTest segura-key-9';

for my $shell ('/usr/bin/dash', '/usr/bin/bash') {
    my $sh = (split m{/}, $shell)[-1];
    my @r;

    fresh();
    @r = run_as($shell, $add, "$line\n");
    is_deeply([@r[0, 1]], [0, "deployed\n"], "$sh: deployed") or diag($r[2]);
    is(mode($ssh), '0700', "$sh: ~/.ssh 0700");
    is(mode($file), '0600', "$sh: the file 0600");
    is(SeguraTest::slurp($file), "$line\n", "$sh: one line");
    is((stat $file)[4], $uid, "$sh: the user's file");

    @r = run_as($shell, $add, "$line\n");
    is_deeply([@r[0, 1]], [0, "unchanged\n"], "$sh: unchanged");
    is(SeguraTest::slurp($file), "$line\n", "$sh: still one line");

    put('', 0644);
    @r = run_as($shell, $add, "$line\n");
    is($r[1], "deployed\n", "$sh: into an empty file");
    is(SeguraTest::slurp($file), "$line\n", "$sh: no blank line first");
    is(mode($file), '0644', "$sh: its mode kept");

    put("# a\n\nssh-rsa AAAA x\n$line\n# z");
    @r = run_as($shell, $remove, "$line\n");
    is_deeply([@r[0, 1]], [0, "withdrawn\n"], "$sh: withdrawn") or diag($r[2]);
    is(SeguraTest::slurp($file), "# a\n\nssh-rsa AAAA x\n# z\n",
       "$sh: only that line went");
    @r = run_as($shell, $remove, "$line\n");
    is($r[1], "unchanged\n", "$sh: withdraw again: unchanged");
    unlink $file;
    @r = run_as($shell, $remove, "$line\n");
    is($r[1], "unchanged\n", "$sh: no file: unchanged");
    ok(!-e $file, "$sh: and no file made");

    # a line that is not a key, and a comment full of shell syntax
    fresh();
    @r = run_as($shell, $add, "rm -rf ~\n");
    is($r[0], 1, "$sh: not a key line: status 1");
    like($r[2], qr/^segura: not a key line$/m, "$sh: and says why");
    ok(!-e $ssh, "$sh: and changes nothing");
    my $mark = "$home/pwned";
    my $evil = "ssh-ed25519 AAAA \$(touch $mark) `touch $mark` ; touch $mark '\"";
    @r = run_as($shell, $add, "$evil\n");
    is($r[1], "deployed\n", "$sh: a comment with shell syntax is data");
    is(SeguraTest::slurp($file), "$evil\n", "$sh: written as it is");
    ok(!-e $mark, "$sh: nothing in it ran");
    @r = run_as($shell, $remove, "$evil\n");
    is($r[1], "withdrawn\n", "$sh: and withdrawn");

    # ~/.ssh the user may not write: a clear failure, nothing left behind
    put("ssh-rsa AAAA other\n");
    chmod 0500, $ssh;
    @r = run_as($shell, $add, "$line\n");
    is($r[0], 1, "$sh: read-only ~/.ssh: status 1");
    like($r[2], qr/^segura: cannot create a file in /m, "$sh: and says why");
    chmod 0700, $ssh;
    is(SeguraTest::slurp($file), "ssh-rsa AAAA other\n", "$sh: file unchanged");
    is(scalar(() = glob("$ssh/.authorized_keys.*")), 0, "$sh: no temp file");

    # a symbolic link is replaced by a regular file with the same lines
    rename $file, "$home/real_keys";
    symlink "$home/real_keys", $file;
    @r = run_as($shell, $add, "$line\n");
    is($r[1], "deployed\n", "$sh: through a symbolic link");
    ok(!-l $file && -f $file, "$sh: now a regular file");
    is(SeguraTest::slurp($file), "ssh-rsa AAAA other\n$line\n",
       "$sh: the old lines and ours");
    unlink "$home/real_keys";
}

my $name = $user->name;
$user->remove;
ok(!defined getpwnam($name), 'the throwaway user is gone');

done_testing();
