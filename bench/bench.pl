#!/usr/bin/env perl
# The benchmark behind `make bench` (started by bench/run): plain ssh,
# segura and wetty against the same OpenSSH server with the same key, the
# same load client (bench/client.js) for all three, one table.
#
# Set-up reuses the test harness (t/lib): a private PostgreSQL with a
# migrated database, an OpenSSH server on loopback, and nginx with the
# module, but with a configuration written here (one worker, warn-level
# error log, no access log), not the tests' debug one.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use JSON::PP;
use POSIX qw(strftime :sys_wait_h);
use Time::HiRes qw(time sleep);

our $BENCH;
BEGIN { $BENCH = abs_path(dirname(__FILE__)) }
use lib "$BENCH/../t/lib";

use Test::More ();
use SeguraTest;
use SeguraTest::Session;

Test::More->builder->no_ending(1);

my $TOP      = abs_path("$BENCH/..");
my $NGINX    = $ENV{NGINX_BIN} || '/usr/sbin/nginx';
my $MODULE   = $ENV{MODULE} || "$TOP/build/ngx_http_segura_module.so";
my $RUNS     = $ENV{BENCH_RUNS} // 3;
my $SCALE    = $ENV{BENCH_SCALE} // 1000;
my $PROFILE  = $ENV{BENCH_PROFILE} // 1;
my $JSON     = JSON::PP->new->canonical;
my $STARTED  = time;
# BENCH_ROWS: which figures to take (default all): throughput setup
# blackhole loginflood (alias flood; brings the quiet setup with it, its
# ratio is to that) echo memory (alias idle) storm scale rate profile
# instructions ctrlc, and recording (the recording rows: throughput and
# memory with recording on and off, stored bytes per output byte, idle
# cost). With rows chosen the targets default to segura alone (segura and
# seguranorec for recording) and the results file is named after the rows.
my %ROWS     = map { $_ => 1 } split /[\s,]+/, ($ENV{BENCH_ROWS} || 'all');
delete $ROWS{''};
$ROWS{loginflood} = 1 if $ROWS{flood};
$ROWS{memory} = 1 if $ROWS{idle};
$ROWS{setup} = 1 if $ROWS{loginflood};
@ROWS{qw(throughput memory)} = (1, 1) if $ROWS{recording};
sub row { $ROWS{all} || $ROWS{ $_[0] } }
my @TARGETS  = split ' ', ($ENV{BENCH_TARGETS}
    || ($ROWS{all} ? 'ssh sshpipe segura seguraack seguranorec wetty'
        : $ROWS{recording} ? 'segura seguranorec' : 'segura'));
if (!$ROWS{all}) {
    # the rows after the runs have switches of their own
    $SCALE = 0 unless $ROWS{scale};
    $PROFILE = 0 unless $ROWS{profile};
    $ENV{BENCH_BLACKHOLES} = 0 unless $ROWS{blackhole};
    $ENV{BENCH_RATE} = 0 unless $ROWS{rate};
    $ENV{BENCH_INSTRUCTIONS} = 0 unless $ROWS{instructions};
    $ENV{BENCH_CTRLC} = 0 unless $ROWS{ctrlc};
}
my @KIDS;

$| = 1;

sub say_ { print strftime('[%H:%M:%S] ', localtime), @_, "\n" }

# --- the stack -------------------------------------------------------------

say_("setting up PostgreSQL, OpenSSH and nginx");
my $t = SeguraTest->new(sshd => 1);
my $sshd = $t->sshd;
my $dir = $t->dir;

# The device's shells start in an empty home directory (the harness's
# sshd_config says so), so a slow ~/.bashrc of this machine is not what
# the set-up figures measure.

write_nginx_conf();
$t->run(undef);
# the master may not have started its worker yet on a loaded machine
my $worker;
SeguraTest::wait_for(sub { ($worker) = $t->workers; $worker }, 30,
                     'the nginx worker');
die "no nginx worker" unless $worker;

# The ssh client's configuration for the ssh and wetty rows: the key
# exchange libssh 0.10 uses too. OpenSSH 9.2 talking to itself would pick
# sntrup761x25519-sha512, about 100 ms more per set-up on this machine,
# which is cryptography, not relaying.
open my $cfh, '>', "$dir/ssh_config" or die $!;
print $cfh "KexAlgorithms curve25519-sha256\n";
close $cfh;

# the key and device every target uses
my $f = SeguraTest::Session::fixture($t, type => 'ed25519');

# an administrator, who watches in the watched-throughput row
my $admin = $t->db->insert_user(admin => 1);
my $admin_token = SeguraTest::Session::random_token();
$t->db->insert_web_session(user => $admin, token => $admin_token);

# the light device for the scale row, with its own device row
my $light_port = SeguraTest::free_port();
system('ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', '',
       '-f', "$dir/light_host") == 0 or die "ssh-keygen";
my $light = spawn_kid("$dir/lightsshd.log", 'node', "$BENCH/lightsshd.js",
                      $light_port, "$dir/light_host", $sshd->user);
SeguraTest::wait_for(sub { SeguraTest::port_open($light_port) }, 20,
                     'light sshd listens') or die "light sshd did not start";
my $fl = SeguraTest::Session::fixture($t, type => 'ed25519', port => $light_port);

# the black hole for the blackhole row: a port that the load client
# listens on (it accepts and never speaks), with its own device row
my $hole_port = SeguraTest::free_port();
my $fb = SeguraTest::Session::fixture($t, type => 'ed25519', port => $hole_port,
                                      authorize => 0);
my $HOLES = $ENV{BENCH_BLACKHOLES} // 50;
my $IDLE_S = $ENV{BENCH_IDLE_SECONDS} // 60;

# wetty: one to the OpenSSH server, one to the light device
my %wetty;
for my $w ([main => $sshd->port], [light => $light_port]) {
    my ($name, $port) = @$w;
    my $wport = SeguraTest::free_port();
    my $pid = spawn_kid("$dir/wetty-$name.log", 'node',
        "$BENCH/node_modules/wetty/build/main.js",
        '--host', '127.0.0.1', '--port', $wport, '--base', '/wetty',
        '--ssh-host', '127.0.0.1', '--ssh-port', $port,
        '--ssh-user', $sshd->user, '--ssh-key', $f->{path},
        '--ssh-auth', 'publickey', '--known-hosts', '/dev/null',
        '--ssh-config', "$dir/ssh_config", '--force-ssh', '--log-level', 'warn');
    $wetty{$name} = { port => $wport, pid => $pid };
}
for my $w (values %wetty) {
    SeguraTest::wait_for(sub { SeguraTest::port_open($w->{port}) }, 30,
                         'wetty listens') or die "wetty did not start";
}

my %base = (
    deadline => 120,
    ssh    => { key => $f->{path}, user => $sshd->user, port => $sshd->port,
                config => "$dir/ssh_config" },
    segura => { port => $t->port, key => $f->{key}, device => $f->{device},
                cookie => $f->{cookie},
                watch_cookie => SeguraTest::Session::cookie_for($admin_token) },
    wetty  => { port => $wetty{main}{port} },
);

my %watch = (
    ssh    => { self_children => JSON::PP::true },
    sshpipe => { self_children => JSON::PP::true },
    segura => { pids => [ $worker + 0 ] },
    wetty  => { pids => [ $wetty{main}{pid} + 0 ], tree => JSON::PP::true },
);

my %probe = (
    ssh    => $t->url('/static'),
    seguraack => $t->url('/static'),
    seguranorec => $t->url('/static'),
    sshpipe => $t->url('/static'),
    segura => $t->url('/static'),
    wetty  => "http://127.0.0.1:$wetty{main}{port}/wetty/client/wetty.svg",
);

if ($ENV{BENCH_HOLD}) {
    # for debugging the clients: the stack stays up, the configuration is
    # in <dir>/hold.json
    open my $hf, '>', "$dir/hold.json" or die $!;
    print $hf $JSON->encode({ %base, watch => \%watch, probe => \%probe,
                              light_port => $light_port,
                              light_device => $fl->{device},
                              wetty => \%wetty, worker => $worker });
    close $hf;
    say_("holding: $dir/hold.json");
    sleep $ENV{BENCH_HOLD};
    exit 0;
}

# --- the runs --------------------------------------------------------------

my %R;    # $R{$target}{$figure} = [values over runs]

for my $run (1 .. $RUNS) {
    for my $target (@TARGETS) {
        say_("run $run/$RUNS: $target");

        my $r;
        if (row('throughput')) {
            $r = client($target, 'throughput', deadline => 90);
            push @{ $R{$target}{mibps} }, $r->{mibps};
            push @{ $R{$target}{cpu100} }, $r->{cpu_per_100mib};
        }
        if ($target eq 'segura' && row('throughput')) {
            push @{ $R{$target}{stored} }, stored_ratio();
        }
        if ($target eq 'segura' && row('recording')) {
            # incompressible output: 50 MiB of random base64
            client($target, 'throughput', deadline => 90,
                   command => 'head -c 39321600 /dev/urandom | base64 -w0');
            push @{ $R{$target}{stored_r} }, stored_ratio();
            # what a person's session prints: listings, top, a log
            client($target, 'throughput', deadline => 90,
                   command => 'ls -lR /usr 2>/dev/null | head -c 4000000;'
                              . ' top -b -n 3 | head -c 200000;'
                              . " git -C $TOP log --stat -n 400 2>/dev/null"
                              . ' | head -c 1500000;'
                              . ' ps auxww; dmesg 2>/dev/null | tail -c 100000;'
                              . ' cat /usr/share/common-licenses/GPL-3');
            push @{ $R{$target}{stored_i} }, stored_ratio();
        }
        if ($target eq 'segura' && row('throughput')) {
            # the same with an administrator watching who never reads,
            # paired within the run (issue 16: within 10 % of unwatched)
            $r = client('segurawatched', 'throughput', deadline => 90);
            # counted only if the watcher was there all along (its 101)
            push @{ $R{segura}{watched_ratio} },
                $r->{watching} && $r->{mibps} && $R{segura}{mibps}[-1]
                ? $r->{mibps} / $R{segura}{mibps}[-1] : undef;
        }
        if ($target eq 'seguranorec' && row('throughput')
            && @{ $R{segura}{mibps} || [] } == $run)
        {
            # recording on against off, paired within the run: the
            # machine's load changes less between two neighbours
            push @{ $R{segura}{tp_ratio} },
                $R{segura}{mibps}[-1] / $R{seguranorec}{mibps}[-1];
        }

        if (row('setup')) {
            $r = client($target, 'setup', n => 20);
            push @{ $R{$target}{setup50} }, $r->{p50};
            push @{ $R{$target}{setup95} }, $r->{p95};
        }

        if ($target eq 'segura' && $HOLES && row('blackhole')) {
            $r = blackhole_row();
            push @{ $R{$target}{hole50} }, $r->{p50};
            push @{ $R{$target}{hole_ratio} },
                defined $r->{p50} && $R{$target}{setup50}[-1]
                ? $r->{p50} / $R{$target}{setup50}[-1] : undef;
            $R{$target}{hole_note} = "$r->{held}/$r->{blackholed} held at the "
                . "black hole, $r->{held_after} still at the end, "
                . "$r->{ended_early} ended before the measurement did, "
                . scalar(@{ $r->{ms} }) . "/$r->{n} set-ups (the slowest "
                . fmt($r->{max}, 1) . ' ms)'
                . ($r->{failed} ? " ($r->{why})" : '');
            # the figure counts only if the load was there all along
            $R{$target}{hole_full} = 1 unless exists $R{$target}{hole_full};
            $R{$target}{hole_full} = 0
                if $r->{held} < $r->{blackholed} || $r->{ended_early}
                   || $r->{failed};
        }

        if ($target eq 'segura' && row('loginflood')) {
            # logins with random names, the address budget off (in the
            # configuration): each costs an argon2 verification, bounded by
            # segura_login_concurrency
            $r = client($target, 'loginflood', n => 20, flood => 32,
                        segura => { %{ $base{segura} }, port => $t->port });
            push @{ $R{$target}{flood50} }, $r->{p50};
            $R{$target}{flood_note} = "$r->{logins} logins ("
                . join(', ', map { "$_: $r->{codes}{$_}" }
                             sort keys %{ $r->{codes} }) . ')';
        }

        if (row('echo')) {
            $r = client($target, 'echo', n => 500);
            push @{ $R{$target}{echo50} }, $r->{p50};
            push @{ $R{$target}{echo99} }, $r->{p99};
        }

        if (row('memory')) {
            reload_nginx() if $target =~ /^segura/;
            $r = client($target, 'idle', n => 50);
            push @{ $R{$target}{mem50} }, $r->{kib_per_session};
            if (row('recording') && $target =~ /^segura(norec)?$/) {
                # the same, measured 2.5 s after the last set-up instead
                # of 1 s: every recorder's quiet second has passed
                reload_nginx();
                $r = client($target, 'idle', n => 50, settle_ms => 2500);
                push @{ $R{$target}{mem50s} }, $r->{kib_per_session};
            }
        }

        if (row('storm')) {
            $r = client($target, 'storm', n => 100,
                        probe_url => $probe{$target});
            push @{ $R{$target}{static99} }, $r->{static_p99};
            push @{ $R{$target}{storm_setup95} }, $r->{setup_p95};
        }
    }
}

# idle: what a session that prints nothing stores, once
my $IDLE = row('recording') && grep({ $_ eq 'segura' } @TARGETS)
           ? idle_cost() : undef;

# the scale column: once per target, against the light device
if ($SCALE && row('scale')) {
    for my $target (@TARGETS) {
        # the pipe baseline differs from ssh only in the client's terminal
        next if $target eq 'sshpipe' || $target eq 'seguraack'
                || $target eq 'seguranorec';
        say_("scale: $SCALE idle sessions, $target");
        my %o = (n => $SCALE, concurrency => 20, deadline => 240,
                 open_timeout_ms => 60000);
        $o{port} = $light_port if $target eq 'ssh';
        $o{segura} = { %{ $base{segura} }, key => $fl->{key},
                       device => $fl->{device}, cookie => $fl->{cookie} }
            if $target eq 'segura';
        if ($target eq 'wetty') {
            $o{port} = $wetty{light}{port};
            $o{watch} = { pids => [ $wetty{light}{pid} + 0 ],
                          tree => JSON::PP::true };
        }
        reload_nginx() if $target eq 'segura';
        my $r = client($target, 'idle', %o);
        push @{ $R{$target}{mem1000} }, $r->{kib_per_session};
        $R{$target}{mem1000_ok} = "$r->{ok}/$r->{n}";
    }
}

# set-up rate: sessions per second to the prompt, 100 at once to the light
# device, with one worker and with two (median of 3 each)
my %RATE;
if (($ENV{BENCH_RATE} // 1) && row('rate')
    && grep { $_ eq 'segura' } @TARGETS)
{
    for my $n (1, 2) {
        write_nginx_conf($n);
        reload_nginx($n);
        for my $i (1 .. 3) {
            say_("rate: 100 set-ups at once, $n worker(s), run $i/3");
            my $r = client('segura', 'storm', n => 100, deadline => 120,
                           open_timeout_ms => 60000,
                           probe_url => $t->url('/static'),
                           segura => { %{ $base{segura} }, key => $fl->{key},
                                       device => $fl->{device},
                                       cookie => $fl->{cookie} });
            push @{ $RATE{$n} }, $r->{seconds} ? $r->{ok} / $r->{seconds}
                                               : undef;
        }
    }
    write_nginx_conf(1);
    reload_nginx(1);
}

# Ctrl-C during a flood, in the web UI's terminal in chromium: the time
# until the prompt is back (bench/ctrlc.mjs, 3 floods in one tab)
my $CTRLC;
if (($ENV{BENCH_CTRLC} // 1) && row('ctrlc') && grep { $_ eq 'segura' } @TARGETS) {
    say_('ctrl-c: seq 1 200000000 in chromium, Ctrl+C, 3 times');
    my $file = "$dir/client-ctrlc.json";
    open my $fh, '>', $file or die $!;
    print $fh $JSON->encode({ segura => $base{segura}, n => 3 });
    close $fh;
    my $out = `node $BENCH/ctrlc.mjs $file 2>>$dir/client.stderr`;
    my ($line) = grep { /^\{/ } split /\n/, $out;
    $CTRLC = eval { decode_json($line // '') } || { error => "no result: $out" };
    say_("  ctrl-c: $CTRLC->{error}") if $CTRLC->{error};
}

my $profile = $PROFILE && row('profile') ? profile() : undef;
my $instr = ($ENV{BENCH_INSTRUCTIONS} // 1) && row('instructions')
            ? instructions() : undef;

report();
$t->{passed} = 1;
exit 0;

# --- helpers ---------------------------------------------------------------

# the set-up of 20 healthy sessions while $HOLES sessions hang on a device
# that accepts and never speaks (bench/client.js, mode blackhole): they go
# to /blackhole, whose connect timeout (10 s) outlasts the measurement. A
# healthy set-up that takes 30 s is counted as failed and ends the series.
sub blackhole_row {
    my $r = client('segura', 'blackhole', n => 20, open_timeout_ms => 30000,
                   deadline => 240,
                   blackhole => { n => $HOLES, port => $hole_port + 0,
                                  path => '/blackhole', key => $fb->{key},
                                  device => $fb->{device},
                                  cookie => $fb->{cookie},
                                  wait_ms => 10000, drain_ms => 120000 });
    say_(sprintf('  blackhole: %d/%d at the black hole, %d still at the end, '
                 . 'set-up p50 %s ms, drained in %.1f s',
                 $r->{held}, $r->{blackholed}, $r->{held_after},
                 fmt($r->{p50}, 1), $r->{drain_seconds}));
    if ($r->{ended_early}) {
        say_("  blackhole: $r->{ended_early} hanging sessions ended before "
             . 'the measurement did');
    }
    return $r;
}

sub write_nginx_conf {
    my ($workers) = @_;
    $workers //= 1;
    # a private copy: a rebuild of build/ (cp writes in place) must not
    # change the pages of a module that the running worker has mapped
    my $so = "$dir/ngx_http_segura_module.so";
    # once: cp writes in place, under the mapping of the running master
    -e $so or system('cp', $MODULE, $so) == 0 or die "cannot copy $MODULE";
    my $user = ($> == 0) ? "user root root;\n" : '';
    my $conf = $t->expand(<<"EOF");
load_module $so;
${user}worker_processes $workers;
daemon off;
master_process on;
pid logs/nginx.pid;
error_log logs/error.log warn;
worker_rlimit_nofile 16384;
thread_pool segura threads=16;

events {
    worker_connections 8192;
}

http {
    include /etc/nginx/mime.types;
    access_log off;
    client_body_temp_path logs/client_body;
    segura_database    "%%DATABASE%%";
    segura_login_address_limit off;
    segura_master_key  %%MASTER_KEY%%;
    segura_thread_pool segura;

    server {
        listen 127.0.0.1:%%PORT%% backlog=4096;
        location = /session { segura_session; }
        location = /blackhole { segura_connect_timeout 10s; segura_session; }
        location = /session-norec { segura_recording off; segura_session; }
        location /api/ { segura_api; }
        location = /static { return 200 "static\\n"; }
        # the web UI, for the Ctrl-C row (chromium)
        location / { root $TOP/html; include $TOP/tools/ui-headers.conf; }
    }
}
EOF
    open my $fh, '>', "$dir/conf/nginx.conf" or die $!;
    print $fh $conf;
    close $fh;
}

# a fresh worker (and so a fresh heap) for the memory figures: memory the
# worker freed after earlier sessions would otherwise be counted as free
sub reload_nginx {
    my ($n) = @_;
    $n //= 1;
    my %old = map { $_ => 1 } $t->workers;
    $t->reload;
    my @w;
    SeguraTest::wait_for(sub {
        @w = grep { !$old{$_} && -e "/proc/$_" } $t->workers;
        return @w >= $n && !-e "/proc/$worker";
    }, 30, 'new nginx workers')
        or die "nginx reload failed: workers " . join(" ", $t->workers)
               . ", before " . join(" ", keys %old) . ", old $worker "
               . (-e "/proc/$worker" ? "alive" : "gone");
    $worker = $w[0];
    $watch{segura} = { pids => [ map { $_ + 0 } @w ] };
    SeguraTest::wait_for(sub { SeguraTest::port_open($t->port) }, 10);
}

sub spawn_kid {
    my ($log, @cmd) = @_;
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>>', $log;
        open STDERR, '>>', $log;
        exec @cmd;
        exit 127;
    }
    push @KIDS, $pid;
    return $pid;
}

END {
    my $status = $?;    # waitpid below would overwrite the exit status
    for my $pid (@KIDS) {
        kill 'TERM', $pid;
        waitpid($pid, 0);
    }
    $? = $status;
}

# runs the load client once; dies with its error
sub client {
    my ($target, $mode, %o) = @_;
    if ($target eq 'seguranorec') {
        $o{segura} = { %{ $o{segura} || $base{segura} },
                       path => '/session-norec' };
    }
    my %cfg = (%base, target => $target, mode => $mode,
               watch => $watch{ $target =~ /^segura/ ? 'segura' : $target },
               %o);
    my $file = "$dir/client-$target-$mode.json";
    open my $fh, '>', $file or die $!;
    print $fh $JSON->encode(\%cfg);
    close $fh;

    my $out = `node $BENCH/client.js $file 2>>$dir/client.stderr`;
    my ($line) = grep { /^\{/ } split /\n/, $out;
    my $r = eval { decode_json($line // '') };
    die "client $target $mode: no result:\n$out\n" unless $r;
    die "client $target $mode: $r->{error}\n" if $r->{error};
    if (defined $r->{failed} && $r->{failed}) {
        say_("  $target $mode: $r->{failed} sessions failed: $r->{why}");
    }
    open my $log, '>>', "$dir/results.jsonl" or die $!;
    print $log $JSON->encode($r), "\n";
    close $log;
    return $r;
}

# the recording of the last session: stored bytes per output byte, once
# its end is written (the outbox writes behind the session)
sub stored_ratio {
    my $row = last_recording() or return undef;
    return $row->[0] ? $row->[2] / $row->[0] : undef;
}

# the last session's recording, once its end is written: [bytes out,
# ended, stored chunk bytes, chunks]
sub last_recording {
    my $dbh = $t->db->dbh;
    my $sql = 'select s.bytes_out, r.ended_at is not null,'
        . ' (select sum(length(c.data) + coalesce(length(c.filter), 0))'
        . '  from ssh_session_chunks c'
        . '  where c.session_id = s.id),'
        . ' (select count(*) from ssh_session_chunks c'
        . '  where c.session_id = s.id)'
        . ' from ssh_sessions s join ssh_session_recordings r'
        . ' on r.session_id = s.id order by s.started_at desc limit 1';
    my $row;
    SeguraTest::wait_for(sub {
        $row = $dbh->selectrow_arrayref($sql);
        $row && $row->[1];
    }, 60, 'the recording of the last run') or return undef;
    return $row;
}

# the bytes a session stores for idling: one session held at a prompt
# that prints nothing for $IDLE_S s; the stored bytes of its chunks that
# begin inside the idle window (2 s after the start, up to 0.5 s before the
# end) scaled to an hour, and the bytes outside it (the start marker,
# prompt, end marker: a fixed cost per session)
sub idle_cost {
    my $c = client('segura', 'hold', hold_s => $IDLE_S,
                   deadline => $IDLE_S + 60);
    my $row = last_recording() or return undef;
    my $end = int($c->{held_seconds} * 1000) - 500;
    my ($in, $n_in, $all, $n) = $t->db->dbh->selectrow_array(q{
        select coalesce(sum(length(data)) filter (where t_first >= 2000
                                                  and t_first < ?), 0),
               count(*) filter (where t_first >= 2000 and t_first < ?),
               coalesce(sum(length(data)), 0), count(*)
          from ssh_session_chunks where session_id = (
              select id from ssh_sessions order by started_at desc limit 1)},
        undef, $end, $end);
    my $window = ($end - 2000) / 1000;
    return { per_hour => $in / $window * 3600, window => $window,
             in => $in, n_in => $n_in, fixed => $all - $in,
             n => $n };
}

# instructions per MiB relayed, counted by callgrind (t/perf/instructions.pl,
# the same measurement t/perf_instructions.t checks against the reference)
sub instructions {
    system('valgrind --version >/dev/null 2>&1') == 0 or return undef;
    my $tmp = tempdir('segura-bench-cg-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    chmod 0755, $tmp;
    local $ENV{SEGURA_TEST_TMP} = $tmp;
    local $ENV{MODULE} = $MODULE;
    my $refs = SeguraTest::slurp("$TOP/bench/instructions.ref");
    my %r;
    for my $c ([off => 'per_mib'], [on => 'recorded_per_mib']) {
        say_("instructions: callgrind on the worker, 16 MiB relayed, "
             . "recording $c->[0]");
        my $out = `$^X $TOP/t/perf/instructions.pl 16 $c->[0] 2>&1`;
        my ($line) = $out =~ /^(\{.*\})$/m or next;
        $r{ $c->[0] } = $JSON->decode($line);
        ($r{ $c->[0] }{ref}) = $refs =~ /^$c->[1] (\d+)$/m;
    }
    say_('syscalls: strace -c on the worker, 16 MiB relayed, recording on');
    my $out = `$^X $TOP/t/perf/syscalls.pl 16 on 2>&1`;
    if (my ($line) = $out =~ /^(\{.*\})$/m) {
        $r{syscalls} = $JSON->decode($line);
    }
    return %r ? \%r : undef;
}

# perf on the nginx worker during one more segura throughput run
sub profile {
    system('perf --version >/dev/null 2>&1') == 0 or return undef;
    say_("profile: perf record on the nginx worker during a throughput run");
    my $data = "$dir/perf.data";
    # dwarf call chains: libssh and libcrypto have no frame pointers
    my $pid = spawn_kid("$dir/perf.log", 'perf', 'record', '-e', 'cpu-clock',
                        '-F', '2000', '--call-graph', 'dwarf,16384',
                        '-p', $worker, '-o', $data);
    sleep 1;
    my $r = client('segura', 'throughput', deadline => 90);
    kill 'INT', $pid;
    waitpid($pid, 0);
    @KIDS = grep { $_ != $pid } @KIDS;
    my $rep = "perf report -i $data --stdio --no-children";
    my $dso = `$rep -g none --sort dso 2>/dev/null | grep '%'`;
    my $flat = `$rep -g none --sort dso,symbol --percent-limit 0.5 2>/dev/null | grep '%'`;
    # inclusive shares of the relay's steps
    my @steps = qw(ngx_segura_relay_from_device ngx_segura_terminal_read
                   ssh_channel_read_nonblocking
                   ssh_channel_poll __GI___poll __libc_recv
                   ngx_segura_relay_send __libc_send epoll_wait
                   ngx_segura_relay_to_device ngx_segura_terminal_write
                   ssh_channel_write);
    my $calls = '';
    for (`perf report -i $data --stdio --children -g none --sort symbol 2>/dev/null`) {
        my ($sym) = /\[[.k]\] (\S+)/ or next;
        $calls .= $_ if grep { $sym eq $_ } @steps;
    }

    # the event loop during 100 set-ups: is the worker's main thread busy
    # (blocked in our code) or waiting for a CPU (run-queue delay)?
    say_("profile: perf sched during 100 segura set-ups");
    my $sd = "$dir/sched.data";
    my $sp = spawn_kid("$dir/perf-sched.log", 'perf', 'sched', 'record',
                       '-o', $sd, '--', 'sleep', '60');
    sleep 1;
    my $st = client('segura', 'storm', n => 100, probe_url => $t->url('/static'));
    kill 'INT', $sp;
    waitpid($sp, 0);
    @KIDS = grep { $_ != $sp } @KIDS;
    my (@run, @delay);
    for (`perf sched timehist -i $sd -p $worker 2>/dev/null`) {
        my @c = split;
        next unless @c >= 6 && $c[2] eq "nginx[$worker]";
        push @delay, $c[4];
        push @run, $c[5];
    }
    my $lat = `perf sched latency -i $sd --sort max 2>/dev/null | grep '|' | head -12`;
    my $sched = sprintf("static p99 %.1f ms during this storm; the worker's "
        . "event-loop thread ran %d times, longest run %.1f ms, "
        . "longest wait for a CPU %.1f ms (p99 %.1f ms)",
        $st->{static_p99}, scalar @run, max_(@run), max_(@delay),
        pctl(99, @delay));

    return { mibps => $r->{mibps}, flat => $flat, dso => $dso,
             calls => $calls, sched => $sched, latency => $lat };
}

sub max_ { my $m = 0; $_ > $m and $m = $_ for @_; $m }

sub pctl {
    my ($p, @v) = @_;
    @v = sort { $a <=> $b } @v;
    return 0 unless @v;
    my $i = int($p / 100 * @v + 0.999999) - 1;
    return $v[$i < 0 ? 0 : $i];
}

sub median {
    my @v = sort { $a <=> $b } grep { defined } @_;
    return undef unless @v;
    return $v[$#v / 2] if @v % 2;
    return ($v[@v / 2 - 1] + $v[@v / 2]) / 2;
}

sub fmt {
    my ($v, $d) = @_;
    return 'n/a' unless defined $v;
    return sprintf("%.${d}f", $v);
}

sub ratio {
    my ($a, $b) = @_;
    return 'n/a' unless defined $a && defined $b && $b != 0;
    return sprintf('%.2fx', $a / $b);
}

sub report {
    my @cols = (
        [mibps    => 'throughput MiB/s', 1],
        [setup50  => 'setup p50 ms', 1],
        [setup95  => 'setup p95 ms', 1],
        [hole50   => "setup p50 ms, $HOLES blackholed", 1],
        [flood50  => 'setup p50 ms, login flood', 1],
        [echo50   => 'echo p50 ms', 3],
        [echo99   => 'echo p99 ms', 3],
        [mem50    => 'KiB/session @50', 0],
        [mem1000  => "KiB/session \@$SCALE*", 0],
        [cpu100   => 'CPU s/100 MiB', 2],
        [static99 => 'static p99 ms (100 setups)', 2],
    );

    my %M;
    for my $tg (@TARGETS) {
        $M{$tg}{ $_->[0] } = median(@{ $R{$tg}{ $_->[0] } || [] }) for @cols;
    }

    my @lines;
    push @lines, '| target | ' . join(' | ', map { $_->[1] } @cols) . ' |';
    push @lines, '|---' x (@cols + 1) . '|';
    for my $tg (@TARGETS) {
        push @lines, "| $tg | "
            . join(' | ', map { fmt($M{$tg}{ $_->[0] }, $_->[2]) } @cols) . ' |';
    }
    for my $p ([segura => 'ssh'], [segura => 'sshpipe'],
               [seguraack => 'segura'], [segura => 'seguranorec'],
               [wetty => 'ssh'], [segura => 'wetty'])
    {
        next unless $M{ $p->[0] } && $M{ $p->[1] }
                    && grep({ $_ eq $p->[1] } @TARGETS)
                    && grep({ $_ eq $p->[0] } @TARGETS);
        my ($a, $b) = @$p;
        push @lines, "| $a / $b | "
            . join(' | ', map { ratio($M{$a}{ $_->[0] }, $M{$b}{ $_->[0] }) } @cols)
            . ' |';
    }
    my $table = join("\n", @lines) . "\n";

    my $s = $M{segura};
    my $h = $M{ssh};
    my $w = $M{wetty};
    my @targets;
    my %has = map { $_ => 1 } @TARGETS;
    if ($has{ssh} && $has{segura} && $has{wetty}) {
        no warnings 'uninitialized';
        @targets = (
        ['throughput >= 0.9x ssh and above wetty',
         defined $s->{mibps} && $s->{mibps} >= 0.9 * $h->{mibps}
             && $s->{mibps} > $w->{mibps},
         sprintf('%.2fx ssh, %.2fx wetty', $s->{mibps} / $h->{mibps},
                 $s->{mibps} / $w->{mibps})],
        ['setup p50 <= 1.3x ssh',
         $s->{setup50} <= 1.3 * $h->{setup50},
         sprintf('%.2fx', $s->{setup50} / $h->{setup50})],
        ['echo p50 within 0.5 ms of ssh',
         $s->{echo50} - $h->{echo50} <= 0.5,
         sprintf('%+.3f ms', $s->{echo50} - $h->{echo50})],
        ['echo p99 within 2 ms of ssh',
         $s->{echo99} - $h->{echo99} <= 2,
         sprintf('%+.3f ms', $s->{echo99} - $h->{echo99})],
        ["$SCALE idle sessions at <= 128 KiB each",
         defined $s->{mem1000} && $s->{mem1000} <= 128,
         defined $s->{mem1000} ? sprintf('%.0f KiB', $s->{mem1000}) : 'not run'],
        ['static p99 < 20 ms during 100 set-ups',
         $s->{static99} < 20,
         sprintf('%.2f ms; with plain ssh, nginx idle: %.2f ms',
                 $s->{static99}, $h->{static99})],
        );
    }
    # the stricter baseline: the ssh client reading pipes, not a pty
    my $p = $M{sshpipe};
    if ($has{sshpipe} && $has{segura}) {
        no warnings 'uninitialized';
        push @targets,
            ['throughput >= 1.0x ssh -tt over pipes',
             $s->{mibps} >= $p->{mibps},
             sprintf('%.2fx; %s MiB/s against %s', $s->{mibps} / $p->{mibps},
                     fmt($s->{mibps}, 1), fmt($p->{mibps}, 1))],
            ['echo p99 <= ssh over pipes + 0.2 ms',
             $s->{echo99} <= $p->{echo99} + 0.2,
             sprintf('%+.3f ms', $s->{echo99} - $p->{echo99})],
            ['relay CPU per MiB <= ssh over pipes',
             $s->{cpu100} <= $p->{cpu100},
             sprintf('%.2fx', $s->{cpu100} / $p->{cpu100})];
    }
    # recording on (the default) against off, and what it stores
    my $nr = $M{seguranorec};
    if ($has{seguranorec} && $has{segura}) {
        no warnings 'uninitialized';
        my $st = median(@{ $R{segura}{stored} || [] });
        my $str = median(@{ $R{segura}{stored_r} || [] });
        my $sti = median(@{ $R{segura}{stored_i} || [] });
        my $idle = $IDLE;
        my $tpr = median(@{ $R{segura}{tp_ratio} || [] });
        my $pairs = join(', ', map {
            sprintf('%s/%s', fmt($R{segura}{mibps}[$_], 1),
                    fmt($R{seguranorec}{mibps}[$_], 1))
        } 0 .. $#{ $R{seguranorec}{mibps} || [] });
        push @targets,
            ['throughput with recording >= 0.9x without (same run)',
             $s->{mibps} >= 0.9 * $nr->{mibps},
             sprintf('%s; %s MiB/s against %s (medians); the median of the '
                     . 'runs\' paired ratios %s (runs, on/off: %s); CPU per '
                     . 'MiB %s', ratio($s->{mibps}, $nr->{mibps}),
                     fmt($s->{mibps}, 1), fmt($nr->{mibps}, 1),
                     defined $tpr ? sprintf('%.2fx', $tpr) : 'n/a', $pairs,
                     ratio($s->{cpu100}, $nr->{cpu100}))],
            ['stored bytes per output byte, the 50 MiB stream <= 0.25',
             defined $st && $st <= 0.25,
             defined $st ? sprintf('%.4f (base64 of zeros: very '
                                   . 'compressible)', $st) : 'n/a']
            if row('throughput');
        push @targets,
            ['stored bytes per output byte, 50 MiB of random base64 '
             . '(no goal: 6 bits of entropy per byte, >= 0.75)',
             defined $str,
             defined $str ? sprintf('%.3f', $str) : 'n/a'] if row('recording');
        push @targets,
            ['stored bytes per output byte, an interactive mix (ls -lR /usr, '
             . 'top -b -n 3, git log --stat, ps, dmesg, a licence) <= 0.25',
             defined $sti && $sti <= 0.25,
             defined $sti ? sprintf('%.3f', $sti) : 'n/a'] if row('recording');
        push @targets,
            ["idle cost: bytes stored per hour of a session at a prompt "
             . "($IDLE_S s held, scaled)",
             defined $idle,
             defined $idle
             ? sprintf('%.0f bytes/hour (%d bytes in %d chunks during '
                       . '%.0f s idle), plus %d bytes per session for its '
                       . 'start, prompt and end (%d chunks in all)',
                       $idle->{per_hour}, $idle->{in}, $idle->{n_in},
                       $idle->{window}, $idle->{fixed}, $idle->{n})
             : 'n/a'] if row('recording');
        push @targets,
            ['KiB per idle session with recording (50) <= 64',
             $s->{mem50} <= 64,
             sprintf('%.0f KiB; %.0f KiB without', $s->{mem50},
                     $nr->{mem50})] if row('memory');
        my ($m, $mn) = (median(@{ $R{segura}{mem50s} || [] }),
                        median(@{ $R{seguranorec}{mem50s} || [] }));
        push @targets,
            ['KiB per idle session with recording (50), measured 2.5 s '
             . 'after the last set-up <= 64',
             defined $m && $m <= 64,
             sprintf('%s KiB; %s KiB without', fmt($m, 0), fmt($mn, 0))]
            if row('recording') && row('memory');
    }
    # end-to-end flow control on (a client that acknowledges) against off
    my $k = $M{seguraack};
    if ($has{seguraack} && $has{segura}) {
        no warnings 'uninitialized';
        push @targets,
            ['throughput with flow control >= 0.95x without (same run)',
             $k->{mibps} >= 0.95 * $s->{mibps},
             sprintf('%.2fx; %s MiB/s against %s', $k->{mibps} / $s->{mibps},
                     fmt($k->{mibps}, 1), fmt($s->{mibps}, 1))],
            ['echo p50 with flow control within 0.05 ms of without',
             abs($k->{echo50} - $s->{echo50}) <= 0.05,
             sprintf('%+.3f ms', $k->{echo50} - $s->{echo50})];
    }
    # set-ups during a login flood against quiet ones, same run
    if ($has{segura} && $M{segura}{flood50}) {
        push @targets,
            ['setup p50 during a login flood <= 1.5x quiet (same run)',
             $M{segura}{flood50} <= 1.5 * $M{segura}{setup50},
             sprintf('%.2fx; %s ms against %s ms; last run: %s',
                     $M{segura}{flood50} / $M{segura}{setup50},
                     fmt($M{segura}{flood50}, 1), fmt($M{segura}{setup50}, 1),
                     $R{segura}{flood_note} // '')];
    }
    # a watcher that never reads must not slow the session (issue 16)
    my $wr = median(grep { defined } @{ $R{segura}{watched_ratio} || [] });
    if (defined $wr) {
        push @targets,
            ['throughput with a paused watcher >= 0.9x unwatched (paired in each run)',
             $wr >= 0.9,
             sprintf('%.2fx (runs: %s)', $wr, join(', ', map { defined $_
                 ? sprintf('%.2f', $_) : 'n/a' } @{ $R{segura}{watched_ratio} }))];
    }
    # the blackhole row stands on its own: segura against itself
    my $hr = median(@{ $R{segura}{hole_ratio} || [] });
    if ($HOLES && row('blackhole') && grep { $_ eq 'segura' } @TARGETS) {
        push @targets,
            ["setup p50 while $HOLES devices blackhole <= 1.2x the quiet "
             . 'setup p50 (same run)',
             defined $hr && $hr <= 1.2 && $R{segura}{hole_full},
             (defined $hr ? sprintf('%.2fx', $hr) : 'n/a')
             . sprintf('; %s ms against %s ms; last run: %s',
                       fmt($M{segura}{hole50}, 1), fmt($M{segura}{setup50}, 1),
                       $R{segura}{hole_note} // 'not run')];
    }
    if ($CTRLC) {
        push @targets,
            ['Ctrl-C during `seq 1 200000000` brings the prompt back in the '
             . 'browser <= 0.5 s; JS heap < 100 MiB',
             !$CTRLC->{error} && $CTRLC->{p50} <= 500 && $CTRLC->{heap_mib} < 100,
             $CTRLC->{error} ? "failed: $CTRLC->{error}"
             : sprintf('%.0f ms (runs: %s ms); heap %.1f MiB', $CTRLC->{p50},
                       join(', ', @{ $CTRLC->{runs} }), $CTRLC->{heap_mib})];
    }
    my $verdict = join('', map {
        sprintf("- %s: %s (%s)\n", $_->[0], $_->[1] ? 'holds' : 'MISSED', $_->[2])
    } @targets);

    my $mem_ok = join(', ', map { "$_ " . ($R{$_}{mem1000_ok} // 'n/a') } @TARGETS);

    if (%RATE) {
        my ($r1, $r2) = (median(@{ $RATE{1} }), median(@{ $RATE{2} }));
        $verdict .= sprintf("- set-up rate (100 at once, light device): "
                            . "%s sessions/s with one worker, %s with two "
                            . "(%s; goal >= 1.7x)\n", fmt($r1, 0), fmt($r2, 0),
                            ratio($r2, $r1));
    }
    for my $rec (qw(off on)) {
        my $i = $instr && $instr->{$rec} or next;
        $verdict .= sprintf("- instructions per MiB relayed, recording %s "
                            . "(callgrind, %.0f MiB): %.2f M; the reference of "
                            . "t/perf_instructions.t is %.2f M (%+.1f %%)\n",
                            $rec, $i->{mib}, $i->{per_mib} / 1e6,
                            $i->{ref} / 1e6, ($i->{per_mib} / $i->{ref} - 1) * 100);
    }

    if (my $sc = $instr && $instr->{syscalls}) {
        my $p = $sc->{per_mib};
        $verdict .= sprintf("- system calls per MiB relayed, recording on "
                            . "(strace -c, %.0f MiB): %d (%s)\n", $sc->{mib},
                            $sc->{total}, join(', ', map { "$_ $p->{$_}" }
                                sort { $p->{$b} <=> $p->{$a} } keys %$p));
    }

    print "\n$table\n$verdict";

    # the machine and the versions
    chomp(my $nproc = `nproc`);
    my ($memkb) = SeguraTest::slurp('/proc/meminfo') =~ /MemTotal:\s+(\d+)/;
    my ($cpu) = SeguraTest::slurp('/proc/cpuinfo') =~ /model name\s*:\s*(.*)/;
    chomp(my $kernel = `uname -r`);
    chomp(my $ngx = `$NGINX -v 2>&1`);
    $ngx =~ s/^nginx version: //;
    chomp(my $libssh = `dpkg-query -W -f='\${Version}' libssh-4 2>/dev/null`);
    chomp(my $openssh = `ssh -V 2>&1`);
    chomp(my $node = `node -v`);
    my $wv = decode_json(SeguraTest::slurp(
        "$BENCH/node_modules/wetty/package.json"))->{version};
    my $sv = decode_json(SeguraTest::slurp(
        "$BENCH/node_modules/ssh2/package.json"))->{version};
    my $elapsed = time - $STARTED;

    my $date = strftime('%Y-%m-%d', localtime);
    my $md = <<"EOF";
# make bench, $date

Machine: $nproc CPUs ($cpu), @{[ sprintf('%.1f', $memkb / 1048576) ]} GiB,
Linux $kernel.
Versions: $ngx (one worker), libssh $libssh, $openssh, node $node,
wetty $wv, ssh2 $sv (light device).
Runs: median of $RUNS; the scale column once per target. Rows:
@{[ $ROWS{all} ? 'all' : join(' ', sort keys %ROWS) ]}. The whole run
took @{[ sprintf('%.0f', $elapsed) ]} s.

$table
\* $SCALE idle sessions against the light device (bench/lightsshd.js,
npm ssh2) instead of OpenSSH, which would need about 14 GiB for them;
sessions established: $mem_ok. Every other figure is against OpenSSH.

Targets for segura:

$verdict
Method (bench/client.js, the same client for every row):

- ssh: `ssh -tt` with the same key to the same sshd under a pty
  (node-pty); the client reads the pty master. Server side: the ssh
  client process (what sits between sshd and the terminal).
- seguranorec: the segura client to a location with `segura_recording off`
  (every other segura row records, the default).
- seguraack: the segura client acknowledging every 32 KiB it received, as
  the web UI does for what xterm.js rendered: end-to-end flow control on.
- sshpipe: the same `ssh -tt` with its standard input and output on pipes
  (no local pty): the stricter baseline. Not in the scale column.
- segura: a WebSocket client (npm ws) through nginx and the module; server
  side: the one nginx worker.
- wetty: socket.io (websocket transport) to wetty, acknowledging every
  byte received at once (in 256 KiB commits); server side: wetty's node
  process and the ssh clients it starts.
- The ssh and wetty rows' ssh client uses KexAlgorithms curve25519-sha256,
  the key exchange libssh 0.10 uses; the device's shell starts with an
  empty HOME.
- throughput: the device prints 50 MiB (`head -c 39321600 /dev/zero |
  base64 -w0`); MiB/s from sending the command to the end marker.
- stored bytes per output byte (recording rows): the sum of the stored
  chunks' sizes (`length(data)`: compressed, sealed) of the run's session
  in PostgreSQL, once its recording is complete, over the bytes the
  session printed (`bytes_out`). Streams: the throughput run (base64 of
  zeros), 50 MiB of random base64, and an interactive mix (`ls -lR /usr`
  up to 4 MB, `top -b -n 3`, `git log --stat -n 400` of this repository
  up to 1.5 MB, `ps auxww`, the end of `dmesg`, the GPL-3 text).
- idle cost (recording rows): a session held at its prompt for
  $IDLE_S s and one held 1 s, printing nothing; the difference of their
  stored bytes, scaled to an hour.
- setup: 20 sessions one after another, from the request to the prompt.
- setup with $HOLES blackholed (segura only): the same 20 set-ups while
  $HOLES sessions hang on a device that accepts TCP and never speaks (a
  listener in the load client; nginx `location = /blackhole` with
  `segura_connect_timeout 10s`, longer than the measurement); its ratio to
  the quiet set-up p50 is taken in each run, the median reported.
- echo: `stty raw -echo; exec cat`, then 500 single bytes, each timed
  from write to its echo.
- memory: PSS (/proc/<pid>/smaps_rollup) summed over the server side,
  after n idle sessions minus before them (after one warm-up session;
  nginx reloaded first for a fresh worker), divided by n.
- CPU: utime+stime of the server side over the throughput transfer,
  scaled to 100 MiB.
- static p99: a static request every 5 ms on one keep-alive connection
  (bench/probe.js) to the same server (nginx `location = /static`; for
  wetty one of its static files; for ssh the same idle nginx) while 100
  sessions are requested at once.
EOF
    if ($profile) {
        $md .= "\nProfile of the nginx worker during a segura throughput run"
             . sprintf(" (%.1f MiB/s under perf):\n\n", $profile->{mibps})
             . "```\n$profile->{dso}\n$profile->{flat}```\n\n"
             . "The relay's steps, inclusive (children included):\n\n"
             . "```\n$profile->{calls}```\n\n"
             . "The event loop during 100 segura set-ups (perf sched): "
             . "$profile->{sched}. Run time and run-queue delay per "
             . "command (all threads):\n\n"
             . "```\n$profile->{latency}```\n";
        print "\nevent loop: $profile->{sched}\n";
    }

    make_path("$BENCH/results");
    # a run of some rows does not overwrite the day's whole table
    my $file = "$BENCH/results/$date"
        . ($ROWS{all} ? '' : '-' . join('-', split ' ', $ENV{BENCH_ROWS}))
        . '.md';
    open my $fh, '>', $file or die $!;
    print $fh $md;
    close $fh;
    say_("written $file (" . sprintf('%.0f', $elapsed) . " s)");
}
