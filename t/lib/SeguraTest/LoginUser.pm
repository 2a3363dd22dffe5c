package SeguraTest::LoginUser;

# A throwaway local user of one test, for devices that log in with a
# password and read the user's own ~/.ssh/authorized_keys: a name of its
# own (the test's pid and a counter, so tests in parallel do not
# collide), a random password, a home directory under the test's
# directory with nothing in it (no profile, no ~/.ssh), /bin/sh as its
# shell.  Removed from the password files when the object goes (and at
# the latest when the test exits).  Needs root.
#
#   my $u = SeguraTest::LoginUser->new($t);
#   $u->name; $u->password; $u->home;

use strict;
use warnings;

use File::Path qw(make_path);

my $SERIAL = 0;
my @MADE;

sub new {
    my ($class, $t) = @_;

    die "SeguraTest::LoginUser needs root\n" unless $> == 0;

    my $name = sprintf 'sgt%d_%d', $$, ++$SERIAL;
    my $home = $t->dir . "/home-$name";
    my $password = unpack('H*', SeguraTest::random_bytes(12));

    open my $fh, '-|', 'sh', '-c',
        "printf '%s\\n' '$password' | openssl passwd -6 -stdin"
        or die "openssl passwd: $!";
    my $hash = <$fh>;
    close $fh;
    chomp $hash;
    die "openssl passwd failed" unless $hash =~ /^\$6\$/;

    system('useradd', '-M', '-d', $home, '-s', '/bin/sh', '-p', $hash,
           $name) == 0 or die "useradd $name failed";
    push @MADE, $name;

    make_path($home);
    my ($uid, $gid) = (getpwnam($name))[2, 3];
    chown $uid, $gid, $home;
    chmod 0755, $home;

    return bless { name => $name, home => $home, password => $password,
                   uid => $uid, gid => $gid }, $class;
}

sub name     { $_[0]{name} }
sub home     { $_[0]{home} }
sub password { $_[0]{password} }
sub uid      { $_[0]{uid} }

sub remove {
    my ($self) = @_;
    my $name = delete $self->{name} or return;
    # -f: even if a session's shell of it is still ending
    system('userdel', '-f', $name);
    @MADE = grep { $_ ne $name } @MADE;
}

sub DESTROY { $_[0]->remove }

END {
    system('userdel', '-f', $_) for @MADE;
}

1;
