# Run by sudo as the node's PostgreSQL user: from that user's home
# (sudo -H set HOME), or / when it has none, so that programs that read ~
# or . work and none starts in the administrator's home, which that user
# may not be able to read. Then the command itself, its arguments as given.
cd 2>/dev/null || cd /
exec "$@"
