# The API answers JSON from the module: health with the schema version,
# 404 for unknown endpoints, method, media type, Origin and size checks;
# html/ is served next to it; 503 when the database is unreachable.
use strict;
use warnings;
use Test::More;
use Mojo::UserAgent;
use SeguraTest;

my $t = SeguraTest->new;

open my $fh, '>', $t->dir . '/html/index.html' or die $!;
print $fh "<!doctype html><title>segura</title>\n";
close $fh;

$t->run(<<'EOF');
    server {
        listen 127.0.0.1:%%PORT%%;
        location /api/ { segura_api; }
        location / { root %%HTML%%; }
    }
EOF

my $ua = Mojo::UserAgent->new;

my $res = $ua->get($t->url('/api/health'))->result;
is($res->code, 200, 'health: 200');
is($res->headers->content_type, 'application/json', 'health: JSON');
is($res->json->{status}, 'ok', 'health: ok');
my @files = sort glob("$SeguraTest::TOP/sql/[0-9]*.sql");
my ($last) = $files[-1] =~ m{/(\d+)_[^/]*\.sql$};
is($res->json->{schema}, 0 + $last, 'health: reports the newest migration');
is($res->headers->header('Cache-Control'), 'no-store', 'API responses are not cached');

$res = $ua->get($t->url('/api/nope'))->result;
is($res->code, 404, 'unknown endpoint: 404');
is($res->json->{error}{code}, 'not_found', 'unknown endpoint: JSON error');

$res = $ua->post($t->url('/api/health') => { 'Content-Type' => 'application/json' } => '{}')->result;
is($res->code, 405, 'POST to a GET endpoint: 405');

$res = $ua->post($t->url('/api/health') => { 'Content-Type' => 'text/plain' } => 'x')->result;
is($res->code, 415, 'state change without JSON: 415');
is($res->json->{error}{code}, 'unsupported_media_type', '415 names the code');

$res = $ua->post($t->url('/api/health') => { 'Content-Type' => 'application/json',
                                            Origin => 'https://evil.example' } => '{}')->result;
is($res->code, 403, 'foreign Origin: 403');
is($res->json->{error}{code}, 'foreign_origin', 'foreign Origin: code');

$res = $ua->put($t->url('/api/health') => { 'Content-Type' => 'application/json' } => 'x' x 70000)->result;
is($res->code, 413, 'body over segura_max_body: 413');
is($res->json->{error}{code}, 'too_large', '413 names the code');

$res = $ua->get($t->url('/index.html'))->result;
is($res->code, 200, 'static files are served beside the API');
like($res->body, qr/segura/, 'the static page');

$t->stop;

# the same module with an unreachable database
my $t2 = SeguraTest->new(no_db => 1);
$t2->run(<<'EOF', no_defaults => 1);
    segura_database "host=/nonexistent dbname=segura user=segura";
    segura_master_key %%MASTER_KEY%%;
    segura_thread_pool segura;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /api/ { segura_api; }
    }
EOF

$res = $ua->get($t2->url('/api/health'))->result;
is($res->code, 503, 'database down: 503');
is($res->json->{error}{code}, 'database_unavailable', 'database down: code');
like(SeguraTest::slurp($t2->error_log), qr/\[error\].*segura api: PQconnectdbParams\(\) failed/,
     'database down: logged as an error naming the call');

SeguraTest::done();
