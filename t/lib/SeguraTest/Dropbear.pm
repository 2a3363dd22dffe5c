package SeguraTest::Dropbear;

# Debian's dropbear (package dropbear-bin) on loopback: a second SSH
# server implementation, with a host key of its own and a free port.  It
# logs in local users with their password or their ~/.ssh/authorized_keys
# (see SeguraTest::LoginUser).  Runs in the foreground, logging to
# <dir>/dropbear.log; stopped when the object goes.

use strict;
use warnings;

use File::Path qw(make_path);
use POSIX qw(:sys_wait_h);

sub new {
    my ($class, $dir) = @_;

    make_path($dir);

    my $self = bless { dir => $dir, port => SeguraTest::free_port() },
                     $class;

    system("dropbearkey -t ed25519 -f $dir/host_ed25519 >/dev/null 2>&1") == 0
        or die "dropbearkey failed";

    my $pid = fork() // die "fork: $!";

    if ($pid == 0) {
        open STDOUT, '>>', "$dir/dropbear.log";
        open STDERR, '>>', "$dir/dropbear.log";
        # -F foreground, -E log to stderr, -w no root login, -j -k no
        # forwarding
        exec '/usr/sbin/dropbear', '-F', '-E', '-w', '-j', '-k',
             '-r', "$dir/host_ed25519", '-P', "$dir/dropbear.pid",
             '-p', "127.0.0.1:$self->{port}";
        exit 127;
    }

    $self->{pid} = $pid;

    SeguraTest::wait_for(sub {
        waitpid($pid, WNOHANG) == 0 && SeguraTest::port_open($self->{port})
    }, 15, 'dropbear listens')
        or die "dropbear did not start:\n" . SeguraTest::slurp($self->log);

    return $self;
}

sub port { $_[0]{port} }
sub log  { "$_[0]{dir}/dropbear.log" }

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    kill 'TERM', $pid;
    unless (SeguraTest::wait_for(sub { waitpid($pid, WNOHANG) == $pid }, 5)) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
    }
}

sub DESTROY { $_[0]->stop }

1;
