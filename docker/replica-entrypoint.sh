#!/bin/sh
# The replica service's entrypoint: on first start its data directory is a base backup of the
# primary taken with -R (standby.signal plus primary_conninfo, so it streams from then on);
# later starts reuse it. Then the postgres image's own entrypoint runs the server as usual
# (a populated data directory skips its initdb step).
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    # The primary listens on TCP only once its init scripts (the replication role) are done.
    until pg_isready -h primary -p 5432 -U replicator; do sleep 1; done
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    gosu postgres env PGPASSWORD="$REPLICATION_PASSWORD" \
        pg_basebackup -h primary -p 5432 -U replicator -D "$PGDATA" -R -X stream
fi
exec docker-entrypoint.sh postgres -c hot_standby=on
