package SeguraTest::Api;

# A JSON client for /api/: one cookie jar per object (one browser), so
# two clients are two people.
#
#   my $admin = SeguraTest::Api->new($t);
#   SeguraTest::Api::add_user($t->db, 'root', 'secret-pass', admin => 1);
#   $admin->login('root', 'secret-pass');
#   my $res = $admin->post('/api/devices', { name => 'd1', address => '::1' });
#   is($res->code, 201); $res->json->{id};

use strict;
use warnings;

use Mojo::UserAgent;
use Mojo::JSON qw(encode_json);
use SeguraTest;

sub new {
    my ($class, $t, %o) = @_;
    my $ua = Mojo::UserAgent->new(request_timeout => 60,
                                  inactivity_timeout => 60);
    return bless { t => $t, ua => $ua, headers => $o{headers} || {} }, $class;
}

sub ua { $_[0]{ua} }

sub request {
    my ($self, $method, $path, $body, %h) = @_;
    my %headers = (%{ $self->{headers} }, %h);
    my @body;
    if (defined $body) {
        $headers{'Content-Type'} //= 'application/json';
        @body = (ref $body ? encode_json($body) : $body);
    }
    my $tx = $self->{ua}->build_tx($method => $self->{t}->url($path)
                                   => \%headers => @body);
    return $self->{ua}->start($tx)->result;
}

sub get    { my $s = shift; $s->request('GET', @_) }
sub post   { my $s = shift; $s->request('POST', @_) }
sub patch  { my $s = shift; $s->request('PATCH', @_) }
sub put    { my $s = shift; $s->request('PUT', @_) }
sub delete { my $s = shift; $s->request('DELETE', @_) }

sub login {
    my ($self, $user, $password) = @_;
    return $self->post('/api/login', { username => $user, password => $password });
}

# the segura_session cookie value this client holds, or undef
sub cookie {
    my ($self) = @_;
    my ($c) = grep { $_->name eq 'segura_session' }
              @{ $self->{ua}->cookie_jar->all };
    return $c ? $c->value : undef;
}

# argon2id hash of a password, made by tools/segura-passwd
sub hash_password {
    my ($password) = @_;
    my $tool = "$SeguraTest::TOP/build/segura-passwd";
    open my $fh, '-|', "printf '%s\\n' '$password' | $tool" or die "$tool: $!";
    my $h = <$fh>;
    close $fh;
    chomp $h;
    die "segura-passwd failed" unless $h =~ /^\$argon2id\$/;
    return $h;
}

# a user with a password, straight into the database; returns the id
sub add_user {
    my ($db, $name, $password, %a) = @_;
    return $db->insert_user(username => $name,
                            password_hash => hash_password($password), %a);
}

# the rows of the tables the API writes, as one string, to compare a
# database before and after a refused request
sub dump_tables {
    my ($db) = @_;
    my $out = '';
    for my $t (qw(users access_groups group_members group_keys group_devices
                  devices ssh_keys key_devices audit_log)) {
        my $rows = $db->dbh->selectall_arrayref(
            "select to_jsonb(x)::text from $t x order by 1");
        $out .= "$t\n" . join("\n", map { $_->[0] } @$rows) . "\n";
    }
    return $out;
}

# a request that must be refused: checks the status, the error code and
# field (when given), and that the database did not change; returns the
# response.  $want: { status => 422, code => 'invalid_field',
# field => 'name', reason => 'passphrase_wrong' }
sub refused {
    my ($self, $db, $method, $path, $body, $want, $name) = @_;
    my $before = dump_tables($db);
    my $res = $self->request($method, $path, $body);
    my $e = eval { $res->json->{error} } || {};
    Test::More::is($res->code, $want->{status}, "$name: $want->{status}")
        or Test::More::diag($res->body);
    Test::More::is($e->{code}, $want->{code}, "$name: code $want->{code}")
        if $want->{code};
    Test::More::is($e->{field}, $want->{field}, "$name: field $want->{field}")
        if exists $want->{field};
    Test::More::is($e->{reason}, $want->{reason}, "$name: reason $want->{reason}")
        if $want->{reason};
    Test::More::is(dump_tables($db), $before, "$name: database unchanged");
    return $res;
}

1;
