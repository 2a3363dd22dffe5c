package SeguraTest::Pg;

# PostgreSQL for the tests: a cluster, a migrated template database, and one
# fresh database per test made from it, with fixture helpers.
#
# Cluster: if SEGURA_TEST_PGHOST (a socket directory) is set, that cluster is
# used as is (`make test` starts one for the whole run); otherwise a private
# one is started on first use under /tmp (or SEGURA_TEST_TMPDIR, or
# SEGURA_TEST_TMP) with
# t/bin/pg-cluster --fast and stopped and removed at END, test failure or
# die included (SEGURA_TEST_KEEP=1 keeps its directory for a post mortem).
# Either way the superuser is "postgres" (SEGURA_TEST_PGSUPERUSER) and the
# application role "segura", both with trust auth on the socket.
#
#     use SeguraTest::Pg;
#     my $db = SeguraTest::Pg->new_database;      # t_<random>, migrated
#     my $u  = $db->insert_user(username => 'alice');
#     $db->dbh->selectrow_array(...);
#     $db->conninfo;     # "host=<sock> dbname=<name> user=segura"
#
# Databases are dropped when their object goes away or at END, whichever
# comes first; only the process that created them drops them (a forked child
# exiting touches nothing).
#
# Class functions: root(), host(), run(@cmd) -> ($rc, $out, $err),
# conninfo_for($db[, $user]), connect_to($db[, $user]), admin_dbh(),
# template().
# Methods: new_database(empty => 0|1), name, conninfo, dbh, new_dbh,
# psql($sql), psql_run($sql, @psql_args), migrate([$sqldir]), drop,
# insert_user, insert_group, insert_device, insert_key, grant, associate,
# insert_ssh_session, insert_web_session, grant_check($u, $k, $d),
# key_devices_for($u, $k).
#
# A private cluster, for a test that stops PostgreSQL or fails it over
# (the shared cluster above is never stopped):
#
#     my $pc = SeguraTest::Pg->private_cluster("$dir/pg1");
#         # t/bin/pg-cluster start --fast in that directory (absolute, under
#         # the test's own), then database "segura" migrated with
#         # tools/segura-migrate: sql/*.sql in order, as for the template
#     $pc->db;            # that database: the same methods as new_database
#                         # gives (dbh, conninfo, fixtures...)
#     $pc->host;          # its socket directory; $pc->dir, $pc->log
#     $pc->stop;          # fast shutdown; the test's handles reconnect
#     $pc->start;         # the same data again
#     $pc->running;
#     my $sb = $pc->standby("$dir/pg2");
#         # pg_basebackup -R of the running $pc, started as a streaming
#         # hot standby (read-only) with its own socket directory
#     $pc->wait_replayed($sb);   # the standby has replayed all $pc wrote
#     $sb->promote;              # returns once it accepts writes
#     my $db = SeguraTest::Pg->database_on([$pc, $sb]);
#         # one database object over several hosts, conninfo
#         # "host=<sock1>,<sock2> dbname=segura user=segura
#         #  target_session_attrs=read-write": its handle follows a failover
#
# Private clusters are stopped at END (and by SeguraTest before it removes
# a test's directory); their directories go with the test's.  Their
# databases are never dropped one by one: the cluster goes whole.

use strict;
use warnings;

use Carp qw(croak);
use Cwd qw(abs_path);
use DBI;
use DBD::Pg qw(:pg_types);
use Digest::SHA qw(sha256 sha256_hex);
use File::Basename qw(dirname);
use File::Path qw(remove_tree);
use File::Temp qw(tempdir);
use POSIX ();

our $TEMPLATE = 'segura_template';

# advisory lock keys, taken in database "postgres": the template is rebuilt
# under the exclusive lock, copied under the shared one
use constant LOCK_TEMPLATE => 6000280510318859348;    # "SEGURATT"

my $ROOT = abs_path(dirname(__FILE__) . '/../../..');
my $OWNER = $$;
my $SUPERUSER = $ENV{SEGURA_TEST_PGSUPERUSER} || 'postgres';

my $HOST;              # socket directory of the cluster in use
my $PRIVATE_DIR;       # set when we started the cluster ourselves
my $ADMIN;             # superuser handle on database "postgres"
my $TEMPLATE_READY;
my %LIVE;              # databases we created and have not dropped yet
my $SEQ = 0;

# a signal must not skip END (which stops a private cluster)
for my $sig (qw(INT TERM HUP)) {
    if (!defined $SIG{$sig} || $SIG{$sig} eq '' || $SIG{$sig} eq 'DEFAULT') {
        $SIG{$sig} = sub { exit 128 + ($sig eq 'INT' ? 2 : $sig eq 'TERM' ? 15 : 1) };
    }
}


# --- class functions -------------------------------------------------------

# the repository's top directory
sub root { $ROOT }


# run a command; returns ($exit_code, $stdout, $stderr); stdin is empty
sub run {
    my (@cmd) = @_;
    my $out = File::Temp->new;
    my $err = File::Temp->new;
    my $pid = fork;
    croak "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>&', $out;
        open STDERR, '>&', $err;
        no warnings q(exec);
        exec { $cmd[0] } @cmd;
        print STDERR "exec $cmd[0]: $!\n";
        POSIX::_exit(127);
    }
    waitpid $pid, 0;
    my $rc = $? & 127 ? 128 + ($? & 127) : $? >> 8;
    return ($rc, _slurp("$out"), _slurp("$err"));
}


# the socket directory of the cluster, starting a private one if needed
sub host {
    return $HOST if defined $HOST;

    if (defined $ENV{SEGURA_TEST_PGHOST} && $ENV{SEGURA_TEST_PGHOST} ne '') {
        $HOST = $ENV{SEGURA_TEST_PGHOST};
        return $HOST;
    }

    my $base = $ENV{SEGURA_TEST_TMPDIR} || $ENV{SEGURA_TEST_TMP} || '/tmp';
    my $dir = tempdir('segura-pg-XXXXXX', DIR => $base);
    my ($rc, $out, $err) = run("$ROOT/t/bin/pg-cluster", 'start', '--fast',
                               $dir);
    if ($rc != 0) {
        # t/bin/pg-cluster may have got as far as starting it
        run("$ROOT/t/bin/pg-cluster", 'stop', $dir);
        remove_tree($dir);
        croak "t/bin/pg-cluster start failed (exit $rc):\n$err";
    }
    $PRIVATE_DIR = $dir;
    ($HOST) = $out =~ /^(\S+)\s*\z/m
        or croak "t/bin/pg-cluster start printed no socket directory";
    return $HOST;
}


# a DBI handle on a database of the cluster at $host (a socket directory,
# or several separated by commas) with more conninfo settings in $attrs
sub _connect {
    my ($host, $dbname, $user, $attrs) = @_;
    my $dsn = "dbi:Pg:host=$host;dbname=$dbname";
    $dsn .= ";$_" for split ' ', $attrs // '';
    return DBI->connect($dsn, $user // 'segura', '', {
        AutoCommit => 1, RaiseError => 1, PrintError => 0,
        # a forked child must not close its parent's connection
        AutoInactiveDestroy => 1,
    });
}


sub conninfo_for {
    my ($dbname, $user) = @_;
    return 'host=' . host() . " dbname=$dbname user=" . ($user // 'segura');
}


sub connect_to {
    my ($dbname, $user) = @_;
    return _connect(host(), $dbname, $user);
}


# superuser handle on database "postgres" (cached, per process)
sub admin_dbh {
    if (!$ADMIN || $ADMIN->{private_segura_pid} != $$ || !$ADMIN->ping) {
        $ADMIN = connect_to('postgres', $SUPERUSER);
        $ADMIN->{private_segura_pid} = $$;
        $ADMIN->do('set client_min_messages = warning');
    }
    return $ADMIN;
}


# Make sure segura_template exists and carries every file of sql/.  It is
# rebuilt (dropped, created, migrated with tools/segura-migrate) when the
# set of files or their contents changed since it was made, which the
# database comment records; otherwise it is left alone.  Serialised across
# processes (prove -j) by an advisory lock.  Returns the template's name.
sub template {
    return $TEMPLATE if $TEMPLATE_READY;

    my $dbh = admin_dbh();
    my $want = 'segura-sql:' . _sql_digest();

    $dbh->do('select pg_advisory_lock(?)', undef, LOCK_TEMPLATE);
    my $ok = eval {
        my ($exists, $comment) = $dbh->selectrow_array(q{
            select true, shobj_description(oid, 'pg_database')
              from pg_database where datname = ?}, undef, $TEMPLATE);

        if (!$exists || ($comment // '') ne $want) {
            $dbh->do(qq{drop database if exists "$TEMPLATE" with (force)});
            $dbh->do(qq{create database "$TEMPLATE" owner segura
                        template template0});
            my ($rc, $out, $err) = run("$ROOT/tools/segura-migrate",
                                       conninfo_for($TEMPLATE));
            die "tools/segura-migrate on $TEMPLATE failed (exit $rc):\n"
                . "$out$err" if $rc != 0;
            $dbh->do(qq{comment on database "$TEMPLATE" is }
                     . $dbh->quote($want));
        }
        1;
    };
    my $e = $@;
    $dbh->do('select pg_advisory_unlock(?)', undef, LOCK_TEMPLATE);
    croak $e unless $ok;

    $TEMPLATE_READY = 1;
    return $TEMPLATE;
}


# --- a database --------------------------------------------------------------

# SeguraTest::Pg->new_database(%opt): a fresh database t_<random> owned by
# segura.  Options: empty => 1 makes it from template0 (no schema, nothing
# recorded) instead of the migrated template.
sub new_database {
    my ($class, %opt) = @_;
    my $empty = delete $opt{empty};
    croak 'new_database: unknown option ' . join(', ', sort keys %opt)
        if %opt;

    host();
    my $from = $empty ? 'template0' : template();
    my $name = 't_' . unpack('H*', _random_bytes(6));
    my $dbh = admin_dbh();

    $dbh->do('select pg_advisory_lock_shared(?)', undef, LOCK_TEMPLATE)
        unless $empty;
    my $ok = eval {
        $dbh->do(qq{create database "$name" owner segura template "$from"});
        1;
    };
    my $e = $@;
    $dbh->do('select pg_advisory_unlock_shared(?)', undef, LOCK_TEMPLATE)
        unless $empty;
    croak "create database $name: $e" unless $ok;

    $LIVE{$name} = 1;
    return bless { name => $name, host => $HOST, pid => $$ }, $class;
}


sub name { $_[0]{name} }
sub host_dir { $_[0]{host} }


sub conninfo {
    my ($self) = @_;
    return "host=$self->{host} dbname=$self->{name} user=segura"
           . ($self->{attrs} ? " $self->{attrs}" : '');
}


# the test's handle on this database (AutoCommit, RaiseError), as segura;
# on a private cluster, a handle the cluster lost (a stop, a failover) is
# replaced
sub dbh {
    my ($self) = @_;
    if (!$self->{dbh} || $self->{dbh_pid} != $$
        || ($self->{private} && !$self->{dbh}->ping))
    {
        $self->{dbh} = $self->new_dbh;
        $self->{dbh_pid} = $$;
    }
    return $self->{dbh};
}


# a new, separate connection (for concurrency tests); the caller owns it
sub new_dbh {
    my ($self) = @_;
    return _connect($self->{host}, $self->{name}, undef, $self->{attrs});
}


# psql -f <file> against this database: ($exit_code, $stdout, $stderr)
sub psql_run {
    my ($self, $sql, @args) = @_;
    my $f = File::Temp->new(SUFFIX => '.sql');
    print {$f} $sql;
    close $f;
    return run(_psql_bin(), '-X', '-q', '-v', 'ON_ERROR_STOP=1', @args,
               '-d', $self->conninfo, '-f', "$f");
}


# psql, unaligned tuples only; returns stdout, croaks on failure
sub psql {
    my ($self, $sql) = @_;
    my ($rc, $out, $err) = $self->psql_run($sql, '-tA');
    croak "psql failed (exit $rc): $err" if $rc != 0;
    return $out;
}


# tools/segura-migrate against this database: ($exit_code, $stdout, $stderr)
sub migrate {
    my ($self, $sqldir) = @_;
    return run("$ROOT/tools/segura-migrate", $self->conninfo,
               defined $sqldir ? ($sqldir) : ());
}


# drop now (terminating its connections); also done by DESTROY and END
sub drop {
    my ($self) = @_;
    return if $self->{pid} != $$ || $self->{dropped}++;
    if ($self->{private}) {
        # its cluster goes whole
        eval { $self->{dbh}->disconnect } if $self->{dbh};
        delete $self->{dbh};
        return;
    }
    if ($self->{dbh}) {
        eval { $self->{dbh}->disconnect };
        delete $self->{dbh};
    }
    _drop_database($self->{name});
}


sub DESTROY {
    my ($self) = @_;
    return if $self->{pid} != $$ || $self->{dropped} || !$LIVE{$self->{name}};
    local ($@, $!, $?);
    eval { $self->drop };
}


# --- fixtures ----------------------------------------------------------------
#
# Each returns the new row's id.  Defaults make a usable row: active, and a
# group with all three permissions; names are unique per process.

sub insert_user {
    my ($self, %a) = @_;
    my $n = ++$SEQ;
    return $self->_insert('users', \%a, {
        username      => "user$n",
        display_name  => "User $n",
        password_hash => undef,
        is_admin      => delete $a{admin} ? 1 : 0,
        status        => 'active',
    });
}


sub insert_group {
    my ($self, %a) = @_;
    my $n = ++$SEQ;
    return $self->_insert('access_groups', \%a, {
        name            => "group$n",
        description     => '',
        use_credentials => 1,
        access_devices  => 1,
        remote_session  => 1,
    });
}


sub insert_device {
    my ($self, %a) = @_;
    my $n = ++$SEQ;
    return $self->_insert('devices', \%a, {
        name                 => "device$n",
        address              => '127.0.0.1',
        port                 => 22,
        status               => 'active',
        tags                 => [],
        host_key             => undef,
        host_key_fingerprint => undef,
    });
}


# private_key_enc defaults to a dummy 45-byte blob shaped like the vault's
# (key id, nonce, "ciphertext", tag); it decrypts to nothing.
sub insert_key {
    my ($self, %a) = @_;
    my $n = ++$SEQ;
    my $pub = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI'
              . unpack('H*', sha256("key$n$$")) . " key$n";
    return $self->_insert('ssh_keys', \%a, {
        name            => "key$n",
        status          => 'active',
        tags            => [],
        owner           => '',
        username        => 'segura',
        key_type        => 'ssh-ed25519',
        bits            => 256,
        public_key      => $pub,
        fingerprint     => 'SHA256:' . unpack('H*', sha256($pub)),
        private_key_enc => "\x01" . ("\0" x 12) . "dummy-ciphertext"
                           . ("\xaa" x 16),
        passphrase_enc  => undef,
    }, { private_key_enc => 1, passphrase_enc => 1 });
}


# grant(group => $gid, members => [...], keys => [...], devices => [...]);
# without group, a new fully permitted group is made.  Returns the group id.
sub grant {
    my ($self, %a) = @_;
    my $g = delete $a{group} // $self->insert_group;
    my %what = (members => ['group_members', 'user_id'],
                keys    => ['group_keys', 'key_id'],
                devices => ['group_devices', 'device_id']);
    for my $k (sort keys %a) {
        my $w = $what{$k} or croak "grant: unknown argument $k";
        for my $id (@{ $a{$k} }) {
            $self->dbh->do("insert into $w->[0] (group_id, $w->[1])
                            values (?, ?) on conflict do nothing",
                           undef, $g, $id);
        }
    }
    return $g;
}


# associate(key => $kid, device => $did, main => 0|1); returns 1
sub associate {
    my ($self, %a) = @_;
    my ($k, $d) = (delete $a{key}, delete $a{device});
    my $main = delete $a{main} ? 1 : 0;
    croak 'associate: unknown argument ' . join(', ', sort keys %a) if %a;
    croak 'associate: key and device are required'
        unless defined $k && defined $d;
    $self->dbh->do('insert into key_devices (key_id, device_id, is_main)
                    values (?, ?, ?)', undef, $k, $d, $main);
    return 1;
}


# an ssh_sessions audit row (names copied by the table's trigger);
# returns its uuid
sub insert_ssh_session {
    my ($self, %a) = @_;
    $a{user_id} = delete $a{user} if exists $a{user};
    $a{key_id} = delete $a{key} if exists $a{key};
    $a{device_id} = delete $a{device} if exists $a{device};
    return $self->_insert('ssh_sessions', \%a, {
        user_id => undef, key_id => undef, device_id => undef,
        client_addr => '127.0.0.1', node => 'test',
    });
}


# a web login session for token $a{token} (stored as its SHA-256), valid for
# $a{expires_in} seconds (default 3600); returns its id
sub insert_web_session {
    my ($self, %a) = @_;
    my $token = delete $a{token} // croak 'insert_web_session: token required';
    my $ttl = delete $a{expires_in} // 3600;
    $a{user_id} = delete $a{user} if exists $a{user};
    $a{token_hash} = sha256($token);
    $a{expires_at} = $self->dbh->selectrow_array(
        q{select now() + make_interval(secs => ?)}, undef, $ttl);
    return $self->_insert('web_sessions', \%a, {
        user_id => undef, client_addr => '127.0.0.1', user_agent => 'test',
    }, { token_hash => 1 });
}


sub grant_check {
    my ($self, $user, $key, $device) = @_;
    return scalar $self->dbh->selectrow_array(
        'select segura_grant_check(?, ?, ?)', undef, $user, $key, $device);
}


# [ { device_id, is_main, reason }, ... ] in the function's order
sub key_devices_for {
    my ($self, $user, $key) = @_;
    return $self->dbh->selectall_arrayref(
        'select device_id, is_main, reason from segura_key_devices_for(?, ?)',
        { Slice => {} }, $user, $key);
}


# --- private clusters -----------------------------------------------------

my @CLUSTERS;          # private clusters this process started


sub private_cluster {
    my ($class, $dir) = @_;
    croak 'private_cluster: an absolute directory' unless $dir && $dir =~ m{^/};
    my $pc = SeguraTest::Pg::Cluster->_new($dir);
    $pc->start;
    $pc->_migrate;
    return $pc;
}


# one database object over the clusters given, in that order, for the
# read-write one of them (libpq tries each host in turn)
sub database_on {
    my ($class, $clusters, %opt) = @_;
    my $name = delete $opt{name} // 'segura';
    croak 'database_on: unknown option ' . join(', ', sort keys %opt) if %opt;
    return bless {
        name    => $name,
        host    => join(',', map { $_->host } @$clusters),
        attrs   => 'target_session_attrs=read-write',
        pid     => $$,
        private => 1,
    }, $class;
}


# stops every private cluster still running; SeguraTest calls it before it
# removes a test's directory, END does too
sub stop_private_clusters {
    for my $pc (reverse @CLUSTERS) {
        next unless $pc->{pid} == $$;
        eval { $pc->stop };
        warn "SeguraTest::Pg: $@" if $@;
    }
    @CLUSTERS = ();
}


package SeguraTest::Pg::Cluster;

use Carp qw(croak);
use Time::HiRes ();

sub _new {
    my ($class, $dir) = @_;
    my $self = bless { dir => $dir, pid => $$, host => "$dir/sock" }, $class;
    push @CLUSTERS, $self;
    return $self;
}

sub dir  { $_[0]{dir} }
sub host { $_[0]{host} }
sub log  { "$_[0]{dir}/postgres.log" }

sub _pg_cluster {
    my ($self, @args) = @_;
    my ($rc, $out, $err) = SeguraTest::Pg::run("$ROOT/t/bin/pg-cluster", @args);
    croak "t/bin/pg-cluster @args failed (exit $rc):\n$err" if $rc != 0;
    return $out;
}

sub start {
    my ($self) = @_;
    my $out = $self->_pg_cluster('start', '--fast', $self->{dir});
    ($self->{host}) = $out =~ /^(\S+)\s*\z/m
        or croak "t/bin/pg-cluster start printed no socket directory";
    $self->{running} = 1;
    return $self;
}

sub stop {
    my ($self) = @_;
    return unless $self->{running};
    $self->_disconnect;
    $self->_pg_cluster('stop', $self->{dir});
    $self->{running} = 0;
    return $self;
}

sub running {
    my ($self) = @_;
    my ($rc) = SeguraTest::Pg::run("$ROOT/t/bin/pg-cluster", 'status',
                                   $self->{dir});
    return $rc == 0;
}

# the migrated database "segura" (made by t/bin/pg-cluster)
sub db {
    my ($self) = @_;
    return $self->{db} //= bless {
        name => 'segura', host => $self->{host}, pid => $$, private => 1,
    }, 'SeguraTest::Pg';
}

# superuser handle on database "postgres" of this cluster
sub admin_dbh {
    my ($self) = @_;
    if (!$self->{admin} || !$self->{admin}->ping) {
        $self->{admin} = SeguraTest::Pg::_connect($self->{host}, 'postgres',
                                                  $SUPERUSER);
    }
    return $self->{admin};
}

sub _disconnect {
    my ($self) = @_;
    for my $h (delete $self->{admin},
               $self->{db} ? delete $self->{db}{dbh} : ()) {
        eval { $h->disconnect } if $h;
    }
}

sub _migrate {
    my ($self) = @_;
    my ($rc, $out, $err) = $self->db->migrate;
    croak "tools/segura-migrate in $self->{dir} failed (exit $rc):\n$out$err"
        if $rc != 0;
}

sub standby {
    my ($self, $dir) = @_;
    croak 'standby: an absolute directory' unless $dir && $dir =~ m{^/};
    my $sb = SeguraTest::Pg::Cluster->_new($dir);
    my $out = $self->_pg_cluster('standby', '--fast', $self->{dir}, $dir);
    ($sb->{host}) = $out =~ /^(\S+)\s*\z/m
        or croak "t/bin/pg-cluster standby printed no socket directory";
    $sb->{running} = 1;
    $sb->{standby} = 1;
    return $sb;
}

sub promote {
    my ($self) = @_;
    $self->_pg_cluster('promote', $self->{dir});
    delete $self->{standby};
    return $self;
}

# waits until the standby $sb has replayed everything written here so far
# (the insert position: with --fast's synchronous_commit=off a commit may
# not be written yet when it returns)
sub wait_replayed {
    my ($self, $sb, $timeout) = @_;
    my ($lsn) = $self->admin_dbh->selectrow_array(
        'select pg_current_wal_insert_lsn()');
    my $deadline = Time::HiRes::time() + ($timeout // 20);
    while (Time::HiRes::time() < $deadline) {
        my ($done) = $sb->admin_dbh->selectrow_array(
            'select pg_last_wal_replay_lsn() >= ?::pg_lsn', undef, $lsn);
        return 1 if $done;
        Time::HiRes::sleep(0.05);
    }
    croak "the standby in $sb->{dir} did not replay $lsn within the time";
}


package SeguraTest::Pg;


# --- internals -----------------------------------------------------------------

sub _insert {
    my ($self, $table, $given, $defaults, $bytea) = @_;
    my %row = %$defaults;
    for my $k (keys %$given) {
        croak "$table: unknown column $k" unless exists $defaults->{$k}
            || $self->_has_column($table, $k);
        $row{$k} = $given->{$k};
    }
    my @cols = sort keys %row;
    my $sql = "insert into $table (" . join(', ', @cols) . ') values ('
              . join(', ', ('?') x @cols) . ') returning id';
    my $sth = $self->dbh->prepare($sql);
    for my $i (0 .. $#cols) {
        my $c = $cols[$i];
        $sth->bind_param($i + 1, $row{$c},
                         $bytea && $bytea->{$c} ? { pg_type => PG_BYTEA } : ());
    }
    $sth->execute;
    my ($id) = $sth->fetchrow_array;
    $sth->finish;
    return $id;
}


sub _has_column {
    my ($self, $table, $col) = @_;
    return scalar $self->dbh->selectrow_array(q{
        select 1 from information_schema.columns
         where table_schema = current_schema() and table_name = ?
           and column_name = ?}, undef, $table, $col);
}


sub _drop_database {
    my ($name) = @_;
    delete $LIVE{$name};
    return unless defined $HOST;
    # with (force) terminates the database's connections first
    admin_dbh()->do(qq{drop database if exists "$name" with (force)});
}


sub _sql_digest {
    my $sha = Digest::SHA->new(256);
    for my $f (sort glob "$ROOT/sql/*.sql") {
        my $base = $f =~ s{.*/}{}r;
        $sha->add($base, "\0", _slurp($f), "\0");
    }
    return $sha->hexdigest;
}


sub _psql_bin {
    return $ENV{PSQL} if $ENV{PSQL};
    for my $d (split /:/, $ENV{PATH} // '') {
        return "$d/psql" if -x "$d/psql";
    }
    my @c = sort { _ver($a) <=> _ver($b) } glob '/usr/lib/postgresql/*/bin/psql';
    return $c[-1] // croak 'psql not found (apt-get install postgresql-client)';
}


sub _ver { ($_[0] =~ m{/postgresql/(\d+)})[0] // 0 }


sub _random_bytes {
    my ($n) = @_;
    open my $fh, '<:raw', '/dev/urandom' or croak "/dev/urandom: $!";
    read($fh, my $buf, $n) == $n or croak "/dev/urandom: short read";
    return $buf;
}


sub _slurp {
    my ($f) = @_;
    open my $fh, '<:raw', $f or croak "$f: $!";
    local $/;
    return scalar <$fh>;
}


END {
    if ($$ == $OWNER) {
        local ($?, $@, $!);
        stop_private_clusters();
        if ($PRIVATE_DIR) {
            # the whole cluster goes: no need to drop databases one by one
            %LIVE = ();
            if ($ADMIN) {
                eval { $ADMIN->disconnect };
                undef $ADMIN;
            }
            my ($rc, undef, $err) = run("$ROOT/t/bin/pg-cluster", 'stop',
                                        $PRIVATE_DIR);
            if ($rc != 0) {
                warn "SeguraTest::Pg: stopping the cluster in $PRIVATE_DIR"
                     . " failed, left in place:\n$err";
            } elsif ($ENV{SEGURA_TEST_KEEP}) {
                warn "SeguraTest::Pg: kept $PRIVATE_DIR\n";
            } else {
                remove_tree($PRIVATE_DIR);
            }
            undef $HOST;
        } else {
            for my $name (sort keys %LIVE) {
                eval { _drop_database($name) };
                warn "SeguraTest::Pg: drop database $name: $@" if $@;
            }
            if ($ADMIN) {
                eval { $ADMIN->disconnect };
                undef $ADMIN;
            }
        }
    }
}


1;
