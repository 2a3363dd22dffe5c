package SeguraTest::Device;

# Test devices other than OpenSSH, started by the test file on loopback
# with a free port, a host key and a log of their own, stopped at exit.
#
#   my $d = SeguraTest::Device->stall($t, 'auth');   # build/test/stall-sshd
#   $d->port; $d->host_key;     # { line => 'ssh-ed25519 AAAA...', fp => ... }
#   $d->count('stalled');       # connections that reached the stall point
#
# Modes of stall-sshd (t/device/stall-sshd.c): accept (a black hole),
# banner (banner, then silence in the key exchange), kex (silence after
# the key exchange), auth (silence after public-key authentication),
# channel (silence after the channel open).

use strict;
use warnings;

use POSIX qw(:sys_wait_h);
use SeguraTest;

our @ALL;

sub stall {
    my ($class, $t, $mode) = @_;

    my $bin = "$SeguraTest::TOP/build/test/stall-sshd";
    -x $bin or die "$bin is missing: make test builds it\n";

    my $dir = $t->dir . "/stall-$mode";
    mkdir $dir or die "$dir: $!";
    system('ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', '',
           '-f', "$dir/host") == 0 or die 'ssh-keygen failed';

    my $self = bless { dir => $dir, mode => $mode, log => "$dir/log",
                       port => SeguraTest::free_port() }, $class;

    my $line = SeguraTest::slurp("$dir/host.pub");
    $line =~ s/\s+$//;
    my ($fp) = `ssh-keygen -lf $dir/host.pub` =~ /(SHA256:\S+)/;
    $self->{host_key} = { line => $line, fp => $fp };

    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>>', $self->{log};
        open STDERR, '>>', $self->{log};
        exec $bin, '--mode', $mode, $self->{port}, "$dir/host";
        exit 127;
    }
    $self->{pid} = $pid;
    push @ALL, $self;

    # "ready", not a probe connection: that would count as a session
    SeguraTest::wait_for(sub { $self->count('ready') }, 15,
                         "stall-sshd $mode listens")
        or die "stall-sshd $mode did not start:\n"
               . SeguraTest::slurp($self->{log});

    return $self;
}

sub port     { $_[0]{port} }
sub mode     { $_[0]{mode} }
sub log      { $_[0]{log} }
sub host_key { $_[0]{host_key} }

# how many lines of the log are exactly $what (accepted, stalled, closed)
sub count {
    my ($self, $what) = @_;
    my @l = SeguraTest::slurp($self->{log}) =~ /^\Q$what\E$/mg;
    return scalar @l;
}

# connections accepted and not yet closed by the client
sub open_connections {
    my ($self) = @_;
    return $self->count('accepted') - $self->count('closed');
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    kill 'TERM', $pid;
    unless (SeguraTest::wait_for(sub { waitpid($pid, WNOHANG) == $pid }, 5)) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
    }
}

END {
    my $status = $?;
    $_->stop for @ALL;
    $? = $status;
}

1;
