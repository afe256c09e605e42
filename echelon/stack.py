"""The production-shaped stack from real processes, without containers: the topology of docker/compose.yaml
started on loopback from the same settings, used by `make stack` and by tests/stack/.

    Postgres (already running)  ->  a dedicated database pair <name>_airflow / <name>_mlflow, created here
    Spark standalone master + worker             SPARK_MASTER=spark://127.0.0.1:<port>
    MLflow tracking server on Postgres           MLFLOW_TRACKING_URI=http://127.0.0.1:<port>, proxied artifacts,
        behind MLflow's basic-auth app           ECHELON_MLFLOW_CREDENTIALS=<0600 file with the tasks' login>
    Airflow api-server, scheduler, dag-processor, triggerer on Postgres (LocalExecutor), simple auth on

Every service binds 127.0.0.1 on a free port. Secrets come only from the environment: the Airflow admin
password is ECHELON_AIRFLOW_ADMIN_PASSWORD (a random one is generated, and written 0600 under the stack's
folder, when it is unset); the Postgres URL is ECHELON_STACK_POSTGRES_URL. Secret files are created with
mode 0600 (never written first and chmod'ed after). Spark runs with `spark.authenticate` and a random shared
secret of this stack, in its 0600 spark-defaults.conf (master, worker and every driver read it; executors get
it from their worker). Nothing printed carries a password (`describe` redacts URLs).

Size: one supervisor for the whole stack: its roles share start, stop and health checks."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from contextlib import closing, suppress
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from echelon.airflow_env import airflow_env
from echelon.settings import get_settings

BIN = Path(sys.executable).parent
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
AIRFLOW_ROLES = ("api-server", "dag-processor", "scheduler", "triggerer")


class StackError(RuntimeError):
    """A stack that cannot start: the message says what and where, for a person to act on."""


def parse_time(ts: str) -> dt.datetime:
    """A timestamp of the Airflow API (ISO 8601, `Z` for UTC)."""
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))


def latest_nightly_tick(now: dt.datetime | None = None) -> dt.datetime:
    """The run the scheduler creates when a 02:00 UTC nightly DAG (catchup=False) is unpaused: the latest
    tick. A world that ends at that run's data date makes it a real nightly run of the scheduler's own."""
    now = now or dt.datetime.now(dt.timezone.utc)
    tick = now.replace(hour=2, minute=0, second=0, microsecond=0)
    return tick if now >= tick else tick - dt.timedelta(days=1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def write_secret(path: Path, text: str) -> Path:
    """Write a secret file readable by its owner only: created with mode 0600 (os.open), so it is never
    readable by others, not even between a write and a chmod; an existing file is narrowed to 0600 first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    return path


def with_database(url: str, database: str, driver: str | None = None) -> str:
    parts = urlsplit(url)
    scheme = f"postgresql+{driver}" if driver else "postgresql"
    return urlunsplit(parts._replace(scheme=scheme, path=f"/{database}"))


def _connect(admin_url: str):
    import psycopg2

    try:
        conn = psycopg2.connect(admin_url, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StackError(f"Postgres is unreachable at {redact(admin_url)}: {first}. Start it "
                         "(e.g. `pg_ctlcluster 15 main start`) or point ECHELON_STACK_POSTGRES_URL at a "
                         "server where this user may create databases.") from None
    conn.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction (so no `with conn:`)
    return conn


def create_databases(admin_url: str, names: list[str]) -> None:
    from psycopg2 import sql

    with closing(_connect(admin_url)) as conn, conn.cursor() as cur:
        for name in names:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_databases(admin_url: str, names: list[str]) -> None:
    from psycopg2 import sql

    with closing(_connect(admin_url)) as conn, conn.cursor() as cur:
        for name in names:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def database_exists(admin_url: str, name: str) -> bool:
    with closing(_connect(admin_url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))  # bound, never formatted
        return cur.fetchone() is not None


def http_get(url: str, headers: dict | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def kill_tree(pid: int) -> list[int]:
    """SIGKILL a process and all its descendants, whatever their process groups. The tree is frozen
    (SIGSTOP) and listed again until nothing new appears, so no process can fork past the kill."""
    import psutil

    found: dict[int, psutil.Process] = {}
    while True:
        try:
            tree = [psutil.Process(pid)] + psutil.Process(pid).children(recursive=True)
        except psutil.NoSuchProcess:
            tree = list(found.values())
        new = [p for p in tree if p.pid not in found]
        if not new:
            break
        for process in new:
            found[process.pid] = process
            with suppress(psutil.NoSuchProcess):
                process.suspend()
    for process in found.values():
        with suppress(psutil.NoSuchProcess):
            process.kill()
    return sorted(found)


def stop_services(processes, grace: float = 30.0) -> None:
    """SIGTERM each service's process group, then SIGKILL the tree of any still alive after `grace` seconds
    (a loaded machine can keep an Airflow dag-processor from finishing its shutdown in time)."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    deadline = time.time() + grace
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            kill_tree(process.pid)   # its task runners too, in process groups of their own
            process.wait()


class Stack:
    """Start with `start()` (or `with Stack(...) as stack:`), stop with `stop()`; `env` is the environment
    of every service, task and CLI call of this stack."""

    def __init__(self, var: Path, name: str | None = None, postgres_url: str | None = None,
                 roles: tuple[str, ...] = AIRFLOW_ROLES, spark_worker_cores: int = 2,
                 spark_worker_memory: str = "3g", base_env: dict | None = None, keep_databases: bool = False,
                 spark: bool = True):
        base = dict(os.environ if base_env is None else base_env)
        self.var = Path(var).resolve()
        self.dir = self.var / "stack"
        self.logs = self.dir / "logs"
        self.name = name or f"echelon_stack_{uuid.uuid4().hex[:8]}"
        self.postgres_url = postgres_url or base.get("ECHELON_STACK_POSTGRES_URL", DEFAULT_POSTGRES)
        self.databases = [f"{self.name}_airflow", f"{self.name}_mlflow"]
        self.roles = roles
        self.worker_cores, self.worker_memory = spark_worker_cores, spark_worker_memory
        self.keep_databases = keep_databases
        self.spark = spark   # False (with roles=()): Postgres and MLflow only, for checks of MLflow alone
        self.ports = {k: free_port() for k in ("spark", "spark_ui", "worker", "worker_ui", "mlflow", "airflow")}
        self.spark_url = f"spark://127.0.0.1:{self.ports['spark']}"
        self.spark_ui = f"http://127.0.0.1:{self.ports['spark_ui']}"
        self.mlflow_url = f"http://127.0.0.1:{self.ports['mlflow']}"
        self.airflow_url = f"http://127.0.0.1:{self.ports['airflow']}"
        self.admin_user = base.get("ECHELON_AIRFLOW_ADMIN_USER", "admin")
        self.admin_password = base.get("ECHELON_AIRFLOW_ADMIN_PASSWORD") or secrets.token_urlsafe(18)
        self.spark_secret = secrets.token_urlsafe(24)   # spark.authenticate: this stack's processes only
        # MLflow behind its basic-auth app: an admin (people, the UI) and the tasks' own user, whose login
        # every service and task reads from a 0600 credentials file (only the file's path is in the env)
        self.mlflow_admin_password = base.get("ECHELON_MLFLOW_ADMIN_PASSWORD") or secrets.token_urlsafe(18)
        self.mlflow_tasks = ("echelon-tasks", secrets.token_urlsafe(18))
        self.mlflow_auth_dir = self.dir / "mlflow-auth"
        self.processes: dict[str, subprocess.Popen] = {}
        self.commands: dict[str, list[str]] = {}   # role -> argv, to restart a service as it was started
        self.envs: dict[str, dict] = {}             # role -> its environment (MLflow's has its auth settings)
        self._token: str | None = None
        self._created = False
        self.env = self._environment(base)

    # -- configuration -------------------------------------------------------------------------------
    def _environment(self, base: dict) -> dict:
        home = self.var / "airflow"
        env = {**base, "ECHELON_VAR": str(self.var), "AIRFLOW_HOME": str(home),
               "SPARK_MASTER": self.spark_url, "SPARK_LOCAL_IP": "127.0.0.1",
               "SPARK_CONF_DIR": str(self.dir / "spark-conf"),
               "ECHELON_SPARK_DRIVER_MEMORY": base.get("ECHELON_SPARK_DRIVER_MEMORY", "1g"),
               "MLFLOW_TRACKING_URI": self.mlflow_url, "MLFLOW_REGISTRY_URI": self.mlflow_url,
               "ECHELON_MLFLOW_CREDENTIALS": str(self.dir / "mlflow-auth" / "tasks.credentials"),
               # the domains' experiments keep their artifacts under ECHELON_MLFLOW_ARTIFACTS (default
               # <var>/mlflow/artifacts: a filesystem every process of this one-machine stack shares); the
               # server proxies the same folder for experiments created without a location
               "ECHELON_MLFLOW_ARTIFACTS": str(self.var / "mlflow" / "artifacts"),
               "MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK": "true",
               "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": with_database(self.postgres_url, self.databases[0], "psycopg2"),
               "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
               "AIRFLOW__API__HOST": "127.0.0.1", "ECHELON_AIRFLOW_PORT": str(self.ports["airflow"]),
               "AIRFLOW__API__PORT": str(self.ports["airflow"]), "AIRFLOW__API__WORKERS": "1",
               "AIRFLOW__API__BASE_URL": self.airflow_url,
               # explicit, so an inherited URL (another Airflow's) cannot send the tasks elsewhere
               "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.airflow_url.rstrip('/')}/execution/",
               # authentication on: named users only, their passwords from the environment (below)
               "AIRFLOW__CORE__AUTH_MANAGER":
                   "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
               "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
               "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.admin_user}:admin",
               "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
               "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
               # a scheduler that died leaves its running tasks orphaned; its successor resets them for
               # another try once the dead one's heartbeat is 30 s old, looking every 20 s (default 300)
               "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "20",
               "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
               "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
               "no_proxy": "*"}
        for key in ("ECHELON_LAKE", "ECHELON_REPORTS", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                    "MLFLOW_TRACKING_TOKEN"):
            env.pop(key, None)  # an inherited MLflow login would win over the tasks' credentials file  # the stack's lake and reports live under its own var/
        return airflow_env(env)

    def _write_configs(self) -> None:
        conf = self.dir / "spark-conf"
        conf.mkdir(parents=True, exist_ok=True)
        # one core per application so that parallel DAG runs share the worker instead of queueing; every
        # connection to the master, the worker and the executors authenticated with the stack's secret
        write_secret(conf / "spark-defaults.conf", "spark.cores.max 1\nspark.executor.memory 1g\n"
                     f"spark.authenticate true\nspark.authenticate.secret {self.spark_secret}\n")
        passwords = Path(self.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
        write_secret(passwords, json.dumps({self.admin_user: self.admin_password}) + "\n")
        from echelon.stack_secrets import mlflow_auth_ini
        from echelon.tracking import credentials_text

        mlflow_auth_ini(self.mlflow_auth_dir / "basic_auth.ini", self.mlflow_admin_password,
                        f"sqlite:///{self.mlflow_auth_dir / 'users.db'}")
        write_secret(self.mlflow_auth_dir / "admin.credentials", credentials_text("admin", self.mlflow_admin_password))
        write_secret(Path(self.env["ECHELON_MLFLOW_CREDENTIALS"]), credentials_text(*self.mlflow_tasks))

    # -- processes -----------------------------------------------------------------------------------
    def _spawn(self, role: str, argv: list[str], mode: str = "wb", env: dict | None = None) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.commands[role] = argv
        self.envs[role] = env = env or self.envs.get(role) or self.env
        with open(self.logs / f"{role}.log", mode) as out:
            self.processes[role] = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                                    cwd=self.dir, start_new_session=True)

    def restart(self, role: str, kill: bool = False, grace: float = 120.0) -> None:
        """Stop one service and start it again from the same settings (its log continues).

        By default as a supervisor would: SIGTERM to the service, `grace` seconds to finish (a scheduler lets
        its running tasks end), then SIGKILL. With kill=True, as a crash of its host or container: SIGKILL at
        once to it and to every process it started, running tasks included (Airflow's task runners sit in
        process groups of their own, so a signal to the service's group would miss them)."""
        process = self.processes[role]
        if not kill:
            process.terminate()
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                kill = True
        if kill:
            kill_tree(process.pid)
        process.wait()
        self._spawn(role, self.commands[role], mode="ab")

    def _wait(self, what: str, check, timeout: float = 180.0, roles: tuple[str, ...] = ()) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if check():
                return
            for role in roles:
                if self.processes[role].poll() is not None:
                    raise StackError(f"{role} exited with {self.processes[role].returncode} while waiting for "
                                     f"{what}:\n{self.tail(role)}")
            time.sleep(1.0)
        raise StackError(f"timed out after {timeout:.0f}s waiting for {what}\n"
                         + "\n".join(self.tail(r) for r in roles))

    def tail(self, role: str, chars: int = 3000) -> str:
        path = self.logs / f"{role}.log"
        return f"--- {role}.log:\n" + (path.read_text(errors="replace")[-chars:] if path.exists() else "(none)")

    def spark_state(self) -> dict:
        status, body = http_get(f"{self.spark_ui}/json/")
        return json.loads(body) if status == 200 else {}

    def _start_spark(self) -> None:
        import pyspark

        spark_class = str(Path(pyspark.__file__).parent / "bin" / "spark-class")
        self.env["SPARK_NO_DAEMONIZE"] = "1"
        self._spawn("spark-master", [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                     "--port", str(self.ports["spark"]), "--webui-port", str(self.ports["spark_ui"])])
        self._wait("the Spark master", self.spark_state, roles=("spark-master",))
        self._spawn("spark-worker", [spark_class, "org.apache.spark.deploy.worker.Worker", self.spark_url,
                                     "--host", "127.0.0.1", "--port", str(self.ports["worker"]),
                                     "--webui-port", str(self.ports["worker_ui"]), "--cores", str(self.worker_cores),
                                     "--memory", self.worker_memory, "--work-dir", str(self.dir / "spark-work")])

    def _start_mlflow(self) -> None:
        store = with_database(self.postgres_url, self.databases[1], "psycopg2")  # SQLAlchemy 2.1 defaults to psycopg 3
        # create the schema once, before several server workers could race to do it
        init = subprocess.run([sys.executable, "-c", "import sys\nfrom mlflow.store.tracking.sqlalchemy_store "
                               "import SqlAlchemyStore\nSqlAlchemyStore(sys.argv[1], sys.argv[2])", store,
                               str(self.var / "mlflow" / "artifacts")], env=self.env, capture_output=True, text=True)
        if init.returncode:
            raise StackError(f"MLflow could not create its schema in {redact(store)}:\n{init.stderr[-2000:]}")
        # the basic-auth app: its config (admin, users database) and Flask key reach the server's process only
        auth_env = {**self.env, "MLFLOW_AUTH_CONFIG_PATH": str(self.mlflow_auth_dir / "basic_auth.ini"),
                    "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(32)}
        self._spawn("mlflow", [str(BIN / "mlflow"), "server", "--app-name", "basic-auth",
                               "--backend-store-uri", store,
                               "--registry-store-uri", store, "--serve-artifacts",
                               "--artifacts-destination", str(self.var / "mlflow" / "artifacts"),
                               "--host", "127.0.0.1", "--port", str(self.ports["mlflow"]), "--workers", "2",
                               "--allowed-hosts", f"127.0.0.1:{self.ports['mlflow']},localhost:{self.ports['mlflow']}"],
                    env=auth_env)

    def _start_airflow(self) -> None:
        migrate = subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=self.env, capture_output=True,
                                 text=True)
        if migrate.returncode:
            raise StackError(f"airflow db migrate failed on {redact(self.env['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN'])}"
                             f":\n{migrate.stdout[-1500:]}\n{migrate.stderr[-2000:]}")
        for role in self.roles:
            # the scheduler's log server would listen on every interface (not configurable in 3.3); the
            # api-server reads the task logs from the same folder, so it is not needed on one machine
            extra = ["--skip-serve-logs"] if role == "scheduler" else []
            self._spawn(role, [str(BIN / "airflow"), role, *extra])

    def start(self) -> "Stack":
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_configs()
        create_databases(self.postgres_url, self.databases)
        self._created = True
        try:
            if self.spark:
                self._start_spark()
            self._start_mlflow()
            if self.roles:
                self._start_airflow()  # migrates while the JVMs and MLflow come up
            if self.spark:
                self._wait("a Spark worker to register", lambda: self.spark_state().get("aliveworkers", 0) >= 1,
                           roles=("spark-master", "spark-worker"))
            self._wait("the MLflow server", lambda: http_get(f"{self.mlflow_url}/health")[0] == 200, roles=("mlflow",))
            self._create_mlflow_tasks_user()
            if "api-server" in self.roles:
                self._wait("the Airflow api-server",
                           lambda: http_get(f"{self.airflow_url}/api/v2/monitor/health")[0] == 200,
                           roles=("api-server",))
        except BaseException:
            self.stop()
            raise
        return self

    def _create_mlflow_tasks_user(self) -> None:
        from echelon.stack_secrets import SecretError, create_mlflow_user

        try:
            create_mlflow_user(self.mlflow_url, ("admin", self.mlflow_admin_password), *self.mlflow_tasks)
        except SecretError as error:
            raise StackError(f"{error}\n{self.tail('mlflow')}") from None

    def stop(self) -> None:
        stop_services(self.processes.values())
        self.processes.clear()
        if self._created and not self.keep_databases:
            drop_databases(self.postgres_url, self.databases)
            self._created = False

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the Airflow REST API, authenticated ---------------------------------------------------------
    def token(self) -> str:
        if self._token is None:
            body = json.dumps({"username": self.admin_user, "password": self.admin_password}).encode()
            request = urllib.request.Request(f"{self.airflow_url}/auth/token", data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                self._token = json.loads(response.read())["access_token"]
        return self._token

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(f"{self.airflow_url}/api/v2/{path.lstrip('/')}", method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Authorization": f"Bearer {self.token()}",
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise StackError(f"{method} {path}: HTTP {exc.code} {exc.read()[:500]!r}") from None

    def wait_for_dag(self, dag_id: str, timeout: float = 240.0) -> None:
        def parsed():
            try:
                self.api("GET", f"dags/{dag_id}")
                return True
            except StackError:
                return False
        self._wait(f"the dag-processor to parse {dag_id}", parsed, timeout, roles=("dag-processor",))

    def dag_runs(self, dag_id: str, run_type: str | None = None) -> dict[str, dict]:
        """The DAG's runs (of one run type, if given) by logical date in ISO form, UTC."""
        runs = self.api("GET", f"dags/{dag_id}/dagRuns?limit=1000")["dag_runs"]
        return {parse_time(r["logical_date"]).isoformat(): r for r in runs
                if r["logical_date"] and run_type in (None, r["run_type"])}

    def wait_runs(self, dag_id: str, logical_dates: set[str], run_type: str, timeout: float,
                  poll: float = 5.0) -> dict[str, dict]:
        """Poll until the runs of `run_type` at `logical_dates` have finished (success or failed)."""
        deadline = time.time() + timeout
        while True:
            found = self.dag_runs(dag_id, run_type)
            done = {k: r for k, r in found.items() if k in logical_dates and r["state"] in ("success", "failed")}
            if len(done) == len(logical_dates):
                return done
            if time.time() > deadline:
                raise StackError(f"{run_type} runs of {dag_id} at {sorted(logical_dates)} did not finish in "
                                 f"{timeout:.0f}s: { {k: r['state'] for k, r in found.items()} }\n{self.tail('scheduler')}")
            time.sleep(poll)

    def describe(self) -> str:
        settings = get_settings(self.env)
        return "\n".join([
            f"Airflow UI   {self.airflow_url}  (user {self.admin_user}; password: ECHELON_AIRFLOW_ADMIN_PASSWORD or "
            f"{self.env['AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE']})",
            f"MLflow UI    {self.mlflow_url}  (basic auth: user admin; password: ECHELON_MLFLOW_ADMIN_PASSWORD or "
            f"{self.mlflow_auth_dir / 'admin.credentials'}; tasks log in as {self.mlflow_tasks[0]} from "
            f"ECHELON_MLFLOW_CREDENTIALS)", f"Spark master {self.spark_url}  (UI {self.spark_ui})",
            f"Postgres     {', '.join(self.databases)} on {redact(self.postgres_url)}",
            f"Lake         {settings.lake}", f"Reports      {settings.reports}", f"Logs         {self.logs}",
            "Environment for the CLI: " + " ".join(f"{k}={redact(self.env[k])}" for k in (
                "ECHELON_VAR", "AIRFLOW_HOME", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "MLFLOW_TRACKING_URI",
                "ECHELON_MLFLOW_CREDENTIALS", "SPARK_MASTER", "SPARK_CONF_DIR", "ECHELON_AIRFLOW_PORT")),
            f"A world for it: ECHELON_VAR={self.var} echelon world --items 50 --locations 2 --end <ds>, then unpause "
            "demand_nightly in the UI or run `echelon backfill` with the environment above."])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--var", default=None, help="state folder (default: <ECHELON_VAR>/stack-var)")
    parser.add_argument("--postgres-url", default=None, help=f"admin URL (default ECHELON_STACK_POSTGRES_URL or {DEFAULT_POSTGRES})")
    parser.add_argument("--name", default=None, help="database name prefix (default: a unique one)")
    parser.add_argument("--keep-databases", action="store_true", help="do not drop the databases on exit")


def main(args: argparse.Namespace) -> int:
    """`echelon stack`: start the stack, print where everything is, run until Ctrl-C, then tear down."""
    var = Path(args.var) if args.var else get_settings().var / "stack-var"
    stack = Stack(var, name=args.name, postgres_url=args.postgres_url, keep_databases=args.keep_databases)
    try:
        stack.start()
    except StackError as exc:
        print(f"echelon stack: {exc}", file=sys.stderr)
        return 2
    print(stack.describe(), flush=True)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    try:
        while not stopping and all(p.poll() is None for p in stack.processes.values()):
            time.sleep(2)
    except KeyboardInterrupt:
        pass
    dead = [r for r, p in stack.processes.items() if p.poll() is not None]
    if dead:
        print("echelon stack: stopped because a service exited:\n" + "\n".join(stack.tail(r) for r in dead),
              file=sys.stderr)
    stack.stop()
    return 1 if dead else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m echelon.stack", description=__doc__.splitlines()[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
