# pgrepl's SQL bridge: relays its stdin and stdout to PostgreSQL's Unix
# socket (ARGV[0]), so that a client speaks the protocol over the stdio of
# a command run through sudo or docker exec. It ends when either side
# closes: the client's end of stdin, or the server's end of the socket.
use strict;
use IO::Socket::UNIX;
use IO::Select;
$SIG{PIPE} = 'IGNORE';
my $path = $ARGV[0];
my $server = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $path)
  or do { print STDERR "pgrepl-bridge: cannot connect to $path: $!\n"; exit 2 };
binmode STDIN; binmode STDOUT; binmode $server;
my %to = (fileno(STDIN) => $server, fileno($server) => \*STDOUT);
my $select = IO::Select->new(\*STDIN, $server);
while (1) {
  for my $from ($select->can_read) {
    my $n = sysread($from, my $buf, 65536);
    exit 0 unless $n;
    my $done = 0;
    while ($done < $n) {
      my $w = syswrite($to{fileno($from)}, $buf, $n - $done, $done);
      exit 0 unless defined $w;
      $done += $w;
    }
  }
}
