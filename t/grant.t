#!/usr/bin/perl
# Grants: segura_grant_check() reason codes and their order,
# segura_key_devices_for() (the Remote Access report), and the
# segura_grant_changed notifications.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use SeguraTest::Pg;

my $db = SeguraTest::Pg->new_database;
my $dbh = $db->dbh;

# a user, key and device, associated, granted by one fully permitted group
sub fixture {
    my (%o) = @_;
    my %f;
    $f{user} = $db->insert_user(admin => $o{admin});
    $f{key} = $db->insert_key;
    $f{device} = $db->insert_device;
    $db->associate(key => $f{key}, device => $f{device}, main => 1);
    $f{group} = $db->grant(members => [$f{user}], keys => [$f{key}],
                           devices => [$f{device}]);
    return \%f;
}

sub check {
    my ($f, %o) = @_;
    return $db->grant_check($o{user} // $f->{user}, $o{key} // $f->{key},
                            $o{device} // $f->{device});
}

sub set {
    my ($table, $id, $col, $val) = @_;
    $dbh->do("update $table set $col = ? where id = ?", undef, $val, $id);
}

my ($no_id) = $dbh->selectrow_array('select 9000000000000000000::bigint');

# each case starts from a granted fixture, breaks one thing, expects a code
my @cases = (
    [ok => sub { }],
    [unknown_user => sub { $_[0]{user} = $no_id }],
    [user_inactive => sub { set(users => $_[0]{user}, status => 'inactive') }],
    [unknown_key => sub { $_[0]{key} = $no_id }],
    [unknown_device => sub { $_[0]{device} = $no_id }],
    [key_inactive => sub { set(ssh_keys => $_[0]{key}, status => 'inactive') }],
    [device_inactive =>
        sub { set(devices => $_[0]{device}, status => 'inactive') }],
    [key_not_associated => sub {
        $dbh->do('delete from key_devices where key_id = ? and device_id = ?',
                 undef, $_[0]{key}, $_[0]{device});
    }],
    [no_group => sub {
        $dbh->do('delete from group_members where user_id = ?',
                 undef, $_[0]{user});
    }],
    [no_use_credentials =>
        sub { set(access_groups => $_[0]{group}, use_credentials => 0) }],
    [no_access_devices =>
        sub { set(access_groups => $_[0]{group}, access_devices => 0) }],
    [no_remote_session =>
        sub { set(access_groups => $_[0]{group}, remote_session => 0) }],
    [key_not_granted => sub {
        $dbh->do('delete from group_keys where group_id = ?',
                 undef, $_[0]{group});
    }],
    [device_not_granted => sub {
        $dbh->do('delete from group_devices where group_id = ?',
                 undef, $_[0]{group});
    }],
    [not_granted_together => sub {
        # the key stays in the group, the device moves to a second one
        $dbh->do('delete from group_devices where group_id = ?',
                 undef, $_[0]{group});
        $db->grant(members => [$_[0]{user}], devices => [$_[0]{device}]);
    }],
);

for my $c (@cases) {
    my ($want, $break) = @$c;
    my $f = fixture();
    is(check($f), 'ok', "$want: the fixture is granted before breaking it");
    $break->($f);
    is(check($f), $want, "broken: $want");
}


# --- the permission codes look at the user's best group ------------------------

{
    # one group has use_credentials + access_devices (and the grants), the
    # other only remote_session: no single group has all three
    my $f = fixture();
    set(access_groups => $f->{group}, remote_session => 0);
    $db->grant(group => $db->insert_group(use_credentials => 0,
                                          access_devices => 0,
                                          remote_session => 1),
               members => [$f->{user}], keys => [$f->{key}],
               devices => [$f->{device}]);
    is(check($f), 'no_remote_session',
       'permissions split over two groups: no_remote_session');
}

{
    # the group with the most permissions decides, not the lowest id
    my $f = fixture();
    set(access_groups => $f->{group}, $_ => 0)
        for qw(use_credentials access_devices);          # 1 permission
    $db->grant(group => $db->insert_group(access_devices => 0),   # 2
               members => [$f->{user}]);
    is(check($f), 'no_access_devices',
       'the group with the most permissions is reported');
}

for my $order ([qw(access_devices use_credentials)],
               [qw(use_credentials access_devices)])
{
    # two groups with two permissions each: the lower id is reported
    my $f = fixture();
    set(access_groups => $f->{group}, $order->[0] => 0);
    $db->grant(group => $db->insert_group($order->[1] => 0),
               members => [$f->{user}]);
    my $want = $order->[0] eq 'use_credentials'
               ? 'no_use_credentials' : 'no_access_devices';
    is(check($f), $want, "tie on permissions: lowest group id ($want)");
}

{
    # another fully permitted group of the user, with no grants, does not
    # turn a permission failure of the granting group into a grant
    my $f = fixture();
    set(access_groups => $f->{group}, use_credentials => 0);
    $db->grant(members => [$f->{user}]);
    is(check($f), 'key_not_granted',
       'key and device granted only by a group lacking a permission');
}

{
    # device granted by a fully permitted group, key only by a group that
    # lacks a permission: the key is not granted
    my $f = fixture();
    my $partial = $db->insert_group(remote_session => 0);
    $dbh->do('delete from group_keys where group_id = ?', undef, $f->{group});
    $db->grant(group => $partial, members => [$f->{user}], keys => [$f->{key}]);
    is(check($f), 'key_not_granted',
       'a key granted by a partial group only: key_not_granted');
}

{
    # another user's membership grants nothing
    my $f = fixture();
    my $other = $db->insert_user;
    is(check($f, user => $other), 'no_group', 'a user not in the group');
}

{
    my $f = fixture(admin => 1);
    is(check($f), 'ok', 'an admin with a grant');
    $dbh->do('delete from group_members where user_id = ?', undef, $f->{user});
    is(check($f), 'no_group', 'admins are not exempt');
}


# --- order of the checks when several fail -----------------------------------------

{
    my $f = fixture();
    set(users => $f->{user}, status => 'inactive');
    is(check($f, key => $no_id), 'user_inactive',
       'user_inactive before unknown_key');

    $f = fixture();
    set(ssh_keys => $f->{key}, status => 'inactive');
    is(check($f, device => $no_id), 'unknown_device',
       'unknown_device before key_inactive');

    $f = fixture();
    set(ssh_keys => $f->{key}, status => 'inactive');
    set(devices => $f->{device}, status => 'inactive');
    is(check($f), 'key_inactive', 'key_inactive before device_inactive');

    $f = fixture();
    set(devices => $f->{device}, status => 'inactive');
    $dbh->do('delete from key_devices where key_id = ?', undef, $f->{key});
    is(check($f), 'device_inactive', 'device_inactive before key_not_associated');

    $f = fixture();
    $dbh->do('delete from key_devices where key_id = ?', undef, $f->{key});
    $dbh->do('delete from group_members where user_id = ?', undef, $f->{user});
    is(check($f), 'key_not_associated', 'key_not_associated before no_group');

    $f = fixture();
    $dbh->do('update access_groups set use_credentials = false,
              access_devices = false, remote_session = false where id = ?',
             undef, $f->{group});
    is(check($f), 'no_use_credentials', 'permissions reported in order');

    $f = fixture();
    set(access_groups => $f->{group}, remote_session => 0);
    $dbh->do('delete from group_keys where group_id = ?', undef, $f->{group});
    is(check($f), 'no_remote_session', 'no_remote_session before key_not_granted');

    $f = fixture();
    $dbh->do('delete from group_keys where group_id = ?', undef, $f->{group});
    $dbh->do('delete from group_devices where group_id = ?', undef, $f->{group});
    is(check($f), 'key_not_granted', 'key_not_granted before device_not_granted');
}


# --- the function itself --------------------------------------------------------------

is_deeply($dbh->selectall_arrayref(q{
    select proname, provolatile from pg_proc
     where proname in ('segura_grant_check', 'segura_key_devices_for')
     order by proname}),
    [['segura_grant_check', 's'], ['segura_key_devices_for', 's']],
    'both functions are stable');


# --- segura_key_devices_for -------------------------------------------------------------

{
    my $f = fixture();
    my $d_extra = $db->insert_device;      # associated, not granted
    my $d_off = $db->insert_device;        # associated, granted, inactive
    my $d_other = $db->insert_device;      # granted, not associated
    $db->associate(key => $f->{key}, device => $_) for $d_off, $d_extra;
    $db->grant(group => $f->{group}, devices => [$d_off, $d_other]);
    set(devices => $d_off, status => 'inactive');

    my @rest = sort { $a <=> $b } $d_extra, $d_off;
    my %why = ($d_extra => 'device_not_granted', $d_off => 'device_inactive');
    is_deeply($db->key_devices_for($f->{user}, $f->{key}), [
        { device_id => $f->{device}, is_main => 1, reason => 'ok' },
        map { { device_id => $_, is_main => 0, reason => $why{$_} } } @rest,
    ], 'key_devices_for: each associated device, main first, with its reason');

    my $stranger = $db->insert_user;
    is_deeply([map { $_->{reason} }
                   @{ $db->key_devices_for($stranger, $f->{key}) }],
              ['no_group', map { $_ == $d_off ? 'device_inactive' : 'no_group' }
                           @rest],
              'key_devices_for: for a user without a group');

    is_deeply($db->key_devices_for($f->{user}, $no_id), [],
              'key_devices_for: an unknown key has no devices');
}


# --- NOTIFY segura_grant_changed ------------------------------------------------------

{
    my $l = $db->new_dbh;
    $l->do('listen segura_grant_changed');

    # payloads received up to a sentinel sent now from the test's session
    # (so whatever it sent before arrives first)
    my $collect = sub {
        $dbh->do(q{select pg_notify('segura_grant_changed', 'sentinel')});
        my @got;
        my $deadline = time + 10;
        while (time < $deadline) {
            while (my $n = $l->pg_notifies) {
                return \@got if $n->[2] eq 'sentinel';
                push @got, $n->[2];
            }
            sleep 0.02;
        }
        fail('timed out waiting for the sentinel notification');
        return \@got;
    };
    my $seen = sub {
        my ($action) = @_;
        $collect->();
        $action->();
        return $collect->();
    };

    my $f = fixture();
    is_deeply($seen->(sub {
        $dbh->do('delete from group_members where user_id = ?', undef,
                 $f->{user});
    }), ['group_members'], 'revoking a membership notifies');
    is_deeply($seen->(sub { set(users => $f->{user}, status => 'inactive') }),
              ['users'], 'deactivating a user notifies');
    is_deeply($seen->(sub {
        $dbh->do('update users set failed_logins = failed_logins + 1
                   where id = ?', undef, $f->{user});
    }), [], 'counting a failed login does not notify');
    is_deeply($seen->(sub {
        set(access_groups => $f->{group}, remote_session => 0);
    }), ['access_groups'], 'changing a permission notifies');
    is_deeply($seen->(sub { set(ssh_keys => $f->{key}, status => 'inactive') }),
              ['ssh_keys'], 'deactivating a key notifies');
    my $got = $seen->(sub {
        $dbh->do('delete from devices where id = ?', undef, $f->{device});
    });
    ok((grep { $_ eq 'devices' } @$got), 'deleting a device notifies')
        or diag explain $got;
    $l->disconnect;
}

done_testing;
