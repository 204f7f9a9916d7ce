"""`python -m autoprune ui`: the MLflow UI for the configured tracking store, on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlparse

from autoprune.config import Settings
from autoprune.errors import UserError

SUMMARY = "start the MLflow UI for the configured store (127.0.0.1 unless told otherwise)"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def ui_command(uri: str, host: str, port: int) -> list[str]:
    """The MLflow server invocation serving `uri` (its artifacts too) at host:port."""
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
            "--host", host, "--port", str(port)]


def check_port(host: str, port: int) -> None:
    """UserError when something already listens on host:port."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.settimeout(1.0)
        if probe.connect_ex((host, port)) == 0:
            raise UserError(f"port {port} on {host} is already in use; choose another with "
                            "port=<number>")


def stop_server(process: subprocess.Popen) -> None:
    """Stop the MLflow server and every process it started (its uvicorn workers and job
    consumers), which it does not stop itself: they share its process group."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return  # nothing of the group is left
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.5 if sig == signal.SIGTERM else 0.0)


def run(settings: Settings, output_dir: str) -> None:
    """Start the UI and keep it in the foreground until Ctrl-C or SIGTERM."""
    from autoprune.signals import stop_on_sigterm
    from autoprune.tracking.mlflow import check_store_exists

    uri = settings.tracking.uri
    if urlparse(uri).scheme in ("http", "https"):
        raise UserError(f"tracking.uri {uri} is a server already: open it in a browser")
    check_store_exists(uri)
    host = str(settings.raw.get("host", "127.0.0.1"))
    port = int(settings.raw.get("port", 5000))
    if not 0 < port < 65536:
        raise UserError(f"port must be in 1..65535, got {port}")
    check_port(host, port)
    if host not in LOOPBACK:
        print(f"warning: host={host} exposes the UI (and every run's artifacts) to the network",
              flush=True)
    stop_on_sigterm()  # now: importing MLflow above installs handlers of its own
    # A session of its own: its whole process group can be stopped with it.
    process = subprocess.Popen(ui_command(uri, host, port), start_new_session=True)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    try:
        for _ in range(600):  # until it answers, or gives up
            if process.poll() is not None:
                raise UserError(f"the MLflow UI exited with status {process.returncode}")
            with socket.socket() as probe:
                probe.settimeout(0.5)
                if probe.connect_ex((host if host != "localhost" else "127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        print(f"MLflow UI for {uri}: {url} (Ctrl-C stops it). Study runs hold their trials "
              "as nested runs; filter with tags.pareto = \"true\" for the front.", flush=True)
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_server(process)
