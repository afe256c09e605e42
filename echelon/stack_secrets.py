"""Secrets of the production-shaped stack as files (docker/compose.yaml's Docker secrets), never as
environment values that every Airflow task would inherit.

    python -m echelon.stack_secrets generate docker/secrets   # once: random values, each file 0600
    python -m echelon.stack_secrets check                     # compose's preflight: every secret set, no placeholder
    python -m echelon.stack_secrets conn airflow              # AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD
    python -m echelon.stack_secrets get airflow_fernet_key    # AIRFLOW__CORE__FERNET_KEY_CMD (and the like)
    python -m echelon.stack_secrets spark-conf DIR            # spark-defaults.conf (0600) with spark.authenticate
    python -m echelon.stack_secrets mlflow-auth FILE          # the basic-auth app's ini (admin, users database)
    python -m echelon.stack_secrets airflow-passwords FILE    # the simple auth manager's passwords file (0600)
    python -m echelon.stack_secrets redis-url                 # AIRFLOW__CELERY__BROKER_URL_CMD
    python -m echelon.stack_secrets mlflow-user [URL]         # create the tasks' MLflow user (idempotent)

Inside the containers the secrets are files under /run/secrets (ECHELON_SECRETS overrides the folder). Airflow
reads its database URL, Fernet key, JWT secret and API secret key through `_CMD` settings that run this
module, so the environment of a task holds commands, not values; the MLflow tasks' login is a credentials
file (ECHELON_MLFLOW_CREDENTIALS, read by echelon.tracking.load_credentials); Spark's shared secret is in a
0600 spark-defaults.conf written at container start. Bad input (a missing, empty or placeholder secret):
one line naming the file, exit 2."""
from __future__ import annotations

import argparse
import base64
import json
import secrets
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote


# name -> what it is; every one is a file of its own (the names compose.yaml's `secrets:` use)
SECRETS = {
    "postgres_password": "the Postgres superuser (creates the databases once)",
    "airflow_db_password": "owner of the airflow metadata database",
    "mlflow_db_password": "owner of the mlflow tracking + registry database",
    "airflow_fernet_key": "encrypts connections and variables in Airflow's database",
    "airflow_jwt_secret": "signs Airflow's API and task-execution tokens",
    "airflow_api_secret_key": "AIRFLOW__API__SECRET_KEY",
    "airflow_admin_password": "the Airflow UI/API user",
    "mlflow_admin_password": "MLflow's admin user (the basic-auth app)",
    "mlflow_flask_secret_key": "MLflow's CSRF/session key (MLFLOW_FLASK_SERVER_SECRET_KEY)",
    "mlflow_tasks_credentials": "the tasks' MLflow login, MLflow's credentials format",
    "spark_secret": "spark.authenticate's shared secret (master, workers, drivers)",
    "redis_password": "the Celery broker (compose.celery.yaml)",
}
PLACEHOLDER = "change-me"
TASKS_USER = "echelon-tasks"


def _env(name: str, default: str | None = None) -> str | None:
    from echelon.settings import get_settings

    return get_settings().env.get(name, default)


class SecretError(ValueError):
    """A secret that is missing, empty or still a placeholder: the message names its file."""


def folder() -> Path:
    return Path(_env("ECHELON_SECRETS", "/run/secrets"))


def read(name: str, root: Path | None = None) -> str:
    path = (root or folder()) / name
    try:
        value = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise SecretError(f"secret {path}: cannot be read ({error.__class__.__name__}: {error})") from None
    if not value:
        raise SecretError(f"secret {path}: is empty")
    if PLACEHOLDER in value:
        raise SecretError(f"secret {path}: is still the placeholder {PLACEHOLDER}")
    return value


def write_secret(path: Path, text: str) -> Path:
    from echelon.stack import write_secret as write   # imported here: `conn` runs on every Airflow config read

    return write(path, text)


def credentials_text(user: str, password: str) -> str:
    from echelon.tracking import credentials_text as text

    return text(user, password)


def generate(root: Path) -> list[str]:
    """Write every missing secret file under root with a random value, each created 0600; existing files
    are kept (a database initialised with a password must keep it). Returns the names written."""
    written = []
    for name in SECRETS:
        path = root / name
        if path.exists():
            continue
        if name == "airflow_fernet_key":
            value = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        elif name == "mlflow_tasks_credentials":
            value = credentials_text(TASKS_USER, secrets.token_urlsafe(24))
        else:
            value = secrets.token_urlsafe(32)
        write_secret(path, value if value.endswith("\n") else value + "\n")
        written.append(name)
    return written


def check(root: Path | None = None) -> None:
    for name in SECRETS:
        read(name, root)


def conn(service: str) -> str:
    """The SQLAlchemy URL of `service`'s database, its password from the secret file (URL-quoted)."""
    user = _env(f"{service.upper()}_DB_USER", service)
    host = _env("ECHELON_DB_HOST", "postgres:5432")
    password = quote(read(f"{service}_db_password"), safe="")
    return f"postgresql+psycopg2://{quote(user, safe='')}:{password}@{host}/{service}"


def redis_url() -> str:
    return f"redis://:{quote(read('redis_password'), safe='')}@{_env('ECHELON_REDIS_HOST', 'redis:6379')}/0"


def spark_conf(directory: Path, secret: str | None = None, extra: str = "") -> Path:
    """spark-defaults.conf with spark.authenticate and the shared secret, 0600 (the driver, master and
    workers read it from SPARK_CONF_DIR; executors get the secret from their worker)."""
    secret = secret or read("spark_secret")
    return write_secret(Path(directory) / "spark-defaults.conf",
                        f"{extra}spark.authenticate true\nspark.authenticate.secret {secret}\n")


def mlflow_auth_ini(path: Path, admin_password: str, database_uri: str, admin_user: str = "admin") -> Path:
    """The basic-auth app's config (MLFLOW_AUTH_CONFIG_PATH), 0600: its admin user is created from it on
    the first start; every other user READ by default (a user gets MANAGE on what it creates)."""
    return write_secret(Path(path), "[mlflow]\ndefault_permission = READ\n"
                        f"database_uri = {database_uri}\nadmin_username = {admin_user}\n"
                        f"admin_password = {admin_password}\nauthorization_function = "
                        "mlflow.server.auth:authenticate_request_basic_auth\n")


def _parse_credentials(text: str) -> tuple[str, str]:
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser["mlflow"]["mlflow_tracking_username"], parser["mlflow"]["mlflow_tracking_password"]


def create_mlflow_user(url: str, admin: tuple[str, str], user: str, password: str) -> bool:
    """Create `user` on an MLflow server with basic auth (as its admin); False when it already exists."""
    token = base64.b64encode(f"{admin[0]}:{admin[1]}".encode()).decode()
    request = urllib.request.Request(f"{url.rstrip('/')}/api/2.0/mlflow/users/create", method="POST",
                                     data=json.dumps({"username": user, "password": password}).encode(),
                                     headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30):
            return True
    except urllib.error.HTTPError as error:
        body = error.read()
        if b"RESOURCE_ALREADY_EXISTS" in body:
            return False
        raise SecretError(f"MLflow at {url}: creating user {user} failed: HTTP {error.code} {body[:300]!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m echelon.stack_secrets", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("generate").add_argument("folder", type=Path)
    sub.add_parser("check")
    sub.add_parser("get").add_argument("name", choices=sorted(SECRETS))
    c = sub.add_parser("conn")
    c.add_argument("service", choices=["airflow", "mlflow"])
    c.add_argument("--prefix", default="", help="e.g. db+ for Celery's result backend")
    sub.add_parser("redis-url")
    sub.add_parser("spark-conf").add_argument("folder", type=Path)
    m = sub.add_parser("mlflow-auth")
    m.add_argument("file", type=Path)
    m.add_argument("--database-uri", required=True, help="where the basic-auth app keeps its users")
    sub.add_parser("airflow-passwords").add_argument("file", type=Path)
    sub.add_parser("mlflow-user").add_argument("url", nargs="?", default=_env("MLFLOW_TRACKING_URI"))
    args = parser.parse_args(argv)
    try:
        if args.action == "generate":
            written = generate(args.folder)
            print(f"wrote {len(written)} secret file(s) under {args.folder}: {', '.join(written) or 'none missing'}")
        elif args.action == "check":
            check()
        # no newline after a value: Airflow takes a _CMD's output as it is, a newline included
        elif args.action == "get":
            print(read(args.name), end="")
        elif args.action == "conn":
            print(args.prefix + conn(args.service), end="")
        elif args.action == "redis-url":
            print(redis_url(), end="")
        elif args.action == "airflow-passwords":
            user = _env("AIRFLOW_ADMIN_USER", "admin")
            write_secret(args.file, json.dumps({user: read("airflow_admin_password")}) + "\n")
        elif args.action == "spark-conf":
            spark_conf(args.folder)
        elif args.action == "mlflow-auth":
            Path(args.database_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True) \
                if args.database_uri.startswith("sqlite:///") else None
            mlflow_auth_ini(args.file, read("mlflow_admin_password"), args.database_uri)
        elif args.action == "mlflow-user":
            user, password = _parse_credentials(read("mlflow_tasks_credentials"))
            create_mlflow_user(args.url, ("admin", read("mlflow_admin_password")), user, password)
    except SecretError as error:
        print(f"echelon stack_secrets: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
