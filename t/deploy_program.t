# The fixed programs that deploy, withdraw and rotate run on a device
# (ngx_segura_module/ngx_segura_deploy_program.h), run here directly, as a
# throwaway user, under dash and bash as the login shell: the cases the
# API tests do not reach (an empty file, a read-only ~/.ssh, a line that
# is not a key, shell syntax in the key's comment, a file that is a
# symbolic link), and REMOVE_KEY, which takes out every line of a key
# whatever its options and comment (options, CRLF, copies, comments that
# name the key, a rename that fails, an awk that loses output).
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
#include <string.h>
#include "ngx_segura_deploy_program.h"
int main(int argc, char **argv) {
    fputs(argc == 1 ? NGX_SEGURA_DEPLOY_ADD_COMMAND
          : strcmp(argv[1], "remove-key") == 0
          ? NGX_SEGURA_DEPLOY_REMOVE_KEY_COMMAND
          : NGX_SEGURA_DEPLOY_REMOVE_COMMAND, stdout);
    return 0;
}
C
close $c;
system('cc', '-Wall', '-Werror', "-I$SeguraTest::TOP/ngx_segura_module",
       '-o', "$dir/print", "$dir/print.c") == 0 or die 'cc failed';
my $add = `$dir/print`;
my $remove = `$dir/print remove`;
my $remove_key = `$dir/print remove-key`;
isnt($remove_key, $remove, 'remove-key is its own program');
for ([add => $add], [remove => $remove], ['remove-key' => $remove_key]) {
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
# ($path: another PATH)
sub run_as {
    my ($shell, $cmd, $stdin, $path) = @_;
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
        $ENV{PATH} = $path if defined $path;
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

# REMOVE_KEY: every line of the old key goes, whatever its options and
# comment; everything else stays byte for byte
my $old = 'AAAAC3NzaC1lZDI1NTE5AAAAIOldKeyOfTheRotationTest';
my $new = 'AAAAC3NzaC1lZDI1NTE5AAAAINewKeyOfTheRotationTest';
my $other = 'AAAAC3NzaC1lZDI1NTE5AAAAIAnotherKeyOfThisUser';
my $old_in = "ssh-ed25519 $old segura-key-9\n";
my $kept = "# ssh-ed25519 $old the old key, in a comment\n"
    . "\n"
    . "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQOther rsa\n"
    . "ssh-ed25519 $other same type, another blob\n"
    . "command=\"echo $old\" ssh-ed25519 $other the blob in an option\n"
    . "ssh-ed25519 $other says $old\n"
    . "ssh-rsa $old the blob with another type\n"
    . "ssh-ed25519 $other crlf\r\n"
    . "  # ssh-ed25519 $old an indented comment\n";

for my $shell ('/usr/bin/dash', '/usr/bin/bash') {
    my $sh = (split m{/}, $shell)[-1];
    my @r;

    fresh();
    mkdir $ssh, 0700;
    chown $uid, $gid, $ssh;
    put("from=\"1.2.3.4\",no-pty ssh-ed25519 $old c\n"
        . "# ssh-ed25519 $old the old key, in a comment\n"
        . "ssh-ed25519 $old segura-key-9\n"
        . "\n"
        . "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQOther rsa\n"
        . "ssh-ed25519 $old another comment\n"
        . "ssh-ed25519 $other same type, another blob\n"
        . "ssh-ed25519 $old\r\n"
        . "command=\"echo $old\" ssh-ed25519 $other the blob in an option\n"
        . "ssh-ed25519 $other says $old\n"
        . "ssh-rsa $old the blob with another type\n"
        . "command=\"x y\",no-pty\tssh-ed25519  $old tabs, spaces\n"
        . "ssh-ed25519 $other crlf\r\n"
        . "ssh-rsa AAAAB3Nza note: ssh-ed25519 $old\n"
        . "  # ssh-ed25519 $old an indented comment\n"
        . "   ssh-ed25519 $old indented\n"
        . "ssh-ed25519 $old no newline at the end", 0640);
    @r = run_as($shell, $remove_key, $old_in);
    is_deeply([@r[0, 1]], [0, "withdrawn\n"], "$sh: remove-key: withdrawn")
        or diag($r[2]);
    is(SeguraTest::slurp($file), $kept,
       "$sh: remove-key: every line of the key went (options, copies, "
       . "another comment, CRLF, tabs, the last line), the rest kept");
    is(mode($file), '0640', "$sh: remove-key: the mode kept");
    is((stat $file)[4], $uid, "$sh: remove-key: the user's file");
    is(scalar(() = glob("$ssh/.authorized_keys.*")), 0,
       "$sh: remove-key: no temp file");

    # nothing of the key left: unchanged, the file not even rewritten
    utime 1_000_000_000, 1_000_000_000, $file;
    my $ino = (stat $file)[1];
    @r = run_as($shell, $remove_key, $old_in);
    is_deeply([@r[0, 1]], [0, "unchanged\n"], "$sh: remove-key again: unchanged")
        or diag($r[2]);
    is(SeguraTest::slurp($file), $kept, "$sh: remove-key: file as it was");
    is((stat $file)[9], 1_000_000_000, "$sh: remove-key: mtime kept");
    is((stat $file)[1], $ino, "$sh: remove-key: the same file");
    unlink $file;
    @r = run_as($shell, $remove_key, $old_in);
    is_deeply([@r[0, 1]], [0, "unchanged\n"], "$sh: remove-key, no file: unchanged");
    ok(!-e $file, "$sh: remove-key: and no file made");

    # the rotation: the new line (just added) stays, the old one goes; a
    # kept last line without a newline gets one
    put("ssh-ed25519 $old segura-key-9\nssh-ed25519 $new segura-key-9");
    @r = run_as($shell, $remove_key, $old_in);
    is($r[1], "withdrawn\n", "$sh: remove-key beside the new key");
    is(SeguraTest::slurp($file), "ssh-ed25519 $new segura-key-9\n",
       "$sh: only the new line left, ended by a newline");
    put("ssh-ed25519 $old x\n");
    @r = run_as($shell, $remove_key, $old_in);
    is($r[1], "withdrawn\n", "$sh: remove-key of the only line");
    is(SeguraTest::slurp($file), '', "$sh: an empty file left");

    # data, not code: the fields go to awk through its environment
    my $mark = "$home/pwned";
    my $evil = 'x");system("touch${IFS}' . $mark . '");("';
    put("ssh-ed25519 $evil c\nssh-ed25519 $other z\n");
    @r = run_as($shell, $remove_key, "ssh-ed25519 $evil \$(touch $mark)\n");
    is($r[1], "withdrawn\n", "$sh: remove-key: awk syntax in the blob is data")
        or diag($r[2]);
    is(SeguraTest::slurp($file), "ssh-ed25519 $other z\n",
       "$sh: remove-key: that line went");
    ok(!-e $mark, "$sh: remove-key: nothing in it ran");
    @r = run_as($shell, $remove_key, "ssh-ed25519\n");
    is($r[0], 1, "$sh: remove-key of a line with one field: status 1");
    like($r[2], qr/^segura: not a key line$/m, "$sh: and says why");
    @r = run_as($shell, $remove_key, "$other ssh-ed25519\n");
    like($r[2], qr/^segura: not a key line$/m, "$sh: remove-key: not a key");
    is(SeguraTest::slurp($file), "ssh-ed25519 $other z\n",
       "$sh: remove-key: and nothing changed");

    # a symbolic link is replaced by a regular file; its target is left
    put("ssh-ed25519 $old x\nssh-ed25519 $other z\n");
    rename $file, "$home/real_keys";
    symlink "$home/real_keys", $file;
    @r = run_as($shell, $remove_key, $old_in);
    is($r[1], "withdrawn\n", "$sh: remove-key through a symbolic link");
    ok(!-l $file && -f $file, "$sh: remove-key: now a regular file");
    is(SeguraTest::slurp($file), "ssh-ed25519 $other z\n",
       "$sh: remove-key: the other line");
    is(SeguraTest::slurp("$home/real_keys"),
       "ssh-ed25519 $old x\nssh-ed25519 $other z\n",
       "$sh: remove-key: the link's target untouched");
    unlink "$home/real_keys";

    # failures: status 1, why on stderr, the file as it was, no temp file
    my $before = "ssh-ed25519 $old x\nssh-ed25519 $other z\n";
    put($before);
    chmod 0500, $ssh;
    @r = run_as($shell, $remove_key, $old_in);
    is($r[0], 1, "$sh: remove-key, read-only ~/.ssh: status 1");
    like($r[2], qr/^segura: cannot create a file in /m, "$sh: and says why");
    chmod 0700, $ssh;
    is(SeguraTest::slurp($file), $before, "$sh: file unchanged");
    is(scalar(() = glob("$ssh/.authorized_keys.*")), 0, "$sh: no temp file");

    chmod 0500, $ssh;
    put("ssh-ed25519 $other z\n");
    @r = run_as($shell, $remove_key, $old_in);
    is_deeply([@r[0, 1]], [0, "unchanged\n"],
              "$sh: remove-key, read-only ~/.ssh, key absent: unchanged")
        or diag($r[2]);
    chmod 0700, $ssh;

    put($before, 0000);
    @r = run_as($shell, $remove_key, $old_in);
    is($r[0], 1, "$sh: remove-key, unreadable file: status 1");
    like($r[2], qr/^segura: cannot read /m, "$sh: and says why");
    chmod 0600, $file;
    is(SeguraTest::slurp($file), $before, "$sh: file unchanged");
    is(scalar(() = glob("$ssh/.authorized_keys.*")), 0, "$sh: no temp file");

    # the rename fails after the temporary file is written: ~/.ssh sticky
    # and world-writable, the file root's
    put($before, 0644);
    chown 0, 0, $ssh, $file;
    chmod 01777, $ssh;
    @r = run_as($shell, $remove_key, $old_in);
    is($r[0], 1, "$sh: remove-key, rename refused: status 1");
    like($r[2], qr/^segura: cannot rename over /m, "$sh: and says why");
    is(SeguraTest::slurp($file), $before, "$sh: file unchanged");
    is(scalar(() = glob("$ssh/.authorized_keys.*")), 0, "$sh: no temp file");
    chown $uid, $gid, $ssh, $file;
    chmod 0700, $ssh;

    # an awk that loses lines without saying so (busybox's on a full disk
    # exits 0): the count does not match, the file is not replaced
    my $bin = "$dir/lossy-bin";
    mkdir $bin, 0755;
    open my $w, '>', "$bin/awk" or die $!;
    print $w "#!/bin/sh\n/usr/bin/awk \"\$\@\" | head -n 1\n";
    close $w;
    chmod 0755, "$bin/awk";
    put("ssh-ed25519 $other y\n$before");
    @r = run_as($shell, $remove_key, $old_in, "$bin:$ENV{PATH}");
    is($r[0], 1, "$sh: remove-key, awk lost output: status 1");
    like($r[2], qr/^segura: cannot write$/m, "$sh: and says why");
    is(SeguraTest::slurp($file), "ssh-ed25519 $other y\n$before",
       "$sh: file unchanged");
    is(scalar(() = glob("$ssh/.authorized_keys.*")), 0, "$sh: no temp file");
}

my $name = $user->name;
$user->remove;
ok(!defined getpwnam($name), 'the throwaway user is gone');

done_testing();
