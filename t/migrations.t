#!/usr/bin/perl
# Migrations: tools/segura-migrate on empty databases (once, twice,
# concurrently, on a clash) and the schema's constraints and ON DELETE rules.

use strict;
use warnings;

use Test::More;
use File::Temp ();
use POSIX ();
use Time::HiRes qw(time sleep);

use SeguraTest::Pg;

my $ROOT = SeguraTest::Pg::root();

my @files = map { s{.*/}{}r } sort glob "$ROOT/sql/*.sql";
my @want = map { /^(\d+)_(.*)\.sql$/ ? [0 + $1, "$1_$2"] : () } @files;
ok(@want >= 1 && @want == @files, 'sql/ holds NNN_name.sql files')
    or diag explain \@files;

# poll $cond (a sub) until true or $secs pass
sub wait_for {
    my ($what, $secs, $cond) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) {
        return 1 if $cond->();
        sleep 0.05;
    }
    fail("timed out waiting for $what");
    return 0;
}

sub recorded {
    my ($db) = @_;
    return $db->dbh->selectall_arrayref(
        'select version, name from schema_migrations order by version');
}

sub schema_fingerprint {
    my ($db) = @_;
    return $db->dbh->selectall_arrayref(q{
        select c.relname, c.relkind, count(a.attnum)
          from pg_class c
          join pg_namespace n on n.oid = c.relnamespace
          left join pg_attribute a on a.attrelid = c.oid and a.attnum > 0
         where n.nspname = 'public'
         group by 1, 2 order by 1});
}


# --- an empty database, twice -------------------------------------------------

{
    my $db = SeguraTest::Pg->new_database(empty => 1);
    is($db->dbh->selectrow_array(
           q{select to_regclass('schema_migrations')}), undef,
       'empty database has no schema_migrations');

    my ($rc, $out, $err) = $db->migrate;
    is($rc, 0, 'first run exits 0') or diag $err;
    is_deeply([split /\n/, $out], [map { "applied $_->[1]" } @want],
              'first run prints "applied NNN_name" per file, in order');
    is($err, '', 'first run writes nothing to stderr');
    is_deeply(recorded($db), \@want,
              'schema_migrations has exactly one row per file');

    my $before = schema_fingerprint($db);
    my ($t0) = $db->dbh->selectrow_array(
        'select max(applied_at) from schema_migrations');

    ($rc, $out, $err) = $db->migrate;
    is($rc, 0, 'second run exits 0') or diag $err;
    is($out, "nothing to apply\n", 'second run prints "nothing to apply"');
    is_deeply(recorded($db), \@want, 'second run records nothing new');
    is_deeply(schema_fingerprint($db), $before, 'second run changes no table');
    is(scalar $db->dbh->selectrow_array(
           'select max(applied_at) from schema_migrations'), $t0,
       'applied_at unchanged');

    # an unknown later version in the database is reported, not fatal
    $db->dbh->do(q{insert into schema_migrations (version, name)
                   values (9999, '9999_from_the_future')});
    ($rc, $out, $err) = $db->migrate;
    is($rc, 0, 'unknown recorded version: exits 0');
    like($err, qr/migrations not in .*9999/, 'unknown recorded version: warned');
}


# --- two runners at once ------------------------------------------------------------

{
    my $db = SeguraTest::Pg->new_database(empty => 1);

    # hold the migrators' lock so both runners are surely waiting on it at
    # the same time, then let them race
    my $hold = $db->new_dbh;
    $hold->do('select pg_advisory_lock(6000280510318857543)');

    my @kids;
    for my $i (1, 2) {
        my $out = File::Temp->new;
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            open STDOUT, '>', "$out" or POSIX::_exit(126);
            open STDERR, '>&', \*STDOUT or POSIX::_exit(126);
            no warnings q(exec);
            exec "$ROOT/tools/segura-migrate", $db->conninfo;
            POSIX::_exit(127);
        }
        push @kids, [$pid, $out];
    }

    wait_for('both runners to wait for the lock', 30, sub {
        $hold->selectrow_array(q{
            select count(*) from pg_locks
             where locktype = 'advisory' and not granted
               and database = (select oid from pg_database
                                where datname = current_database())}) == 2;
    }) and pass('both runners wait on the advisory lock');

    $hold->do('select pg_advisory_unlock(6000280510318857543)');
    $hold->disconnect;

    my @applied;
    for my $k (@kids) {
        waitpid $k->[0], 0;
        is($? >> 8, 0, "concurrent runner $k->[0] exits 0");
        my $text = do { local (@ARGV, $/) = ("$k->[1]"); <> };
        push @applied, $text =~ /^applied (\S+)$/mg;
        like($text, qr/^(applied \S+\n)+\z|^nothing to apply\n\z/,
             'concurrent runner output is clean') or diag $text;
    }
    is_deeply([sort @applied], [sort map { $_->[1] } @want],
              'each file applied exactly once across both runners');
    is_deeply(recorded($db), \@want, 'each version recorded once');
}


# --- a clash: another writer records a version first ------------------------------

{
    my $db = SeguraTest::Pg->new_database(empty => 1);
    my ($rc, $out, $err) = $db->migrate("$ROOT/t/no-such-dir");
    isnt($rc, 0, 'missing sqldir fails');

    # make schema_migrations exist with nothing recorded
    $db->dbh->do(q{create table schema_migrations (
        version integer primary key, name text not null,
        applied_at timestamptz not null default now())});

    # a writer that ignores the lock records version 1 but has not
    # committed: the runner sees it as not applied, tries, and must fail
    my $other = $db->new_dbh;
    $other->begin_work;
    $other->do(q{insert into schema_migrations (version, name)
                 values (?, 'elsewhere')}, undef, $want[0][0]);

    my $out_f = File::Temp->new;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', "$out_f" or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(126);
        no warnings q(exec);
        exec "$ROOT/tools/segura-migrate", $db->conninfo;
        POSIX::_exit(127);
    }

    wait_for('the runner to block on the uncommitted version', 30, sub {
        $db->dbh->selectrow_array(q{
            select count(*) from pg_stat_activity
             where datname = current_database()
               and application_name = 'segura-migrate'
               and wait_event_type = 'Lock'}) == 1;
    }) and pass('runner blocks on the other writer\'s version row');
    $other->commit;
    $other->disconnect;

    waitpid $pid, 0;
    isnt($? >> 8, 0, 'runner fails when another node got there first');
    my $text = do { local (@ARGV, $/) = ("$out_f"); <> };
    like($text, qr/duplicate key value violates unique constraint/,
         'the clash is reported') or diag $text;
    is_deeply(recorded($db), [[$want[0][0], 'elsewhere']],
              'nothing of the failed run is recorded');
    is(scalar $db->dbh->selectrow_array(q{select to_regclass('users')}),
       undef, 'nothing of the failed run is applied');
}


# --- constraints --------------------------------------------------------------------

my $db = SeguraTest::Pg->new_database;
my $dbh = $db->dbh;

sub rejected {
    my ($name, $code, $sub) = @_;
    my $ok = eval { $sub->(); 1 };
    my $state = $dbh->state;
    ok(!$ok, "$name: rejected") or return;
    is($state, $code, "$name: SQLSTATE $code") or diag $@;
}

sub accepted {
    my ($name, $sub) = @_;
    ok(eval { $sub->(); 1 }, "$name: accepted") or diag $@;
}

my $u = $db->insert_user(username => 'alice');
rejected('duplicate user name', '23505',
         sub { $db->insert_user(username => 'alice') });
rejected('user name differing only in case', '23505',
         sub { $db->insert_user(username => 'ALICE') });
rejected('user name with a space', '23514',
         sub { $db->insert_user(username => 'al ice') });
rejected('empty user name', '23514',
         sub { $db->insert_user(username => '') });
rejected('65-character user name', '23514',
         sub { $db->insert_user(username => 'a' x 65) });
accepted('64-character user name with ._@-',
         sub { $db->insert_user(username => 'a.b_c@d-' . 'e' x 56) });
rejected('bad user status', '23514',
         sub { $db->insert_user(status => 'disabled') });
rejected('password hash that is not argon2id', '23514',
         sub { $db->insert_user(password_hash => 'plaintext') });
accepted('argon2id password hash', sub {
    $db->insert_user(password_hash =>
        '$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG');
});

my $d = $db->insert_device(name => 'web1');
rejected('duplicate device name', '23505',
         sub { $db->insert_device(name => 'web1') });
rejected('port 0', '23514', sub { $db->insert_device(port => 0) });
rejected('port 65536', '23514', sub { $db->insert_device(port => 65536) });
accepted('port 1', sub { $db->insert_device(port => 1) });
accepted('port 65535', sub { $db->insert_device(port => 65535) });
rejected('bad device status', '23514',
         sub { $db->insert_device(status => 'up') });
rejected('address starting with -', '23514',
         sub { $db->insert_device(address => '-oProxyCommand=x') });
rejected('address with a space', '23514',
         sub { $db->insert_device(address => 'a b') });
accepted('IPv6 address', sub { $db->insert_device(address => 'fe80::1%eth0') });
rejected('host key without fingerprint', '23514',
         sub { $db->insert_device(host_key => 'ssh-ed25519 AAAA') });

my $k = $db->insert_key(name => 'deploy');
rejected('duplicate key name', '23505',
         sub { $db->insert_key(name => 'deploy') });
rejected('bad key status', '23514',
         sub { $db->insert_key(status => 'revoked') });
rejected('28-byte private key blob', '23514',
         sub { $db->insert_key(private_key_enc => 'x' x 28) });
rejected('28-byte passphrase blob', '23514',
         sub { $db->insert_key(passphrase_enc => 'x' x 28) });
accepted('29-byte blobs',
         sub { $db->insert_key(private_key_enc => 'x' x 29,
                               passphrase_enc => 'y' x 29) });

rejected('bad web session token hash', '23514', sub {
    $dbh->do(q{insert into web_sessions (token_hash, user_id, expires_at)
               values ('\x00', ?, now() + interval '1 hour')}, undef, $u);
});

my $d2 = $db->insert_device;
$db->associate(key => $k, device => $d, main => 1);
rejected('a second main device for a key', '23505',
         sub { $db->associate(key => $k, device => $d2, main => 1) });
accepted('a second, non-main device',
         sub { $db->associate(key => $k, device => $d2) });
rejected('the same association twice', '23505',
         sub { $db->associate(key => $k, device => $d2) });

# updated_at follows updates
$dbh->do(q{update users set updated_at = '2000-01-01' where id = ?}, undef, $u);
ok($dbh->selectrow_array(
       q{select updated_at > '2000-01-01' from users where id = ?}, undef, $u),
   'updated_at is set by the trigger');


# --- ON DELETE ----------------------------------------------------------------------

{
    my $g = $db->grant(members => [$u], keys => [$k], devices => [$d, $d2]);
    my $s = $db->insert_ssh_session(user => $u, key => $k, device => $d);
    my $ws = $db->insert_web_session(user => $u, token => 'secret-token');

    is_deeply($dbh->selectrow_arrayref(q{
        select username, key_name, device_name, device_address, device_port
          from ssh_sessions where id = ?}, undef, $s),
        ['alice', 'deploy', 'web1', '127.0.0.1', 22],
        'ssh_sessions copies names from the referenced rows');

    $dbh->do('delete from devices where id = ?', undef, $d);
    is($dbh->selectrow_array(
           'select count(*) from key_devices where device_id = ?', undef, $d),
       0, 'deleting a device removes its key associations (main included)');
    is($dbh->selectrow_array(
           'select count(*) from key_devices where key_id = ?', undef, $k),
       1, 'the key keeps its other associations');
    is($dbh->selectrow_array(
           'select count(*) from group_devices where device_id = ?', undef, $d),
       0, 'deleting a device removes its group grants');
    is($dbh->selectrow_array(
           'select count(*) from group_devices where group_id = ?', undef, $g),
       1, 'the group keeps its other device grants');

    $dbh->do('delete from users where id = ?', undef, $u);
    is_deeply($dbh->selectrow_arrayref(q{
        select user_id, device_id, username, device_name
          from ssh_sessions where id = ?}, undef, $s),
        [undef, undef, 'alice', 'web1'],
        'deleting a user (and device) keeps the session row, ids set null');
    is($dbh->selectrow_array(
           'select count(*) from group_members where user_id = ?', undef, $u),
       0, 'deleting a user removes its memberships');
    is($dbh->selectrow_array(
           'select count(*) from web_sessions where id = ?', undef, $ws),
       0, 'deleting a user removes its web sessions');

    $dbh->do('delete from ssh_keys where id = ?', undef, $k);
    is_deeply($dbh->selectrow_arrayref(
        'select key_id, key_name from ssh_sessions where id = ?', undef, $s),
        [undef, 'deploy'], 'deleting a key keeps the session row');
    is($dbh->selectrow_array(
           'select count(*) from group_keys where key_id = ?', undef, $k),
       0, 'deleting a key removes its group grants');
}

done_testing;
