"""Which Ray cluster `--ray` uses, by Ray's own rules, and a private one that dies with us.

`--ray` (or `--ray auto`) follows `ray.init("auto")`'s order: `RAY_ADDRESS`, then the
cluster a `ray start` left running on this machine, and only when there is none a
private cluster for this run. `--ray ADDRESS` takes any address Ray takes (`host:port`,
`ray://host:port`). Token authentication follows Ray's documentation: a token in
`RAY_AUTH_TOKEN`, in the file `RAY_AUTH_TOKEN_PATH` names or in `~/.ray/auth_token`
turns on `RAY_AUTH_MODE=token` unless the user set the mode.

The private cluster is `ray start --head --block` on 127.0.0.1 with no dashboard and a
random token of its own, run by a watchdog process that ends every process of the
cluster's session when our end of its pipe closes: at the end of the run, and also when
the batch process is killed with SIGKILL. Every one of its listeners is on loopback:
Ray's gRPC servers (gcs_server, raylet, object manager, each worker's) bind 127.0.0.1
only when the node's address is exactly 127.0.0.1, and `ray start` replaces a loopback
`--node-ip-address` by the machine's external address unless Ray's single-node switch
`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` is set (what Ray does on macOS and Windows), so
the cluster and our driver run with it. The driver uses it too for any `--ray` address
on 127.0.0.1: without it Ray would connect to the machine's external address, where a
loopback-only cluster does not answer (a cluster listening everywhere answers either way).
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from facetrack.tracker.core.errors import FacetrackError

AUTO = "auto"
DEFAULT_TOKEN_FILE = Path("~/.ray/auth_token")
"""Ray's default token file (`ray get-auth-token --generate` writes it)."""
PROBE_SECONDS = 3.0
"""How long the check that the cluster exists and accepts us may take."""
START_SECONDS = 60.0
STOP_SECONDS = 2.0
"""How long the watchdog waits for the killed cluster's processes to be gone."""
_TOKEN_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")
SINGLE_NODE = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
"""Ray keeps a loopback node address (and so binds loopback) only with this; see the module docstring."""


class RayUnavailableError(FacetrackError):
    """`--ray` was asked for but Ray is not installed."""


class ClusterRefusedError(FacetrackError):
    """The Ray cluster cannot be reached, refuses our token, or the private one did not start."""


def import_ray() -> ModuleType:
    """Ray, or an error that says how to install it (it is an optional extra)."""
    try:
        import ray
    except ImportError as exc:  # checked before anything starts, so the user loses nothing
        raise RayUnavailableError(
            f'--ray needs Ray, which is not installed ({exc}); install it with: pip install "facetrack[ray]"'
        ) from None
    return ray


def require_ray() -> None:
    """RayUnavailableError when Ray is not installed, before anything starts; Ray is not imported yet (see below)."""
    if importlib.util.find_spec("ray") is None:
        import_ray()


def find_token() -> str | None:
    """The token Ray would use, from its documented sources in its order; None when there is none."""
    if token := os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return token
    for path in (os.environ.get("RAY_AUTH_TOKEN_PATH"), DEFAULT_TOKEN_FILE):
        if not path:
            continue
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if token := Path(path).expanduser().read_text(encoding="utf-8").strip():
                return token
    return None


def enable_token_auth() -> bool:
    """Set RAY_AUTH_MODE=token when a token is found and the user did not choose a mode."""
    if os.environ.get("RAY_AUTH_MODE"):
        return os.environ["RAY_AUTH_MODE"].lower() == "token"
    if find_token() is None:
        return False
    os.environ["RAY_AUTH_MODE"] = "token"
    return True


def _reachable(address: str, timeout: float = PROBE_SECONDS) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _is_loopback(address: str) -> bool:
    """Whether a `host:port` address (not `ray://`) names this machine by its loopback address."""
    host = address.rpartition(":")[0].strip("[]")
    if address.startswith("ray://") or not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _address_file() -> Path:
    """Where `ray start` records the cluster it started (Ray's get_ray_address_file, read without Ray).

    Looked up before Ray is imported: Ray reads RAY_AUTH_MODE once, at import.
    """
    if "RAY_TMPDIR" in os.environ:
        root = os.environ["RAY_TMPDIR"]
    elif sys.platform.startswith("linux") and "TMPDIR" in os.environ:
        root = os.environ["TMPDIR"]
    else:
        root = "/tmp" if sys.platform.startswith(("linux", "darwin")) else tempfile.gettempdir()
    return Path(root) / "ray" / "ray_current_cluster"


def _refresh_ray_settings() -> None:
    """Make an already imported Ray read RAY_AUTH_* (what Ray's own token setup does) and SINGLE_NODE again."""
    if "ray" not in sys.modules:
        return
    from ray._private import ray_constants
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
    ray_constants.ENABLE_RAY_CLUSTER = ray_constants.env_bool(
        ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, not ray_constants.IS_WINDOWS_OR_OSX
    )


def existing_address(requested: str) -> str | None:
    """The cluster `requested` names; for AUTO, Ray's order; None when a private cluster must start."""
    if requested != AUTO:
        return requested
    if address := os.environ.get("RAY_ADDRESS", "").strip():
        return address
    with contextlib.suppress(OSError):
        address = _address_file().read_text().strip()
        if address and _reachable(address):  # a stale file of a stopped cluster is not a cluster
            return address
    return None


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Ray's native client logs each refused call to fd 2; the user gets our one line instead."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def probe(address: str) -> None:
    """Fail within seconds, with one line, when the cluster at `address` is gone or refuses us.

    `ray.init` would retry a refused token for about 20 s, logging every try.
    `ray://` addresses go through Ray Client; its own connect errors are reported instead.
    """
    if address.startswith("ray://"):
        return
    if not _reachable(address):
        raise ClusterRefusedError(f"no Ray cluster answers at {address} (is it running? is the address right?)")
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    try:
        with _stderr_silenced():
            GcsClient(address=address).internal_kv_get(b"session_name", b"session", timeout=PROBE_SECONDS)
    except AuthenticationError:
        mode = os.environ.get("RAY_AUTH_MODE", "not set")
        raise ClusterRefusedError(
            f"the Ray cluster at {address} refused our authentication token (RAY_AUTH_MODE {mode}): put the "
            "cluster's token in RAY_AUTH_TOKEN, in a file named by RAY_AUTH_TOKEN_PATH, or in ~/.ray/auth_token"
        ) from None
    except Exception as exc:  # Ray raises plain RuntimeError/RpcError for an unusable GCS
        reason = f"{type(exc).__name__}: {exc}"
        raise ClusterRefusedError(f"the Ray cluster at {address} does not answer: {reason}") from None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def session_members(session: int) -> list[int]:
    """The running processes of a session (zombies waiting for an init that does not reap them excluded).

    Sessions, not process groups: Ray puts each task worker and actor in a process group
    of its own, but they stay in the session of the `ray start` that spawned them.
    """
    import psutil

    members = []
    for pid in psutil.pids():
        with contextlib.suppress(OSError, psutil.Error):
            if os.getsid(pid) == session and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                members.append(pid)
    return members


def _signal_session(session: int, sig: signal.Signals) -> None:
    for pid in session_members(session):
        if pid != os.getpid():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


def watch() -> None:
    """The watchdog: run `ray start ... --block` (argv[2:]) until stdin closes, then end the whole session.

    Started as a session leader, so every process of the cluster (gcs_server, raylet,
    agents, task workers, actors) is in its session; stdin closes when the batch process
    stops the cluster or dies, however it dies. Every process of the session is then
    killed at once: the cluster is thrown away, so nothing needs a clean shutdown, and a
    task worker must not go on writing (a SIGTERM grace let it for 2 s and more on a loaded
    machine). Then the cluster's temporary folder (argv[1]) is removed.
    """
    session = os.getsid(0)
    subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL)
    sys.stdin.buffer.read()
    _signal_session(session, signal.SIGKILL)
    deadline = time.monotonic() + STOP_SECONDS
    while [pid for pid in session_members(session) if pid != os.getpid()] and time.monotonic() < deadline:
        time.sleep(0.05)
    shutil.rmtree(sys.argv[1], ignore_errors=True)


class PrivateCluster:
    """A loopback-only Ray head node for one batch run, owned by a watchdog process."""

    def __init__(self, num_cpus: int) -> None:
        self.token = secrets.token_hex(32)
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._temp_dir = Path(tempfile.mkdtemp(prefix="facetrack-ray-"))
        self._log = self._temp_dir / "start.log"
        command = [
            sys.executable, "-c", "from facetrack.tracker.batch.cluster import watch; watch()", str(self._temp_dir),
            sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
            "--node-ip-address=127.0.0.1", f"--port={self.port}", f"--num-cpus={num_cpus}",
            "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={self._temp_dir}",
            f"--ray-client-server-port={_free_port()}",  # Ray's default 10001 may be another cluster's
        ]  # fmt: skip
        env = {key: value for key, value in os.environ.items() if key not in _TOKEN_VARIABLES}
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token, RAY_USAGE_STATS_ENABLED="0", **SINGLE_NODE)
        with open(self._log, "wb") as log:
            self._watchdog = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def wait_ready(self) -> None:
        """Until `ray start` has written the cluster's address (it is up), or a clear error."""
        deadline = time.monotonic() + START_SECONDS
        address_file = self._temp_dir / "ray_current_cluster"
        while not (address_file.exists() and _reachable(self.address)):
            if self._watchdog.poll() is not None or time.monotonic() > deadline:
                tail = self._log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise ClusterRefusedError(f"the private Ray cluster did not start: {tail[0]}")
            time.sleep(0.1)

    def stop(self) -> None:
        """End every process of the cluster (the watchdog does it when its stdin closes)."""
        if self._watchdog.stdin is not None:
            with contextlib.suppress(OSError):
                self._watchdog.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._watchdog.wait(timeout=3 * STOP_SECONDS)
        session = self._watchdog.pid
        deadline = time.monotonic() + 3 * STOP_SECONDS
        while session_members(session) and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.rmtree(self._temp_dir, ignore_errors=True)


def cluster_label(requested: str, ray: ModuleType) -> str:
    """`requested`, and the cluster it resolved to when that differs (what the manifest records)."""
    with contextlib.suppress(Exception):  # Ray Client has no GCS address to report
        address = ray.get_runtime_context().gcs_address
        if address and address != requested:
            return f"{requested} -> {address}"
    return requested


@contextlib.contextmanager
def _environment(values: dict[str, str | None]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def ray_session(requested: str, num_cpus: int, runtime_env: dict[str, object] | None = None) -> Iterator[ModuleType]:
    """Ray, connected to the cluster `requested` names (see the module docstring), until exit.

    Raises ClusterRefusedError within seconds when that cluster is unusable. Ray
    installs its own SIGTERM/SIGINT handlers in `ray.init`; ours are put back, so a
    signal still ends the run the documented way.
    """
    saved = {key: os.environ.get(key) for key in (*_TOKEN_VARIABLES, *SINGLE_NODE)}
    with _environment(saved), contextlib.ExitStack() as stack:
        require_ray()
        address = existing_address(requested)
        node_ip = None
        if address is None:
            cluster = PrivateCluster(num_cpus)
            stack.callback(cluster.stop)
            os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=cluster.token, **SINGLE_NODE)
            os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
            address, node_ip = cluster.address, "127.0.0.1"
            cluster.wait_ready()
        else:
            enable_token_auth()
            if _is_loopback(address):  # Ray would swap 127.0.0.1 for this machine's address: keep it
                os.environ.update(SINGLE_NODE)
        _refresh_ray_settings()
        ray = import_ray()
        probe(address)
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        # Ray Client (ray://) forwards every non-default argument to the server's ray.init: keep to its own.
        local_only = {} if address.startswith("ray://") else {"configure_logging": False, "log_to_driver": False}
        try:
            ray.init(address=address, _node_ip_address=node_ip, runtime_env=runtime_env, **local_only)
        except (ConnectionError, ValueError, RuntimeError, ray.exceptions.RayError) as exc:
            raise ClusterRefusedError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
        finally:
            for sig, handler in handlers.items():
                if handler is not None:
                    signal.signal(sig, handler)
        stack.callback(ray.shutdown)
        _check_workers(ray)
        yield ray


def _worker_python() -> str:
    """Run on a worker: it can only run at all where facetrack imports (Ray unpickles it by reference)."""
    return sys.version


def _check_workers(ray: ModuleType) -> None:
    """One line and exit 2, before anything is written, when the cluster's workers cannot import facetrack."""
    try:
        ray.get(ray.remote(num_cpus=0, max_retries=0)(_worker_python).remote())
    except ray.exceptions.RayError as exc:
        if "No module named 'facetrack'" in str(exc):
            raise ClusterRefusedError(
                "the Ray cluster's workers cannot import facetrack: install this facetrack version on every node, "
                "or pass --runtime-env to send it with the tasks"
            ) from None
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ClusterRefusedError(f"the Ray cluster cannot run facetrack's tasks: {reason}") from None
