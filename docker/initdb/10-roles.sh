#!/bin/sh
# Runs once, when the primary's data directory is first created (the postgres image runs
# /docker-entrypoint-initdb.d/* then): the application user Lagoon logs in as, a replication
# user for the replica's pg_basebackup and streaming, and a pg_hba line letting it connect
# (the image's own "host all all all" line does not cover replication connections).
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE ROLE app LOGIN PASSWORD '$APP_PASSWORD';
ALTER DATABASE appdb OWNER TO app;
CREATE ROLE replicator REPLICATION LOGIN PASSWORD '$REPLICATION_PASSWORD';
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
