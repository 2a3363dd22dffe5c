# Who may see a session's audit row and recording: administrators and
# members of a group with audit_sessions see every session; a session's
# own user sees it only where segura_recording_self is on; anyone else
# gets 404 (the same answer as for a session that does not exist) and the
# list leaves the session out; every replay, and every refused one, is an
# audit_log row.
use strict;
use warnings;
use Test::More;
use JSON::PP;
use SeguraTest;
use SeguraTest::Api;
use SeguraTest::Session;

my $self_port = SeguraTest::free_port();

my $t = SeguraTest->new(sshd => 1);
$t->run(SeguraTest::Session::config() . <<"EOF");
    server {
        listen 127.0.0.1:$self_port;
        segura_recording_self on;
        location /api/ { segura_api; }
    }
EOF
my $db = $t->db;
my $dbh = $db->dbh;

# an API client for the server with segura_recording_self on
{
    package SelfServer;
    sub new { bless { port => $_[1] }, $_[0] }
    sub url { "http://127.0.0.1:$_[0]{port}$_[1]" }
}
my $self_server = SelfServer->new($self_port);

sub client {
    my ($name, $server, %o) = @_;
    my $exists = delete $o{exists};
    SeguraTest::Api::add_user($db, $name, "$name-password-1", %o)
        unless $exists;
    my $c = SeguraTest::Api->new($server // $t);
    is($c->login($name, "$name-password-1")->code, 200,
       "$name logs in" . ($server ? ' (self on)' : ''));
    return $c;
}

my $admin = client('root', undef, admin => 1);
my $owner = client('owner');
my $other = client('other');
my $auditor = client('auditor');
my $owner_self = client('owner', $self_server, exists => 1);
my $other_self = client('other', $self_server, exists => 1);

my ($owner_id) = $dbh->selectrow_array(q{select id from users where username = 'owner'});
my ($auditor_id) = $dbh->selectrow_array(q{select id from users where username = 'auditor'});

# --- the permission in the groups API ----------------------------------------

my $res = $admin->post('/api/groups', { name => 'auditors', members => [$auditor_id] });
is($res->code, 201, 'a group is created');
my $g = $res->json;
is($g->{permissions}{audit_sessions}, JSON::PP::false, 'audit_sessions: off by default');
$res = $admin->patch("/api/groups/$g->{id}", { permissions => { audit_sessions => JSON::PP::true } });
is($res->code, 200, 'PATCH audit_sessions');
is($res->json->{permissions}{audit_sessions}, JSON::PP::true, 'audit_sessions: on');
is($res->json->{permissions}{remote_session}, JSON::PP::false, 'the other permissions stay');
$res = $admin->patch("/api/groups/$g->{id}", { permissions => { audit_sessions => 1 } });
is($res->code, 422, 'audit_sessions must be a boolean');
is(eval { $res->json->{error}{field} }, 'audit_sessions', 'field audit_sessions');

# --- a recorded session, relabelled as the owner's ---------------------------

my $f = SeguraTest::Session::fixture($t);
my ($ws, $id) = SeguraTest::Session::live($t, $f, 'recorded');
$ws->send_binary("echo visible-\"\"marker\n");
ok($ws->wait_for(sub { $ws->output =~ /visible-marker\r?\n/ }, 10), 'the session prints');
$ws->send_binary("exit\n");
is($ws->wait_close(20), 1000, 'the session ends');
ok(SeguraTest::wait_for(sub {
    $dbh->selectrow_array(q{select count(*) from ssh_session_recordings
                            where session_id = ? and ended_at is not null}, undef, $id)
}, 20), 'the recording is complete');
$dbh->do('update ssh_sessions set user_id = ? where id = ?', undef, $owner_id, $id);

my $unknown = '00000000-0000-4000-8000-000000000000';
my $nf = $other->get("/api/sessions/$unknown/recording?format=raw");
is($nf->code, 404, 'an unknown session: 404');

sub sees {
    my ($who, $c, $want, $what) = @_;
    my $r = $c->get("/api/sessions/$id/recording?format=raw");
    my @ids = map { $_->{id} } @{ $c->get('/api/sessions')->json->{items} || [] };
    if ($want) {
        is($r->code, 200, "$who$what: the recording is served");
        like($r->body, qr/visible-marker/, "$who$what: with what was printed");
        ok((grep { $_ eq $id } @ids), "$who$what: the list has the session");
    } else {
        is($r->code, 404, "$who$what: 404");
        is(eval { $r->json->{error}{code} }, 'not_found', "$who$what: not_found");
        is($r->body, $nf->body, "$who$what: the same body as an unknown session");
        ok(!(grep { $_ eq $id } @ids), "$who$what: the list leaves it out");
    }
}

sees('an administrator', $admin, 1, '');
sees('an audit_sessions member', $auditor, 1, '');
sees('another user', $other, 0, '');
sees('the owner', $owner, 0, ', without segura_recording_self');
sees('the owner', $owner_self, 1, ', with segura_recording_self on');
sees('another user', $other_self, 0, ', with segura_recording_self on');

# the auditor's list is every session; the owner's, with self on, only theirs
my ($nobodys) = $dbh->selectrow_array(q{
    insert into ssh_sessions (user_id, username, key_name, device_name,
                              device_address, device_port, ended_at)
    values (null, 'ghost', 'k', 'd', '127.0.0.1', 22, now()) returning id});
my @aud = map { $_->{id} } @{ $auditor->get('/api/sessions')->json->{items} };
ok((grep { $_ eq $nobodys } @aud), 'the auditor lists a session of nobody');
my @own = map { $_->{id} } @{ $owner_self->get('/api/sessions')->json->{items} };
is_deeply(\@own, [$id], 'the owner with self on lists their own session only');
$res = $owner_self->get("/api/sessions?before=$nobodys");
is($res->code, 200, 'a session the owner may not see as a cursor: 200');
is_deeply($res->json->{items}, [], 'and it lists nothing');

# the permission goes: so does the access, at once
is($admin->patch("/api/groups/$g->{id}", { permissions => { audit_sessions => JSON::PP::false } })->code,
   200, 'audit_sessions taken away');
sees('a former auditor', $auditor, 0, '');
# one group with the permission among others is enough
is($admin->post('/api/groups', { name => 'auditors2', members => [$auditor_id],
                                 permissions => { audit_sessions => JSON::PP::true } })->code,
   201, 'a second group with audit_sessions');
sees('an auditor through a second group', $auditor, 1, '');
is($admin->get("/api/groups/$g->{id}")->json->{permissions}{audit_sessions},
   JSON::PP::false, 'GET shows the permission');
my @mine = @{ $auditor->get('/api/me')->json->{groups} || [] };
is_deeply([map { $_->{permissions}{audit_sessions} ? 1 : 0 } @mine], [0, 1],
          '/api/me shows audit_sessions in each group');

# --- every access is audited -------------------------------------------------

sub audit_count {
    my ($who, $action) = @_;
    return scalar $dbh->selectrow_array(q{
        select count(*) from audit_log where actor_name = ? and action = ?
           and object_type = 'ssh_session' and object_id = ?}, undef, $who, $action, $id);
}

is(audit_count('root', 'session_replay'), 1, 'the administrator\'s replay is audited');
is(audit_count('auditor', 'session_replay'), 2, 'the auditor\'s two replays are audited');
is(audit_count('auditor', 'session_replay_denied'), 1, 'and the refused one');
is(audit_count('other', 'session_replay_denied'), 2, 'another user\'s refusals are audited');
is(audit_count('owner', 'session_replay_denied'), 1, 'the owner\'s refusal without self');
is(audit_count('owner', 'session_replay'), 1, 'the owner\'s replay with self');
is(scalar $dbh->selectrow_array(q{select detail->>'format' from audit_log
       where actor_name = 'other' and action = 'session_replay_denied' limit 1}),
   'raw', 'the audit row says which format was asked for');

unlike(SeguraTest::slurp($t->error_log), qr/\[error\]/, 'no [error] in the log');

done_testing();
