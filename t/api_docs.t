# docs/api.md lists every error code of the module's table with its status,
# and every endpoint the router knows.
use strict;
use warnings;
use Test::More;
use SeguraTest;

my $src = SeguraTest::slurp("$SeguraTest::TOP/ngx_segura_module/ngx_segura_http.c");
my ($table) = $src =~ /ngx_segura_errors\[\] = \{(.*?)\n\};/s or die 'no error table';
my %code = map { $_->[1] => $_->[0] }
           map { [ /\{\s*(\d+),\s*ngx_string\("(\w+)"\)/ ] }
           grep { /ngx_string\("/ } split /\},/, $table;
delete $code{ok};
delete $code{not_available};   # never sent by the API
ok(keys %code > 10, 'error table read');

my $doc = SeguraTest::slurp("$SeguraTest::TOP/docs/api.md");
my %rows;
while ($doc =~ /^\|\s*(\d{3})\s*\|\s*`(\w+)`/mg) { $rows{$2} = $1 }

for my $c (sort keys %code) {
    is($rows{$c}, $code{$c}, "docs/api.md: $c is $code{$c}");
}
for my $c (sort keys %rows) {
    ok(exists $code{$c}, "docs/api.md: $c exists in the module");
}

my $api = SeguraTest::slurp("$SeguraTest::TOP/ngx_segura_module/ngx_segura_api.c");
my ($routes) = $api =~ /ngx_segura_api_routes\[\] = \{(.*?)\n\};/s or die 'no routes';
for my $r ($routes =~ /\{ "(\w+)"/g) {
    like($doc, qr{^\s*(?:#+ )?(?:GET|POST|PUT|PATCH|DELETE) /api/$r\b}m,
         "docs/api.md shows a request to /api/$r");
}

done_testing();
