#!/usr/bin/env bash
# Runs once, on an empty Postgres volume: one database and one owner per service, passwords from the env.
# psql's :'var' quoting binds the values as literals (no SQL built by string concatenation).
set -euo pipefail
for svc in airflow mlflow; do
  user_var="${svc^^}_DB_USER"; pass_var="${svc^^}_DB_PASSWORD"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
       -v user="${!user_var}" -v pass="${!pass_var}" -v db="$svc" <<'SQL'
CREATE ROLE :"user" LOGIN PASSWORD :'pass';
CREATE DATABASE :"db" OWNER :"user";
SQL
done
