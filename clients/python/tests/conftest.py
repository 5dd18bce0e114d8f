"""A live crms dev cluster for the tests (etcd + control plane + one local worker).

The session fixture runs `node bin/crms.js dev` on free ports with a temporary
data dir and stops it with SIGINT at the end. Set CRMS_TEST_ADDRESS=host:port
to run the tests against a cluster that is already up instead (the tests that
start an extra worker then need CRMS_REPO to find bin/crms.js).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

import crms

HERE = Path(__file__).resolve().parent
PYTHON_CLIENT = HERE.parent
REPO = Path(os.environ.get("CRMS_REPO", PYTHON_CLIENT.parent.parent)).resolve()
CRMS_JS = REPO / "bin" / "crms.js"
UP_BANNER = "crms dev cluster is up:"
START_TIMEOUT = 90.0

# A constraint no worker has: a job with it stays PENDING until killed.
NEVER = {"crms-pytest-never": "true"}


def eventually(fn, timeout=30.0, interval=0.05):
    """Calls fn until it returns something true, and returns that; AssertionError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def _port_free(port: int) -> bool:
    for host in ("127.0.0.1", "localhost"):
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            continue
        for family, _t, _p, _c, addr in infos:
            s = socket.socket(family, socket.SOCK_STREAM)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(addr)
            except OSError:
                return False
            finally:
                s.close()
    return True


def _free_ports(count: int, consecutive: bool = False) -> list[int]:
    """Ports that are free now, picked at random in a quiet range (consecutive if asked)."""
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(20000, 32000)
        ports = [base + i for i in range(count)] if consecutive else [base]
        if all(_port_free(p) for p in ports):
            return ports
    raise RuntimeError("no free port found")


class Proc:
    """A child process in its own process group, its output kept in a log file."""

    def __init__(self, argv: list[str], log_path: Path, ready: str | None = None, timeout: float = START_TIMEOUT):
        self.argv = argv
        self.log_path = log_path
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._marker = ready
        self.proc = subprocess.Popen(
            argv,
            cwd=str(REPO),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if ready is not None:
            deadline = time.monotonic() + timeout
            while not self._ready.wait(0.1):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{' '.join(argv)} did not come up:\n{self.log()}")

    def _read(self) -> None:
        with open(self.log_path, "w") as log:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                self.lines.append(line)
                if self._marker and self._marker in line:
                    self._ready.set()

    def log(self) -> str:
        return "".join(self.lines[-200:])

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)
        self._reader.join(5)


@pytest.fixture(scope="session")
def tmp_root():
    root = Path(tempfile.mkdtemp(prefix="crms-pytest-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster(tmp_root):
    """Address (host:port) of a running crms cluster, started for this test session."""
    existing = os.environ.get("CRMS_TEST_ADDRESS")
    if existing:
        yield existing
        return
    if shutil.which("node") is None:
        pytest.fail("node is not installed: the tests run a live crms dev cluster (node bin/crms.js dev)")
    if not CRMS_JS.exists():
        pytest.fail(f"{CRMS_JS} not found; set CRMS_REPO to the crms repository")
    last_error = None
    for _attempt in range(3):  # a port picked as free can be taken before etcd binds it
        (port,) = _free_ports(1)
        etcd_port, _peer = _free_ports(2, consecutive=True)
        data_dir = tmp_root / f"dev-{port}"
        data_dir.mkdir()
        try:
            dev = Proc(
                [
                    "node",
                    str(CRMS_JS),
                    "dev",
                    "--port",
                    str(port),
                    "--etcd-port",
                    str(etcd_port),
                    "--http-port",
                    "0",
                    "--data-dir",
                    str(data_dir),
                ],
                tmp_root / f"dev-{port}.log",
                ready=UP_BANNER,
            )
        except RuntimeError as err:
            last_error = err
            continue
        address = f"localhost:{port}"
        try:
            _wait_for_worker(address)
            yield address
        finally:
            dev.stop()
            if os.environ.get("CRMS_TEST_SHOW_LOG"):
                sys.stderr.write(dev.log())
        return
    pytest.fail(f"could not start a crms dev cluster: {last_error}")


def _wait_for_worker(address: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with crms.Client(address) as c:
        while True:
            try:
                if any(w.state is crms.WorkerState.UP for w in c.workers()):
                    return
            except crms.Unavailable:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"no worker came up at {address}")
            time.sleep(0.1)


@pytest.fixture(scope="session")
def address(cluster) -> str:
    return cluster


@pytest.fixture
def client(address):
    with crms.Client(address) as c:
        yield c


@pytest.fixture(scope="session")
def dev_worker(address) -> str:
    """Name of the dev cluster's own worker (label dev=true)."""
    with crms.Client(address) as c:
        for w in c.workers():
            if w.labels.get("dev") == "true" and w.state is crms.WorkerState.UP:
                return w.name
    pytest.fail("the dev cluster has no UP worker labelled dev=true")


@pytest.fixture
def extra_worker(address, tmp_root):
    """A second worker process (1 slot, label pool=pytest) that a test may drain or stop."""
    name = f"pytest-{uuid.uuid4().hex[:8]}"
    data_dir = tmp_root / name
    data_dir.mkdir()
    proc = Proc(
        [
            "node",
            str(CRMS_JS),
            "worker",
            "--name",
            name,
            "--slots",
            "1",
            "--server",
            address,
            "--label",
            "pool=pytest",
            "--data-dir",
            str(data_dir),
        ],
        tmp_root / f"{name}.log",
    )
    try:
        with crms.Client(address) as c:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if c.worker(name).state is crms.WorkerState.UP:
                        break
                except crms.NotFound:
                    pass
                if not proc.running() or time.monotonic() > deadline:
                    raise RuntimeError(f"worker {name} did not attach:\n{proc.log()}")
                time.sleep(0.1)
        yield name, proc
    finally:
        proc.stop()


@pytest.fixture
def tag() -> dict:
    """A unique label to find this test's jobs."""
    return {"test": uuid.uuid4().hex[:12]}
