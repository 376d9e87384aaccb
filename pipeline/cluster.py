"""Where the job runs: a Client to an existing scheduler (bounded waits, TLS), or a LocalCluster; the persist policy."""

from __future__ import annotations

import asyncio
import errno
import os
import re
import signal
import socket
import ssl
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from distributed import Client, LocalCluster, WorkerPlugin

from pipeline import jsonlog, secrets
from pipeline.config import ClusterConfig, SecurityConfig
from pipeline.errors import EnvironmentFault, InputError

# persist: auto holds the data in memory when it takes at most this share of the workers' memory.
AUTO_PERSIST_FRACTION = 0.5
DASHBOARD_HOST = ""  # the default dashboard's interfaces: every one, as Dask's default ":8787"
DASHBOARD_PORT = 8787
SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")


def resolve_address(cli_address: str | None, config_address: str | None) -> str | None:
    """``--scheduler`` wins over ``DASK_SCHEDULER_ADDRESS``, which wins over ``cluster.address``."""
    return cli_address or os.environ.get("DASK_SCHEDULER_ADDRESS") or config_address


def check_address(address: str, security: SecurityConfig | None) -> None:
    """InputError unless ``address`` is ``SCHEME://HOST:PORT`` with a scheme Dask speaks and matching TLS settings."""
    from distributed.comm.addressing import parse_address, parse_host_port

    expected = "expected an address such as tcp://host:8786 or tls://host:8786"
    try:
        scheme, location = parse_address(address, strict=True)
        host, port = parse_host_port(location)
    except (ValueError, TypeError):
        raise InputError(f"scheduler address {address!r} is malformed; {expected}") from None
    if scheme not in SCHEMES or not host or any(ch.isspace() for ch in host) or not 0 < int(port) < 65536:
        raise InputError(f"scheduler address {address!r} is malformed; {expected}")
    if scheme == "tls" and security is None:
        raise InputError(f"scheduler address {address!r} uses TLS: set cluster.security (ca_file, cert_file, key_file)")
    if security is not None and scheme != "tls":
        raise InputError(f"cluster.security is set but the scheduler address {address!r} is not tls://")


def security_of(config: SecurityConfig | None):
    """Dask's ``Security`` for the TLS files, or None.

    Raises
    ------
    InputError
        Naming the ``cluster.security`` key and the file that is not readable, not PEM, or an encrypted key (which
        Dask cannot be given the password of), before any connection is tried.
    """
    if config is None:
        return None
    from distributed import Security

    for key in ("ca_file", "cert_file", "key_file"):
        path = Path(getattr(config, key))
        if not path.is_file() or not os.access(path, os.R_OK):
            raise InputError(f"cluster.security.{key} {str(path)!r} is not a readable file")
    if _is_encrypted_key(Path(config.key_file).read_bytes()):
        raise InputError(
            f"cluster.security.key_file {config.key_file!r} is an encrypted private key: Dask reads only unencrypted "
            "keys (give one without a passphrase)"
        )
    security = Security(
        tls_ca_file=config.ca_file,
        tls_client_cert=config.cert_file,
        tls_client_key=config.key_file,
        require_encryption=True,
    )
    try:
        security.get_connection_args("client")  # loads every file into an SSL context, as connecting will
    except ssl.SSLError as exc:
        raise InputError(_tls_problem(config, exc)) from None
    return security


def _is_encrypted_key(pem: bytes) -> bool:
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in pem or b"Proc-Type: 4,ENCRYPTED" in pem


def _tls_problem(config: SecurityConfig, exc: ssl.SSLError) -> str:
    """Which of the TLS files an SSL context could not load, and why, in words."""
    certificate = "is not a PEM certificate (text with '-----BEGIN CERTIFICATE-----'; openssl x509 converts others)"
    try:
        ssl.create_default_context(cafile=config.ca_file)
    except ssl.SSLError:
        return f"cluster.security.ca_file {config.ca_file!r} {certificate}"
    if b"-----BEGIN CERTIFICATE-----" not in Path(config.cert_file).read_bytes():
        return f"cluster.security.cert_file {config.cert_file!r} {certificate}"
    if not re.search(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----", Path(config.key_file).read_bytes()):
        return (
            f"cluster.security.key_file {config.key_file!r} is not a PEM private key (text with "
            "'-----BEGIN PRIVATE KEY-----'; openssl pkey converts others)"
        )
    return (
        f"cluster.security.cert_file {config.cert_file!r} and key_file {config.key_file!r} cannot be used together "
        f"(is the key the certificate's?): {_reason(exc)}"
    )


async def _handshake(address: str, timeout: float, connection_args: dict) -> None:
    from distributed.comm import connect

    # connect retries until its own timeout and then says why (refused, unknown host); the margin lets it say so
    comm = await asyncio.wait_for(connect(address, timeout=timeout, **connection_args), timeout + 5)
    try:
        await comm.write({"op": "identity", "reply": True})
        await asyncio.wait_for(comm.read(), timeout)
    finally:
        comm.abort()


def probe_scheduler(address: str, timeout: float, security=None) -> None:
    """Connect and ask the scheduler who it is, all within ``timeout`` s: EnvironmentFault if it does not answer.

    Dask's own connect waits without limit for the first message of a peer that accepted the connection.
    """
    connection_args = security.get_connection_args("client") if security is not None else {}
    with ThreadPoolExecutor(1) as pool:  # its own event loop, whatever runs in this thread
        try:
            pool.submit(asyncio.run, _handshake(address, timeout, connection_args)).result()
        except TimeoutError:
            raise EnvironmentFault(
                f"the Dask scheduler at {address!r} did not answer within {timeout:g} s (cluster.connect_timeout)"
            ) from None
        except (OSError, ValueError) as exc:
            raise EnvironmentFault(f"cannot reach the Dask scheduler at {address!r}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    """The innermost cause of a connection failure, in one line."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _bind_error(host: str, port: int) -> OSError | None:
    """Why a server could not listen on ``host:port`` (host '' is every interface), or None if it can; binds a
    socket there and closes it, listening on nothing and sending nothing."""
    try:
        with socket.socket() as sock:
            sock.bind((host, port))
    except OSError as exc:  # socket.gaierror (a host name that does not resolve) among them
        return exc
    return None


def dashboard_address(setting: bool | str) -> str:
    """Where the LocalCluster's scheduler serves HTTP: the asked ``[HOST]:PORT``, or 8787 (a free port if 8787 is
    taken, or if the dashboard is off: the scheduler serves its other pages all the same).

    Raises
    ------
    InputError
        If the asked host cannot be listened on here (not an address of this machine, or not a host name).
    EnvironmentFault
        If the asked port is in use.
    """
    if setting is False:
        return ":0"
    if setting is True:
        free = _bind_error(DASHBOARD_HOST, DASHBOARD_PORT) is None
        return f"{DASHBOARD_HOST}:{DASHBOARD_PORT if free else 0}"
    host, port = setting.rsplit(":", 1)
    error = _bind_error(host, int(port))
    if isinstance(error, socket.gaierror) or (error is not None and error.errno == errno.EADDRNOTAVAIL):
        raise InputError(
            f"cluster.dashboard {setting!r}: cannot listen on host {host!r} ({_reason(error)}); give ':PORT' "
            "(every interface), '127.0.0.1:PORT' (this machine only) or an address of this machine"
        )
    if error is not None:
        raise EnvironmentFault(f"cluster.dashboard {setting!r}: port {port} is in use")
    return setting


@contextmanager
def _quiet_port_change(setting: bool | str) -> Iterator[None]:
    """With the default dashboard, no warning from Dask that port 8787 is taken: another process can take it
    between :func:`dashboard_address`'s check and the scheduler's bind (two fits started at once), and Dask then
    moves to a free port, as the default promises, with a warning the user did not ask for."""
    with warnings.catch_warnings():
        if setting is True:
            warnings.filterwarnings("ignore", message=rf"Port {DASHBOARD_PORT} is already in use", category=UserWarning)
        yield


def _wait_for_workers(client: Client, address: str, timeout: float) -> None:
    from distributed import TimeoutError as DaskTimeoutError

    try:
        client.wait_for_workers(1, timeout=timeout)
    except (DaskTimeoutError, TimeoutError):
        raise EnvironmentFault(
            f"the Dask scheduler at {address!r} has no workers after {timeout:g} s "
            "(cluster.worker_timeout); start workers or check them"
        ) from None


@contextmanager
def connect(
    address: str | None, settings: ClusterConfig, on_connect: Callable[[Client], None] | None = None
) -> Iterator[Client]:
    """A Client on ``address``, or on a LocalCluster started (and stopped) here from ``settings``.

    Every wait is bounded: reaching the scheduler by ``connect_timeout``, its
    first worker by ``worker_timeout`` (EnvironmentFault saying what it waited for).
    """
    if address:
        check_address(address, settings.security)
        security = security_of(settings.security)
        probe_scheduler(address, settings.connect_timeout, security)
        try:
            client = Client(address, timeout=f"{settings.connect_timeout}s", security=security)
        except (OSError, TimeoutError) as exc:
            raise EnvironmentFault(f"cannot reach the Dask scheduler at {address!r}: {_reason(exc)}") from None
        with client:
            _wait_for_workers(client, address, settings.worker_timeout)
            if on_connect:
                on_connect(client)
            yield client
        return
    with _quiet_port_change(settings.dashboard):
        local = LocalCluster(
            n_workers=settings.n_workers,
            threads_per_worker=settings.threads_per_worker,
            memory_limit=settings.memory_limit,
            processes=True,
            dashboard_address=dashboard_address(settings.dashboard),
            scheduler_kwargs={"dashboard": settings.dashboard is not False},
        )
    with local as cluster, Client(cluster) as client:
        client.register_plugin(LocalWorkerSetup(secrets.registered()))  # their lines are printed with ours
        if on_connect:
            on_connect(client)
        yield client


class LocalWorkerSetup(WorkerPlugin):
    """A worker process this job started: its log lines scrubbed of the secrets (and URL passwords), its Python
    warnings printed as log lines (one JSON object each with ``--log-format json``), and Ctrl-C left to the command,
    which closes the cluster (a terminal sends SIGINT to the whole process group)."""

    name = "gmm-local-worker-setup"

    def __init__(self, values: list[str]):
        self.values = values

    def setup(self, worker) -> None:
        secrets.register({"values": self.values})
        jsonlog.scrub_handlers()
        jsonlog.route_warnings()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def check(settings: ClusterConfig, scheduler: str | None) -> None:
    """Check what can be checked of where to run before any work: the address's form, the TLS files; or the
    LocalCluster's dashboard address."""
    address = resolve_address(scheduler, settings.address)
    if address:
        check_address(address, settings.security)
        security_of(settings.security)
    else:
        dashboard_address(settings.dashboard)


def session(settings: ClusterConfig, scheduler: str | None, emit: Callable[[dict], None]):
    """:func:`connect` per the cluster settings (``scheduler`` wins), announcing the client through ``emit``."""
    address = resolve_address(scheduler, settings.address)

    def announce(client: Client) -> None:
        info = client.scheduler_info(n_workers=-1)
        off = address is None and settings.dashboard is False
        dashboard = client.dashboard_link if "dashboard" in info.get("services", {}) and not off else None
        emit(
            {
                "event": "start",
                "scheduler": client.scheduler.address,
                "dashboard": dashboard,
                "n_workers": len(info["workers"]),
            }
        )

    return connect(address, settings, on_connect=announce)


def should_persist(policy: str, n_bytes: int, client: Client) -> bool:
    """Decide whether to hold the data in cluster memory (``auto``: when it fits comfortably)."""
    if policy != "auto":
        return policy == "memory"
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    limits = [w.get("memory_limit") or 0 for w in workers]
    total = sum(limits)
    return total == 0 or n_bytes <= AUTO_PERSIST_FRACTION * total
