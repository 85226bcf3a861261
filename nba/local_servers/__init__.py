"""Local infrastructure owned by the project: a KRaft Kafka broker from Maven Central jars and
Debian's redis-server and prometheus, each on its own port and data dir, found by PID files."""
