package SeguraTest;

# The end-to-end test harness: each test file gets its own nginx (own
# prefix, free port, configuration written by the test) with the module
# loaded, its own database made from the migrated template, and, when it
# asks, its own OpenSSH server on loopback as a target device.  Everything
# is torn down at exit, also when a test dies.
#
#   my $t = SeguraTest->new(sshd => 1);
#   $t->run(<<'EOF');           # the http{} body; %%PORT%% etc. expanded
#   server { listen 127.0.0.1:%%PORT%%; location /api/ { segura_api; } }
#   EOF
#
# Checks added to every file at the end: no [alert] or [emerg] lines, no
# sanitizer report, no planted canary in any log.
#
# Options of new: sshd => 1 (an OpenSSH server), no_db => 1 (no database;
# set_db gives one later), private_pg => 1 (the database lives in a
# PostgreSQL cluster of the test's own under its directory, $t->pg, which
# the test may stop and start: see SeguraTest::Pg->private_cluster).
# Options of run and write_config: main => "..." (main context lines),
# no_defaults => 1, db_params => "connections=2" (after the conninfo of
# segura_database).

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use Test::More;

use SeguraTest::Pg;

our $TOP = abs_path(dirname(__FILE__) . '/../..');

# a peer that closed must fail a write, not kill the test before its END
$SIG{PIPE} = 'IGNORE';
our @INSTANCES;

my $NGINX  = $ENV{NGINX_BIN} || '/usr/sbin/nginx';
my $MODULE = $ENV{MODULE} || "$TOP/build/ngx_http_segura_module.so";
my $ASAN   = $ENV{ASAN} // 0;

sub new {
    my ($class, %opt) = @_;

    my $base = $ENV{SEGURA_TEST_TMP} || '/tmp';
    my $dir = tempdir('segura-t-XXXXXX', DIR => $base, CLEANUP => 0);
    chmod 0755, $dir;

    my $self = bless {
        dir      => $dir,
        port     => free_port(),
        canaries => [],
        opt      => \%opt,
    }, $class;

    make_path("$dir/conf", "$dir/logs", "$dir/html");
    chmod 0777, "$dir/logs";

    # a master key of 32 random bytes, mode 0600
    $self->{master_key} = "$dir/conf/master.key";
    open my $fh, '>:raw', $self->{master_key} or die $!;
    print $fh random_bytes(32);
    close $fh;
    chmod 0600, $self->{master_key};

    if ($opt{private_pg}) {
        $self->{pg} = SeguraTest::Pg->private_cluster("$dir/pg");
        $self->{db} = $self->{pg}->db;
    } elsif (!$opt{no_db}) {
        $self->{db} = SeguraTest::Pg->new_database();
    }
    $self->{sshd} = SeguraTest::Sshd->new("$dir/sshd") if $opt{sshd};

    push @INSTANCES, $self;
    return $self;
}

sub dir  { $_[0]{dir} }
sub port { $_[0]{port} }
sub db   { $_[0]{db} }
sub pg   { $_[0]{pg} }
# the database the configuration names (%%DATABASE%%) and fixtures use
sub set_db { $_[0]{db} = $_[1] }
sub sshd { $_[0]{sshd} }
sub master_key_file { $_[0]{master_key} }
sub url  { my ($self, $path) = @_; "http://127.0.0.1:$self->{port}$path" }
sub error_log { "$_[0]{dir}/logs/error.log" }

sub master_key {
    my ($self) = @_;
    open my $fh, '<:raw', $self->{master_key} or die $!;
    local $/;
    return scalar <$fh>;
}

# Strings that must never appear in a log or a response (private key
# bodies, passphrases): registered by the tests that plant them.
sub canary {
    my ($self, @c) = @_;
    push @{ $self->{canaries} }, grep { defined && length } @c;
}

sub expand {
    my ($self, $text) = @_;

    my %v = (
        PORT       => $self->{port},
        MODULE     => $MODULE,
        MASTER_KEY => $self->{master_key},
        DIR        => $self->{dir},
        HTML       => "$self->{dir}/html",
        DATABASE   => $self->{db} ? $self->{db}->conninfo : '',
        TOP        => $TOP,
    );

    $text =~ s/%%(\w+)%%/exists $v{$1} ? $v{$1} : die "no %%$1%%"/ge;
    return $text;
}

# The whole nginx.conf around an http{} body.  The defaults fit most
# tests; "main" adds lines to the main context (thread_pool etc.),
# "nofile" sets worker_rlimit_nofile (8192), "workers" worker_processes (1).
sub write_config {
    my ($self, $http, %o) = @_;

    my $user = ($> == 0) ? "user root root;\n" : '';
    my $main = $o{main} // "thread_pool segura threads=4;\n";
    my $db_params = $o{db_params} ? " $o{db_params}" : '';
    my $http_defaults = $o{no_defaults} ? '' : <<"EOF";
    segura_database   "%%DATABASE%%"$db_params;
    segura_master_key %%MASTER_KEY%%;
    segura_thread_pool segura;
EOF

    my $conf = $self->expand(<<"EOF");
load_module %%MODULE%%;
${user}worker_processes @{[ $o{workers} // 1 ]};
daemon off;
master_process on;
pid logs/nginx.pid;
error_log logs/error.log @{[ $o{error_level} // 'debug' ]};
worker_rlimit_nofile @{[ $o{nofile} // 8192 ]};
$main
events {
    worker_connections 4096;
}

http {
    access_log logs/access.log;
    client_body_temp_path logs/client_body;
$http_defaults
@{[ $self->expand($http) ]}
}
EOF

    open my $fh, '>', "$self->{dir}/conf/nginx.conf" or die $!;
    print $fh $conf;
    close $fh;

    return "$self->{dir}/conf/nginx.conf";
}

# the environment of nginx: the sanitizer's, and what the test asked
# for with new(env => {...}) (an LD_PRELOAD of its own comes after ASan's)
sub nginx_env {
    my ($self, $config_test) = @_;
    my %env;
    my %own = %{ $self->{opt}{env} || {} };

    if ($ASAN) {
        chomp(my $lib = `gcc -print-file-name=libasan.so`);
        $env{LD_PRELOAD} = $lib;
        $env{ASAN_OPTIONS} = join ':',
            # "nginx -t" exits without freeing the cycle by design
            'detect_leaks=' . ($config_test ? 0 : 1),
            'fast_unwind_on_malloc=0', 'abort_on_error=0', 'halt_on_error=0',
            'log_path=' . "$self->{dir}/logs/asan";
        $env{LSAN_OPTIONS} = "suppressions=$TOP/t/lsan.supp:print_suppressions=0";
    }

    if (defined $own{LD_PRELOAD} && defined $env{LD_PRELOAD}) {
        $own{LD_PRELOAD} = "$env{LD_PRELOAD}:$own{LD_PRELOAD}";
    }

    return (%env, %own);
}

# nginx -t: returns (exit status, output)
sub nginx_test {
    my ($self, $http, %o) = @_;

    $self->write_config($http, %o) if defined $http;

    my %env = $self->nginx_env(1);
    local @ENV{ keys %env } = values %env;

    my $out = `$NGINX -p $self->{dir}/ -c conf/nginx.conf -e logs/nginx-t.log -t 2>&1`;
    return ($? >> 8, $out);
}

sub run {
    my ($self, $http, %o) = @_;

    $self->write_config($http, %o) if defined $http;

    my ($rc, $out) = $self->nginx_test;
    die "nginx -t failed:\n$out" if $rc;

    my %env = $self->nginx_env;

    my $pid = fork() // die "fork: $!";

    if ($pid == 0) {
        @ENV{ keys %env } = values %env;
        open STDOUT, '>>', "$self->{dir}/logs/stderr.log";
        open STDERR, '>>', "$self->{dir}/logs/stderr.log";
        # a wrapper (valgrind, for instance) runs nginx when given
        exec @{ $o{wrapper} || [] }, $NGINX, '-p', "$self->{dir}/",
             '-c', 'conf/nginx.conf', '-e', 'logs/error.log';
        exit 127;
    }

    $self->{nginx_pid} = $pid;

    # the port open is not enough: another process may hold it, and then
    # our nginx exits with "bind() failed"; nginx writes its pid file once
    # it has its listeners
    wait_for(sub {
        waitpid($pid, WNOHANG) == 0 && port_open($self->{port})
            && slurp("$self->{dir}/logs/nginx.pid") =~ /^$pid\b/
    }, $o{start_timeout} // 20, 'nginx listens')
        or die "nginx did not start:\n" . slurp($self->error_log);

    return $self;
}

sub nginx_pid { $_[0]{nginx_pid} }

sub workers {
    my ($self) = @_;
    return () unless $self->{nginx_pid};
    my @w = `pgrep -P $self->{nginx_pid}`;
    chomp @w;
    return grep { /^\d+$/ } @w;
}

# the number of descriptors a worker holds
sub worker_fds {
    my ($self, $pid) = @_;
    ($pid) = $self->workers unless $pid;
    opendir my $dh, "/proc/$pid/fd" or return -1;
    my @fd = grep { /^\d+$/ } readdir $dh;
    return scalar @fd;
}

# descriptors of a worker that are TCP sockets to or from one of @ports
# (the client side of nginx's port, or a device's port)
sub worker_tcp_fds {
    my ($self, $pid, @ports) = @_;
    my %want = map { $_ => 1 } @ports;
    my %inode;

    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $fh, '<', $f or next;
        <$fh>;
        while (<$fh>) {
            my @c = split ' ';
            my ($lport) = $c[1] =~ /:([0-9A-F]+)$/;
            my ($rport) = $c[2] =~ /:([0-9A-F]+)$/;
            next if $c[3] eq '0A';    # listening
            $inode{$c[9]} = 1 if $want{hex $lport} || $want{hex $rport};
        }
    }

    my $n = 0;
    opendir my $dh, "/proc/$pid/fd" or return -1;
    for my $fd (grep { /^\d+$/ } readdir $dh) {
        my $l = readlink "/proc/$pid/fd/$fd" or next;
        $n++ if $l =~ /^socket:\[(\d+)\]$/ && $inode{$1};
    }
    return $n;
}

sub worker_rss_kb {
    my ($self, $pid) = @_;
    my $s = slurp("/proc/$pid/status");
    my ($kb) = $s =~ /^VmRSS:\s+(\d+)/m;
    return $kb;
}

sub reload {
    my ($self) = @_;
    kill 'HUP', $self->{nginx_pid};
}

sub stop {
    my ($self) = @_;

    my $pid = delete $self->{nginx_pid} or return;

    kill 'QUIT', $pid;

    unless (wait_for(sub { waitpid($pid, WNOHANG) == $pid }, 15)) {
        kill 'TERM', $pid;
        unless (wait_for(sub { waitpid($pid, WNOHANG) == $pid }, 5)) {
            kill 'KILL', $pid;
            waitpid($pid, 0);
        }
    }
}

sub log_checks {
    my ($self) = @_;

    my $log = -f $self->error_log ? slurp($self->error_log) : '';

    my @bad = $log =~ /^(.*\[(?:alert|emerg|crit)\].*)$/mg;
    ok(!@bad, 'no alert, crit or emerg in the error log')
        or diag(join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)]);

    my @asan = glob("$self->{dir}/logs/asan*");
    my $asan = join "\n", grep { length } map { sanitizer_findings(slurp($_)) } @asan;
    ok($asan eq '', 'no sanitizer report') or diag($asan);

    my $all = $log . (-f "$self->{dir}/logs/access.log"
                      ? slurp("$self->{dir}/logs/access.log") : '')
              . (-f "$self->{dir}/logs/stderr.log"
                 ? slurp("$self->{dir}/logs/stderr.log") : '');

    for my $c (@{ $self->{canaries} }) {
        ok(index($all, $c) < 0, 'no planted secret in the logs')
            or diag('canary found: ' . substr($c, 0, 12) . '...');
    }
}

sub DESTROY_all {
    for my $t (@INSTANCES) {
        $t->stop;
        $t->{sshd}->stop if $t->{sshd};
    }
    # nginx is gone: the clusters under the tests' directories may go
    SeguraTest::Pg::stop_private_clusters();
    for my $t (@INSTANCES) {
        $t->{db}->drop if $t->{db} && $t->{db}->can('drop');
        $t->{checked} = 1;
        remove_tree($t->{dir}) unless $ENV{SEGURA_KEEP} || !$t->{passed};
    }
    @INSTANCES = ();
}

# Runs the checks for every instance, then done_testing.  Call it at the
# end of a test file instead of done_testing.
sub done {
    my $builder = Test::More->builder;

    for my $t (@INSTANCES) {
        $t->stop;
        $t->log_checks if $t->{nginx_started} // 1;
        $t->{passed} = $builder->is_passing;
        unless ($t->{passed}) {
            diag("kept for inspection: $t->{dir}");
            $ENV{SEGURA_KEEP} = 1;
        }
    }

    done_testing();
}

END {
    my $status = $?;
    DESTROY_all();
    $? = $status;
}


# What of an AddressSanitizer log is ours.  Every memory error counts.
# Of LeakSanitizer's report only the leaks whose allocation stack passes
# through the module count: nginx itself never frees a worker's
# connection and event arrays at exit, and those reports name no segura
# frame.  Everything the module or the libraries it calls allocate has
# a module frame on its stack (the module is built with -g).
sub sanitizer_findings {
    my ($log) = @_;
    return '' if $log eq '';

    return $log unless $log =~ /LeakSanitizer: detected memory leaks/
                       && $log !~ /ERROR: AddressSanitizer/;

    my @ours = grep { /segura/ }
               split /\n(?=(?:Direct|Indirect) leak of )/, $log;
    shift @ours if @ours && $ours[0] =~ /^\s*=+\s*\n==\d+==ERROR/ && $ours[0] !~ /leak of/;

    return join "\n", @ours;
}


# utilities

sub wait_for {
    my ($cond, $timeout, $what) = @_;

    my $deadline = time + ($timeout // 10);
    my $delay = 0.005;

    while (time < $deadline) {
        my $r = $cond->();
        return $r if $r;
        sleep $delay;
        $delay = 0.1 if ($delay *= 2) > 0.1;
    }

    diag("timed out waiting: $what") if $what;
    return;
}

sub port_open {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 1);
    return $s ? 1 : 0;
}

# a port for a listener of this test, below the kernel's ephemeral range
# (32768-60999 here): a port the kernel handed out for port 0 and that was
# closed again can be handed out again, to another test's listener or to an
# outgoing connection, before our listener binds it.  Random in 20000-32767,
# and free now; a test that loses the remaining race finds out, because its
# listener's own process must be alive and own the port (run(), start()).
sub free_port {
    for (1 .. 200) {
        my $port = 20000 + int(rand(12768));
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                      LocalPort => $port, Proto => 'tcp',
                                      Listen => 1, ReuseAddr => 1) or next;
        close $s;
        return $port;
    }
    die "no free port";
}

sub random_bytes {
    my ($n) = @_;
    open my $fh, '<:raw', '/dev/urandom' or die $!;
    my $buf;
    read $fh, $buf, $n;
    close $fh;
    return $buf;
}

sub slurp {
    my ($file) = @_;
    open my $fh, '<:raw', $file or return '';
    local $/;
    my $s = <$fh>;
    return $s // '';
}


package SeguraTest::Sshd;

# A real OpenSSH server on loopback: own host keys, own authorized_keys
# file, free port, runs as the current user (as root: privilege
# separation in /run/sshd).  The login user is the current user, with
# HOME set to <dir>/home: the shells of the tests read no profile of the
# user's own (slow, or waiting on a lock of its tools) and write no
# history into the user's real home.

use strict;
use warnings;

use File::Path qw(make_path);
use POSIX qw(:sys_wait_h);

# Options of new (kept by restart): user_keys => 1 (each user's own
# ~/.ssh/authorized_keys, StrictModes on, HOME from the password file: for
# a throwaway login user of a test), keys_file => <path> (as user_keys,
# but sshd reads only that file: a device whose keys no program of ours
# can edit), password => 1 (password authentication on).
sub new {
    my ($class, $dir, %opt) = @_;

    make_path($dir);
    chmod 0755, $dir;

    my $self = bless {
        dir  => $dir,
        port => SeguraTest::free_port(),
        user => scalar getpwuid($>),
        opt  => \%opt,
    }, $class;

    if ($> == 0 && !-d '/run/sshd') {
        make_path('/run/sshd');
        chmod 0755, '/run/sshd';
    }

    for my $type (qw(ed25519 ecdsa rsa)) {
        system('ssh-keygen', '-q', '-t', $type, '-N', '', '-C', '',
               '-f', "$dir/host_$type") == 0 or die "ssh-keygen failed";
    }

    open my $fh, '>', "$dir/authorized_keys" or die $!;
    close $fh;
    chmod 0644, "$dir/authorized_keys";

    # the device's shells start in an empty home of the test's own: the
    # machine's ~/.profile and ~/.bashrc (pyenv and the like: seconds per
    # shell, and a lock file that a killed shell leaves behind) are not
    # what a test measures, and no test writes to the user's history
    make_path("$dir/home");
    chmod 0755, "$dir/home";

    $self->write_config;
    $self->start;

    return $self;
}

sub dir  { $_[0]{dir} }
sub port { $_[0]{port} }
sub user { $_[0]{user} }
sub log  { "$_[0]{dir}/sshd.log" }

sub write_config {
    my ($self, %o) = @_;
    my $d = $self->{dir};

    my @hostkeys = map { "HostKey $d/host_$_" } @{ $o{host_keys} || [qw(ed25519 ecdsa rsa)] };
    my %opt = %{ $self->{opt} || {} };

    open my $fh, '>', "$d/sshd_config" or die $!;
    print $fh join("\n",
        "Port $self->{port}",
        "ListenAddress 127.0.0.1",
        @hostkeys,
        "PidFile $d/sshd.pid",
        ($opt{keys_file} ? ("AuthorizedKeysFile $opt{keys_file}",
                            "StrictModes no")
         : $opt{user_keys} ? ("AuthorizedKeysFile .ssh/authorized_keys",
                            "StrictModes yes")
                         : ("AuthorizedKeysFile $d/authorized_keys",
                            "StrictModes no")),
        "UsePAM no",
        "PasswordAuthentication " . ($opt{password} ? 'yes' : 'no'),
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "PermitRootLogin prohibit-password",
        "MaxStartups 500:30:1000",
        "MaxSessions 100",
        "LogLevel VERBOSE",
        "PrintMotd no",
        "PrintLastLog no",
        "Banner none",
        "AcceptEnv LANG",
        ($opt{user_keys} || $opt{keys_file} ? () : ("SetEnv HOME=$d/home")),
        "Subsystem sftp internal-sftp",
        ""), "\n";
    close $fh;
}

sub start {
    my ($self) = @_;

    my $listened = () = SeguraTest::slurp($self->log) =~ /Server listening on/g;

    my $pid = fork() // die "fork: $!";

    if ($pid == 0) {
        open STDOUT, '>>', $self->log;
        open STDERR, '>>', $self->log;
        exec '/usr/sbin/sshd', '-D', '-e', '-f', "$self->{dir}/sshd_config";
        exit 127;
    }

    $self->{pid} = $pid;

    # alive and listening: a port held by another process would be open
    # while our sshd exits with "Bind to port ... failed"
    SeguraTest::wait_for(sub {
        my $n = () = SeguraTest::slurp($self->log) =~ /Server listening on/g;
        waitpid($pid, WNOHANG) == 0 && SeguraTest::port_open($self->{port})
            && $n > $listened
    }, 15, 'sshd listens')
        or die "sshd did not start:\n" . SeguraTest::slurp($self->log);
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

sub restart {
    my ($self, %o) = @_;
    $self->stop;
    $self->write_config(%o);
    $self->start;
}

sub host_key_line {
    my ($self, $type) = @_;
    $type //= 'ed25519';
    my $line = SeguraTest::slurp("$self->{dir}/host_$type.pub");
    $line =~ s/\s+$//;
    return $line;
}

sub authorize {
    my ($self, @pub) = @_;
    open my $fh, '>>', "$self->{dir}/authorized_keys" or die $!;
    print $fh "$_\n" for @pub;
    close $fh;
}

# how many TCP connections the sshd has accepted so far
sub connections {
    my ($self) = @_;
    my $log = SeguraTest::slurp($self->log);
    my @c = $log =~ /^Connection from /mg;
    return scalar @c;
}

# a fresh client key pair, in the given format; returns the paths
sub keygen {
    my ($self, $name, %o) = @_;
    my $path = "$self->{dir}/$name";
    my @args = ('ssh-keygen', '-q', '-t', $o{type} // 'ed25519',
                '-N', $o{passphrase} // '', '-C', "segura-test-$name",
                '-f', $path);
    push @args, '-b', $o{bits} if $o{bits};
    push @args, '-m', $o{format} if $o{format};
    unlink $path, "$path.pub";
    system(@args) == 0 or die "ssh-keygen failed";
    return ($path, "$path.pub");
}

1;
