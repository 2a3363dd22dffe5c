# segura_user cannot be spoofed: $remote_user without auth_basic, request
# headers, cookies and arguments, and $ssl_client_* without verification
# are refused by nginx -t; the auth_basic, auth_request and client
# certificate recipes of docs/directives.md work, and a client that sends
# "Authorization: Basic YWRtaW46eA==" (admin:x) or "X-User: admin" does not
# become admin through them.
use strict;
use warnings;
use Test::More;
use Mojo::UserAgent;
use SeguraTest;
use SeguraTest::Api;

my $t = SeguraTest->new;
my $dir = $t->dir;
my $db = $t->db;
SeguraTest::Api::add_user($db, 'admin', 'admin-password-1', admin => 1);
SeguraTest::Api::add_user($db, 'alice', 'alice-password-1');

# --- what nginx -t refuses ---------------------------------------------------

my $api = 'location /api/ { %s segura_api; }';
sub conf_fails {
    my ($loc, $re, $name, $server_extra) = @_;
    my ($rc, $out) = $t->nginx_test(
        "server { listen 127.0.0.1:%%PORT%%; @{[ $server_extra // '' ]} $loc }");
    isnt($rc, 0, "$name: nginx -t fails");
    like($out, $re, "$name: says why") or diag($out);
}
sub conf_ok {
    my ($loc, $name, $server_extra) = @_;
    my ($rc, $out) = $t->nginx_test(
        "server { listen 127.0.0.1:%%PORT%%; @{[ $server_extra // '' ]} $loc }");
    is($rc, 0, $name) or diag($out);
}

open my $fh, '>', "$dir/conf/htpasswd" or die $!;
print $fh "alice:{PLAIN}alice-basic-1\n";
close $fh;

conf_fails(sprintf($api, 'segura_user $remote_user;'),
           qr/"segura_user \$remote_user" needs "auth_basic" on in the same location/,
           '$remote_user without auth_basic');
conf_fails(sprintf($api, 'segura_user $remote_user; auth_basic off;'),
           qr/needs "auth_basic" on/, '$remote_user with auth_basic off');
conf_fails(sprintf($api, 'segura_user $remote_user; auth_basic "x"; '
                         . 'auth_basic_user_file htpasswd; satisfy any; allow 127.0.0.1;'),
           qr/and "satisfy all"/, '$remote_user with satisfy any');
conf_fails(sprintf($api, 'segura_user $http_x_user;'),
           qr/\$http_x_user is sent by the client/, 'a request header');
conf_fails(sprintf($api, 'segura_user ${cookie_who};'),
           qr/\$cookie_who is sent by the client/, 'a cookie');
conf_fails(sprintf($api, 'segura_user u-$arg_u;'),
           qr/\$arg_u is sent by the client/, 'an argument');
conf_fails(sprintf($api, 'segura_user $ssl_client_s_dn;'),
           qr/needs "ssl_verify_client on"/, '$ssl_client_* without verification');
conf_fails('segura_user $remote_user; ' . sprintf($api, ''),
           qr/"segura_user" directive is not allowed here/, 'segura_user at server level');
conf_ok(sprintf($api, 'segura_user $remote_user; auth_basic "segura"; '
                      . 'auth_basic_user_file htpasswd;'),
        '$remote_user with auth_basic: accepted');
conf_ok('location /x/ { segura_user $http_x_user; }',
        'a location without a segura handler is not checked');

# --- the recipes, run -------------------------------------------------------

# a CA, a client certificate it signed (CN=alice) and one it did not
sub ossl { system(join(' ', 'openssl', @_) . ' 2>/dev/null') == 0 or die "openssl @_" }
ossl("req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout $dir/ca.key -out $dir/ca.pem");
ossl("req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -keyout $dir/server.key -out $dir/server.pem");
ossl("req -newkey rsa:2048 -nodes -subj /CN=alice -keyout $dir/alice.key -out $dir/alice.csr");
ossl("x509 -req -in $dir/alice.csr -CA $dir/ca.pem -CAkey $dir/ca.key -CAcreateserial -days 2 -out $dir/alice.pem");
ossl("req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=admin -keyout $dir/rogue.key -out $dir/rogue.pem");

my $auth_port = SeguraTest::free_port();
my $tls_port = SeguraTest::free_port();

$t->run(<<"EOF2");
    map \$ssl_client_s_dn \$segura_cert_user {
        default "";
        "~(^|,)CN=(?<cn>[^,]+)" \$cn;
    }
    server {
        listen 127.0.0.1:%%PORT%%;
        server_name basic;
        location /api/ {
            auth_basic "segura";
            auth_basic_user_file htpasswd;
            segura_user \$remote_user;
            segura_api;
        }
    }
    server {
        listen 127.0.0.1:%%PORT%%;
        server_name authreq;
        location /api/ {
            auth_request /auth;
            auth_request_set \$segura_auth_user \$upstream_http_x_user;
            segura_user \$segura_auth_user;
            segura_api;
        }
        location = /auth {
            internal;
            proxy_pass http://127.0.0.1:$auth_port/check;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }
    }
    # the authentication service: a bearer token names the user
    server {
        listen 127.0.0.1:$auth_port;
        location = /check {
            if (\$http_authorization = "Bearer alice-token") {
                add_header X-User alice;
                return 200;
            }
            return 401;
        }
    }
    server {
        listen 127.0.0.1:$tls_port ssl;
        ssl_certificate $dir/server.pem;
        ssl_certificate_key $dir/server.key;
        ssl_client_certificate $dir/ca.pem;
        ssl_verify_client on;
        location /api/ {
            segura_user \$segura_cert_user;
            segura_api;
        }
    }
EOF2

my $spoof = { Authorization => 'Basic YWRtaW46eA==', 'X-User' => 'admin' };

sub me {
    my ($ua, $url, %h) = @_;
    return $ua->get($url => \%h)->result;
}

my $ua = Mojo::UserAgent->new;
my $base = $t->url('/api/me');

# auth_basic
my $res = me($ua, $base, Host => 'basic', %$spoof);
is($res->code, 401, 'auth_basic: admin:x is refused by auth_basic');
is(eval { $res->json->{error}{code} }, 'unauthenticated', 'auth_basic 401: JSON');
$res = me($ua, $base, Host => 'basic', Authorization => 'Basic ' . Mojo::Util::b64_encode('alice:alice-basic-1', ''));
is($res->code, 200, 'auth_basic: alice with her password');
is($res->json->{username}, 'alice', 'auth_basic: she is alice');

# auth_request
$res = me($ua, $base, Host => 'authreq', %$spoof);
is($res->code, 401, 'auth_request: no token, spoofed headers: 401');
is(eval { $res->json->{error}{code} }, 'unauthenticated', 'auth_request 401: JSON');
$res = me($ua, $base, Host => 'authreq', %$spoof, Authorization => 'Bearer alice-token');
is($res->code, 200, 'auth_request: alice\'s token and an X-User: admin header');
is($res->json->{username}, 'alice', 'auth_request: she is alice, not admin');

# client certificates
my $tls = sub {
    my (%o) = @_;
    my $u = Mojo::UserAgent->new(insecure => 1, request_timeout => 10, %o);
    return $u->get("https://127.0.0.1:$tls_port/api/me" => $spoof);
};
my $tx = $tls->(cert => "$dir/alice.pem", key => "$dir/alice.key");
is($tx->result->code, 200, 'certificate: alice\'s, with spoofed headers');
is($tx->result->json->{username}, 'alice', 'certificate: she is alice');
$tx = $tls->();
is($tx->res->code, 400, 'certificate: none is 400');
is(eval { $tx->res->json->{error}{code} }, 'bad_request', 'no certificate: JSON');
$tx = $tls->(cert => "$dir/rogue.pem", key => "$dir/rogue.key");
ok(!$tx->res->code || $tx->res->code == 400,
   'certificate: a self-made CN=admin is refused (' . ($tx->res->code // 'handshake') . ')');
ok(!$tx->res->code || !eval { $tx->res->json->{username} }, 'and names nobody');

$t->stop;
SeguraTest::done();
