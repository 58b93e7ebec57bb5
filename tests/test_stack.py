"""How the product is started: `make run` (honcho over the Procfile) and docker-compose,
whose every command is run here for real (no Docker engine on this machine)."""

import os
import shlex
import signal
import subprocess
import time

import requests
import yaml

from tests.conftest import run_cli
from tests.helpers import (
    BIN,
    ROOT,
    SERVICE_NAMES,
    free_port,
    service_env,
    stop,
    wait_ready,
    wait_until,
)

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
WORKERS = ("worker-outbox", "worker-events", "worker-backfill")


def test_make_run_starts_everything_and_ctrl_c_stops_it(fresh_database_url, tmp_path):
    ports = {name: free_port() for name in SERVICE_NAMES}
    env = service_env(fresh_database_url, ports)
    env.update({f"{name.upper()}_PORT": str(port) for name, port in ports.items()})
    env = {k: v for k, v in env.items() if not k.endswith("_URL") or k == "DATABASE_URL"}
    log = open(tmp_path / "make-run.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        for port in ports.values():
            wait_ready(f"http://127.0.0.1:{port}", timeout=60)
            assert requests.get(f"http://127.0.0.1:{port}/docs", timeout=5).status_code == 200
        output = (tmp_path / "make-run.log").read_text()
        assert f"accounts       http://127.0.0.1:{ports['accounts']}/docs" in output
        assert "seed:" in output  # an empty database gets the demo data
        # The services found each other through the ports alone: a seeded key works on
        # activity, which asks accounts over HTTP.
        key = next(line.split(": ")[-1] for line in output.splitlines() if "API key 'CI" in line)
        listed = requests.get(
            f"http://127.0.0.1:{ports['activity']}/api/v1/orgs/techcorp/repositories",
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        assert listed.status_code == 200 and len(listed.json()) == 2
        wait_until(
            lambda: "worker started" in (tmp_path / "make-run.log").read_text(),
            what="the outbox worker",
        )
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does to the foreground group
        proc.wait(30)
        log.close()
    for port in ports.values():
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            raise AssertionError(f"port {port} still answers after Ctrl-C")
        except requests.ConnectionError:
            pass
    # A second start on the same database does not seed again.
    second = run_cli("db", "seed", "--if-empty", database_url=fresh_database_url)
    assert "skipped" in second.stdout


def test_compose_file_describes_the_stack():
    services = COMPOSE["services"]
    assert set(services) >= {"postgres", "migrate", *SERVICE_NAMES, *WORKERS}
    postgres = services["postgres"]
    assert "healthcheck" in postgres and postgres["volumes"][0].startswith("pgdata:")
    assert "pgdata" in COMPOSE["volumes"]
    assert services["migrate"]["command"] == ["devmetrics", "db", "migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in [*SERVICE_NAMES, *WORKERS]:
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy", name
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql://"), name
        assert env["ACCOUNTS_URL"] == "http://accounts:8001"
        # One shared encryption key and internal token, required (no per-container default).
        assert env["DEVMETRICS_ENCRYPTION_KEYS"].startswith("${DEVMETRICS_ENCRYPTION_KEYS:?")
        assert env["INTERNAL_API_TOKEN"].startswith("${INTERNAL_API_TOKEN:?")
    dockerfile = (ROOT / "Dockerfile").read_text()
    for copied in ("shared", "services", "migrations", "gunicorn.conf.py", "requirements.lock"):
        assert copied in dockerfile and (ROOT / copied).exists()


def test_every_compose_command_exists_and_starts(fresh_database_url, tmp_path):
    services = COMPOSE["services"]
    ports = {name: free_port() for name in SERVICE_NAMES}
    env = service_env(fresh_database_url, ports)

    def local(command):
        argv = [str(BIN / command[0]), *command[1:]]
        # Same command, loopback instead of the container's 0.0.0.0:<port>.
        return [a.replace("0.0.0.0:", "127.0.0.1:") for a in argv]

    migrate = subprocess.run(
        local(services["migrate"]["command"]),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr
    started = []
    try:
        for name in SERVICE_NAMES:
            argv = local(services[name]["command"])
            compose_port = services[name]["ports"][0].split(":")[0]
            argv = [a.replace(f":{compose_port}", f":{ports[name]}") for a in argv]
            log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115
            started.append(
                subprocess.Popen(
                    argv,
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        workers = [
            subprocess.Popen(
                local(services[name]["command"]),
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            for name in WORKERS
        ]
        started.extend(workers)
        for name in SERVICE_NAMES:
            wait_ready(f"http://127.0.0.1:{ports[name]}")
        time.sleep(1.5)
        for worker in workers:
            assert worker.poll() is None, worker.stderr.read()
    finally:
        codes = [stop(p) for p in started]
    assert codes == [0] * len(started), codes  # SIGTERM is a clean, graceful stop
    assert shlex.join(services["accounts"]["command"]).startswith("gunicorn -c gunicorn.conf.py")
