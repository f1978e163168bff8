# pgrepl's SQL bridge: relays its stdin and stdout to PostgreSQL's Unix
# socket (ARGV[0]), so that a client speaks the protocol over the stdio of
# a command run through sudo or docker exec. It ends when either side
# closes: the client's end of stdin, or the server's end of the socket.
# Core Perl only, and the lightest of it (Socket, four-argument select):
# it starts for every connection.
use strict;
use Socket qw(PF_UNIX SOCK_STREAM pack_sockaddr_un);
$SIG{PIPE} = 'IGNORE';
my $path = $ARGV[0];
my $server;
socket($server, PF_UNIX, SOCK_STREAM, 0) && connect($server, pack_sockaddr_un($path))
  or do { print STDERR "pgrepl-bridge: cannot connect to $path: $!\n"; exit 2 };
binmode STDIN; binmode STDOUT; binmode $server;
my @pairs = ([\*STDIN, $server], [$server, \*STDOUT]);
my $watch = '';
vec($watch, fileno($_->[0]), 1) = 1 for @pairs;
while (1) {
  my $ready = select(my $readable = $watch, undef, undef, undef);
  next if $ready < 0;    # a signal interrupted the wait
  for my $pair (@pairs) {
    my ($from, $to) = @$pair;
    next unless vec($readable, fileno($from), 1);
    my $n = sysread($from, my $buf, 65536);
    exit 0 unless $n;
    my $done = 0;
    while ($done < $n) {
      my $w = syswrite($to, $buf, $n - $done, $done);
      exit 0 unless defined $w;
      $done += $w;
    }
  }
}
