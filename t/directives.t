# Directives: every misuse fails "nginx -t" with the directive's name in the
# message; a correct configuration passes and the module loads into nginx.
use strict;
use warnings;
use Test::More;
use SeguraTest;

my $t = SeguraTest->new(no_db => 1);
my $dir = $t->dir;

my $db = 'segura_database "host=/nonexistent dbname=segura";';
my $mk = 'segura_master_key %%MASTER_KEY%%;';
my $server = 'server { listen 127.0.0.1:%%PORT%%; location /api/ { segura_api; } location = /session { segura_session; } }';

sub conf_ok {
    my ($http, $name, %o) = @_;
    my ($rc, $out) = $t->nginx_test($http, no_defaults => 1, %o);
    is($rc, 0, $name) or diag($out);
}

sub conf_fails {
    my ($http, $re, $name, %o) = @_;
    my ($rc, $out) = $t->nginx_test($http, no_defaults => 1, %o);
    isnt($rc, 0, "$name: nginx -t fails");
    like($out, $re, "$name: the message says why") or diag($out);
}

sub write_key {
    my ($file, $bytes, $mode) = @_;
    open my $fh, '>:raw', $file or die $!;
    print $fh $bytes;
    close $fh;
    chmod $mode, $file;
}

conf_ok("$db $mk $server", 'a minimal configuration passes');
conf_ok("$db $mk segura_thread_pool segura;
         segura_connect_timeout 5s; segura_idle_timeout 10m;
         segura_ping_interval 20s; segura_max_message 64k;
         segura_max_body 128k; segura_host_key_policy strict;
         segura_recording on; segura_recording_input off;
         segura_recording_overflow drop; segura_recording_self on;
         segura_recording_retention 30d;
         segura_login_lifetime 8h; segura_login_idle 20m;
         segura_node_lost_timeout 1m;
         segura_allowed_origins https://console.example.com http://127.0.0.1:8080;
         server { listen 127.0.0.1:%%PORT%%; location /api/ { segura_api;
                  auth_basic x; auth_basic_user_file htpasswd; segura_user \$remote_user; } }
         $server", 'every directive at once passes');
conf_ok("segura_database \"host=/x dbname=y\" connections=4; $mk $server",
        'connections= is accepted');
conf_ok("$db $mk segura_master_key $dir/conf/old.key id=2; $server",
        'a second master key with its own id is accepted')
    if write_key("$dir/conf/old.key", 'k' x 32, 0600) || 1;

# segura_database
conf_fails("$db $db $mk $server", qr/"segura_database" directive is duplicate/,
           'segura_database twice');
conf_fails("segura_database; $mk $server",
           qr/invalid number of arguments in "segura_database" directive/,
           'segura_database without a value');
conf_fails("segura_database \"\"; $mk $server",
           qr/invalid value "" in "segura_database" directive/,
           'segura_database empty');
conf_fails("segura_database \"dbname=x\" connections=0; $mk $server",
           qr/"segura_database" directive.*connections must be 1-256/,
           'segura_database connections=0');
conf_fails("segura_database \"dbname=x\" pool=3; $mk $server",
           qr/invalid parameter "pool=3" in "segura_database" directive/,
           'segura_database unknown parameter');
conf_fails("$mk server { listen 127.0.0.1:%%PORT%%; $db }",
           qr/"segura_database" directive is not allowed here/,
           'segura_database in a server block');
conf_fails("$mk $server", qr/"segura_database" is required/,
           'segura_api without segura_database');

# segura_master_key
conf_fails("$db $server", qr/"segura_master_key" is required/,
           'segura_session without segura_master_key');
conf_fails("$db segura_master_key $dir/conf/missing.key; $server",
           qr/"segura_master_key" directive: open\(\) ".*missing.key" failed/,
           'master key file missing');
write_key("$dir/conf/open.key", 'k' x 32, 0640);
conf_fails("$db segura_master_key $dir/conf/open.key; $server",
           qr/"segura_master_key" directive: ".*open.key" is accessible by group or others \(mode 0640\)/,
           'master key readable by group');
write_key("$dir/conf/world.key", 'k' x 32, 0604);
conf_fails("$db segura_master_key $dir/conf/world.key; $server",
           qr/"segura_master_key" directive: .*accessible by group or others/,
           'master key readable by others');
write_key("$dir/conf/short.key", 'k' x 31, 0600);
conf_fails("$db segura_master_key $dir/conf/short.key; $server",
           qr/"segura_master_key" directive: ".*short.key" must hold exactly 32 bytes, it holds 31/,
           'master key of 31 bytes');
write_key("$dir/conf/long.key", 'k' x 33, 0600);
conf_fails("$db segura_master_key $dir/conf/long.key; $server",
           qr/"segura_master_key" directive: ".*long.key" must hold exactly 32 bytes, it holds 33/,
           'master key of 33 bytes');
mkdir "$dir/conf/keydir", 0700;
conf_fails("$db segura_master_key $dir/conf/keydir; $server",
           qr/"segura_master_key" directive: ".*keydir" is not a regular file/,
           'master key is a directory');
conf_fails("$db $mk segura_master_key $dir/conf/old.key; $server",
           qr/"segura_master_key" directive with id=1 is duplicate/,
           'two master keys with the same id');
conf_fails("$db segura_master_key %%MASTER_KEY%% id=0; $server",
           qr/invalid value "id=0" in "segura_master_key" directive/,
           'master key id=0');
conf_fails("$db segura_master_key %%MASTER_KEY%% id=256; $server",
           qr/invalid value "id=256" in "segura_master_key" directive/,
           'master key id=256');

# segura_thread_pool
conf_fails("$db $mk segura_thread_pool nosuch; $server",
           qr/"segura_thread_pool" directive: unknown thread pool "nosuch"/,
           'segura_thread_pool names an undefined pool');
conf_fails("$db $mk segura_thread_pool segura; segura_thread_pool segura; $server",
           qr/"segura_thread_pool" directive is duplicate/,
           'segura_thread_pool twice');
conf_ok("$db $mk segura_thread_pool default; $server",
        'segura_thread_pool default needs no thread_pool block', main => '');

# segura_node_lost_timeout
conf_ok("$db $mk segura_node_lost_timeout 3s; $server",
        'segura_node_lost_timeout at its lower bound');
conf_ok("$db $mk segura_node_lost_timeout 1h; $server",
        'segura_node_lost_timeout at its upper bound');
conf_ok("$db $mk segura_recording_retention off; $server",
        'segura_recording_retention off');
conf_ok("$db $mk segura_recording_retention 1s; $server",
        'segura_recording_retention at its lower bound');
conf_fails("$db $mk segura_recording_retention 999ms; $server",
           qr/invalid value "999ms" in "segura_recording_retention" directive, it must be "off" or a time of at least 1s/,
           'segura_recording_retention too short');
conf_fails("$db $mk segura_recording_retention later; $server",
           qr/invalid value "later" in "segura_recording_retention" directive/,
           'segura_recording_retention not a time');
conf_fails("$db $mk segura_recording_retention 1d; segura_recording_retention 2d; $server",
           qr/"segura_recording_retention" directive is duplicate/,
           'segura_recording_retention twice');
conf_fails("$db $mk server { listen 127.0.0.1:%%PORT%%; segura_recording_retention 1d; location /api/ { segura_api; } }",
           qr/"segura_recording_retention" directive is not allowed here/,
           'segura_recording_retention in a server');
conf_fails("$db $mk segura_recording_self maybe; $server",
           qr/invalid value "maybe" in "segura_recording_self" directive/,
           'segura_recording_self not a flag');
conf_fails("$db $mk segura_node_lost_timeout 2999ms; $server",
           qr/invalid value "2999ms" in "segura_node_lost_timeout" directive, it must be between 3s and 3600s/,
           'segura_node_lost_timeout too short');
conf_fails("$db $mk segura_node_lost_timeout 61m; $server",
           qr/invalid value "61m" in "segura_node_lost_timeout" directive, it must be between 3s and 3600s/,
           'segura_node_lost_timeout too long');
conf_fails("$db $mk segura_node_lost_timeout 0; $server",
           qr/invalid value "0" in "segura_node_lost_timeout" directive/,
           'segura_node_lost_timeout 0');
conf_fails("$db $mk segura_node_lost_timeout soon; $server",
           qr/"segura_node_lost_timeout" directive invalid value/,
           'segura_node_lost_timeout not a time');
conf_fails("$db $mk segura_node_lost_timeout 30s; segura_node_lost_timeout 40s; $server",
           qr/"segura_node_lost_timeout" directive is duplicate/,
           'segura_node_lost_timeout twice');
conf_fails("$db $mk server { listen 127.0.0.1:%%PORT%%; segura_node_lost_timeout 30s; }",
           qr/"segura_node_lost_timeout" directive is not allowed here/,
           'segura_node_lost_timeout in a server block');

# segura_session, segura_api
conf_fails("$db $mk server { listen 127.0.0.1:%%PORT%%; location = /session { segura_session on; } }",
           qr/invalid number of arguments in "segura_session" directive/,
           'segura_session with an argument');
conf_fails("$db $mk segura_api; $server",
           qr/"segura_api" directive is not allowed here/,
           'segura_api at http level');
conf_fails("$db $mk server { listen 127.0.0.1:%%PORT%%; location /api/ { root /tmp; segura_api; segura_session; } }",
           qr/"segura_session" directive: the location already has a content handler/,
           'segura_session and segura_api in one location');

# the location-level directives
for my $d (qw(segura_connect_timeout segura_idle_timeout segura_ping_interval
              segura_login_lifetime segura_login_idle)) {
    conf_fails("$db $mk $d soon; $server",
               qr/"$d" directive invalid value/, "$d with a bad time");
}
conf_fails("$db $mk segura_connect_timeout 0; $server",
           qr/"segura_connect_timeout" must be positive/,
           'segura_connect_timeout 0');
conf_fails("$db $mk segura_ping_interval 0; $server",
           qr/"segura_ping_interval" must be positive/,
           'segura_ping_interval 0');
conf_fails("$db $mk segura_login_lifetime 10m; segura_login_idle 1h; $server",
           qr/"segura_login_idle" must be positive and not longer than "segura_login_lifetime"/,
           'segura_login_idle longer than the lifetime');
conf_fails("$db $mk segura_max_message 100; $server",
           qr/invalid value "100" in "segura_max_message" directive, it must be between 125 and/,
           'segura_max_message too small');
conf_fails("$db $mk segura_max_message 65m; $server",
           qr/invalid value "65m" in "segura_max_message" directive, it must be between/,
           'segura_max_message too large');
conf_fails("$db $mk segura_max_message lots; $server",
           qr/"segura_max_message" directive invalid value/,
           'segura_max_message not a size');
conf_fails("$db $mk segura_max_body 10; $server",
           qr/invalid value "10" in "segura_max_body" directive, it must be between 1024 and/,
           'segura_max_body too small');
# segura_recording*
conf_ok("$db $mk server { listen 127.0.0.1:%%PORT%%; location = /session {"
        . " segura_session; segura_recording off; } }",
        'segura_recording off in a location passes');
conf_fails("$db $mk segura_recording maybe; $server",
           qr/invalid value "maybe" in "segura_recording" directive/,
           'segura_recording not on or off');
conf_fails("$db $mk segura_recording_input yes; $server",
           qr/invalid value "yes" in "segura_recording_input" directive/,
           'segura_recording_input not on or off');
conf_fails("$db $mk segura_recording_overflow block; $server",
           qr/invalid value "block" in "segura_recording_overflow" directive/,
           'segura_recording_overflow unknown');
conf_fails("$db $mk segura_recording_overflow drop; segura_recording_overflow pause; $server",
           qr/"segura_recording_overflow" directive is duplicate/,
           'segura_recording_overflow twice');

conf_fails("$db $mk segura_host_key_policy trusting; $server",
           qr/invalid value "trusting" in "segura_host_key_policy" directive/,
           'segura_host_key_policy unknown');
conf_fails("$db $mk segura_allowed_origins ftp://files.example.com; $server",
           qr/invalid value "ftp:\/\/files.example.com" in "segura_allowed_origins" directive/,
           'segura_allowed_origins with a bad scheme');
conf_fails("$db $mk segura_allowed_origins https://a.example.com/path; $server",
           qr/invalid value ".*\/path" in "segura_allowed_origins" directive/,
           'segura_allowed_origins with a path');
conf_fails("$db $mk segura_allowed_origins https://a.example; segura_allowed_origins https://b.example; $server",
           qr/"segura_allowed_origins" directive is duplicate/,
           'segura_allowed_origins twice');
conf_ok("$db $mk segura_login_concurrency 4; segura_login_address_limit 10 5m; $server",
        'segura_login_concurrency and segura_login_address_limit');
conf_ok("$db $mk segura_login_address_limit off; $server", 'segura_login_address_limit off');
conf_fails("$db $mk segura_login_concurrency 0; $server",
           qr/"segura_login_concurrency" must be between 1 and 1024/,
           'segura_login_concurrency 0');
conf_fails("$db $mk segura_login_address_limit many; $server",
           qr/invalid value "many" in "segura_login_address_limit" directive/,
           'segura_login_address_limit not a number');
conf_fails("$db $mk segura_login_address_limit 10 100ms; $server",
           qr/invalid value "100ms" in "segura_login_address_limit" directive, the window is 1s to 1d/,
           'segura_login_address_limit window too short');
conf_fails("$db $mk segura_login_address_limit off 1m; $server",
           qr/invalid value "off" in "segura_login_address_limit" directive/,
           'segura_login_address_limit off with a window');
conf_fails("$db $mk server { listen 127.0.0.1:%%PORT%%; location /api/ { segura_api; segura_user; } }",
           qr/invalid number of arguments in "segura_user" directive/,
           'segura_user without a value');

# the directive table and docs/directives.md name the same directives
my $src = SeguraTest::slurp("$SeguraTest::TOP/ngx_segura_module/ngx_http_segura_module.c");
my @code = sort $src =~ /\{ ngx_string\("(segura_\w+)"\)/g;
my $doc = SeguraTest::slurp("$SeguraTest::TOP/docs/directives.md");
my @docs = sort $doc =~ /^### (segura_\w+)/mg;
ok(@code >= 14, 'the module registers its directives');
is_deeply(\@docs, \@code, 'docs/directives.md documents exactly the registered directives');

SeguraTest::done();
