# docs/openapi.json, the API's OpenAPI 3.1 description, is served at
# GET /api/openapi.json and kept in step with the code: t/openapi/check.mjs
# validates it with a real OpenAPI 3.1 validator (npm
# @seriousme/openapi-schema-validator), compares its paths with the C
# route table and the handlers' sub-resources both ways, probes every
# method of every path on this running module (a method it does not list
# must be 405), compares its error codes with the C error table, and
# validates docs/api.md's examples and real answers against it (ajv).
use strict;
use warnings;
use Test::More;
use IPC::Open3;
use Mojo::JSON qw(true false encode_json decode_json);
use SeguraTest;
use SeguraTest::Api;
use SeguraTest::Session;

# --- the checker's packages, from npm at the versions of package-lock.json -

my $npm = "$SeguraTest::TOP/t/openapi";
my $stamp = "$npm/node_modules/.segura-installed";
unless (-f $stamp && -M $stamp < -M "$npm/package-lock.json"
        && -M $stamp < -M "$npm/package.json") {
    is(system('timeout', '300', 'npm', 'ci', '--no-audit', '--no-fund',
              '--loglevel=error', '--prefix', $npm), 0,
       'npm ci of the OpenAPI checker') or BAIL_OUT('no checker');
    open my $fh, '>', $stamp or die $!;
    close $fh;
}

my $t = SeguraTest->new(sshd => 1);
$t->run(SeguraTest::Session::config());
my $db = $t->db;

# --- served by the module, without a login --------------------------------

my $file = SeguraTest::slurp("$SeguraTest::TOP/docs/openapi.json");
my $anon = SeguraTest::Api->new($t);
my $res = $anon->get('/api/openapi.json');
is($res->code, 200, 'GET /api/openapi.json without a login: 200');
is($res->headers->content_type, 'application/json', 'as application/json');
is($res->body, $file, 'the body is docs/openapi.json, byte for byte');
is($res->headers->content_length, length $file, 'with its length');
is(eval { decode_json($res->body)->{openapi} }, '3.1.0', 'an OpenAPI 3.1.0 document');
$res = $anon->request('HEAD', '/api/openapi.json');
is($res->code, 200, 'HEAD: 200');
is($res->body, '', 'HEAD: no body');
for my $m (qw(POST PUT PATCH DELETE)) {
    $res = $anon->request($m, '/api/openapi.json', $m eq 'DELETE' ? undef : {});
    is($res->code, 405, "$m /api/openapi.json: 405");
    is(eval { $res->json->{error}{code} }, 'method_not_allowed',
       "$m /api/openapi.json: JSON method_not_allowed");
}
is($anon->get('/api/openapi.json/x')->code, 404, 'a path below it is unknown: 404');

# --- fixtures: an administrator, a user granted a key and a device, and
# --- one real SSH session of that user, recorded ---------------------------

SeguraTest::Api::add_user($db, 'boss', 'boss-password-1', admin => 1);
my $admin = SeguraTest::Api->new($t);
is($admin->login('boss', 'boss-password-1')->code, 200, 'the administrator logs in');

sub created {
    my ($path, $body) = @_;
    my $r = $admin->post($path, $body);
    is($r->code, 201, "POST $path: 201") or diag($r->body);
    return eval { $r->json->{id} };
}

my ($kpath) = $t->sshd->keygen('openapi', type => 'ed25519');
$t->sshd->authorize(SeguraTest::slurp("$kpath.pub"));
my $user = created('/api/users', { username => 'viewer', display_name => 'Viewer',
                                   password => 'viewer-password-1' });
my $device = created('/api/devices', { name => 'sshd', address => '127.0.0.1',
                                       port => $t->sshd->port + 0, tags => ['test'] });
my $key = created('/api/keys', { name => 'deploy', username => $t->sshd->user,
                                 private_key => SeguraTest::slurp($kpath),
                                 main_device => $device, devices => [$device] });
my $group = created('/api/groups', {
    name => 'operators',
    permissions => { use_credentials => true, access_devices => true,
                     remote_session => true },
    members => [$user], keys => [$key], devices => [$device] });

my $viewer = SeguraTest::Api->new($t);
is($viewer->login('viewer', 'viewer-password-1')->code, 200, 'the user logs in');
my $f = { key => $key, device => $device,
          cookie => 'segura_session=' . $viewer->cookie };
my ($ws, $session) = SeguraTest::Session::live($t, $f, 'openapi');
$ws->send_binary("exit\n");
is($ws->wait_close(10), 1000, 'the session ends with its shell');
ok(SeguraTest::wait_for(sub {
    $db->dbh->selectrow_array('select ended_at is not null from ssh_sessions'
                              . ' where id = ?', undef, $session)
}, 10), 'its end is written');
ok(SeguraTest::wait_for(sub {
    $admin->get("/api/sessions/$session/recording")->code == 200
}, 10), 'its recording is readable');

# --- the checker ---------------------------------------------------------

my $cfg = $t->dir . '/openapi-check.json';
open my $fh, '>', $cfg or die $!;
print $fh encode_json({
    top   => $SeguraTest::TOP,
    base  => $t->url(''),
    admin => ['boss', 'boss-password-1'],
    user  => ['viewer', 'viewer-password-1'],
    ids   => { user => $user, group => $group, device => $device, key => $key,
               session => $session },
});
close $fh;

my $pid = open3(my $in, my $out, undef, 'timeout', '300', 'node',
                "$npm/check.mjs", $cfg);
close $in;
my ($checks, $failed) = (0, 0);
while (my $line = <$out>) {
    chomp $line;
    if ($line =~ /^ok\t(.*)$/) {
        $checks++;
        pass($1);
    } elsif ($line =~ /^not ok\t([^\t]*)\t?(.*)$/) {
        $checks++;
        $failed++;
        fail($1);
        diag($2);
    } else {
        diag($line);
    }
}
waitpid($pid, 0);
is($? >> 8, 0, 'the checker ran to its end');
cmp_ok($checks, '>', 200, "the checker made its checks ($checks, $failed failed)");

SeguraTest::done();
