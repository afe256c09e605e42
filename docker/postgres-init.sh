#!/usr/bin/env bash
# Runs once, on an empty Postgres volume: one database and one owner per service, each password from its
# Docker secret file (/run/secrets/<svc>_db_password), never from the environment.
# psql's :'var' quoting binds the values as literals (no SQL built by string concatenation).
set -euo pipefail
for svc in airflow mlflow; do
  user_var="${svc^^}_DB_USER"
  password="$(cat "/run/secrets/${svc}_db_password")"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
       -v user="${!user_var}" -v pass="$password" -v db="$svc" <<'SQL'
CREATE ROLE :"user" LOGIN PASSWORD :'pass';
CREATE DATABASE :"db" OWNER :"user";
SQL
done
