"""Backends of a sweep: their option checks, the device check, and Ray (a local instance or a
cluster, with its token authentication).

Part of the sweep runner (:mod:`sbil.experiments.sweep` is its entry point and module doc).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from sbil.experiments.sweeps.groups import _error_text
from sbil.experiments.sweeps.spec import SweepError

BACKENDS: tuple[str, ...] = ("local", "ray")

#: Seconds to wait for a Ray cluster's port to answer before giving up on it.
RAY_CONNECT_TIMEOUT_S = 5.0


def max_local_workers() -> int:
    """The most worker processes a sweep starts on this machine: ``SBIL_MAX_WORKERS``, else
    4 per CPU this process may use and at least 8 (a typo such as 100000 would fork that many
    processes of a few hundred MB each)."""
    from sbil.machine import env_limit, max_workers

    try:  # the same variable and default as sbil consistency's --workers
        return env_limit("SBIL_MAX_WORKERS", max_workers)
    except ValueError as error:
        raise SweepError(str(error)) from None


def check_backend(workers: int, backend: str, address: str | None) -> None:
    """Check the backend options alone (no connection is made): a bad one is a usage error.

    Raises:
        SweepError: naming the option and what it accepts.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SweepError(f"--workers must be a positive integer, got {workers!r}.")
    if address is None and workers > (most := max_local_workers()):
        raise SweepError(
            f"--workers {workers} would start that many processes on this machine, more than "
            f"its limit of {most} (4 per CPU, at least 8: more only share the same cores); set "
            "SBIL_MAX_WORKERS to go past it, or give a Ray cluster with --address."
        )
    if backend not in BACKENDS:
        raise SweepError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}.")
    if address is None:
        return
    if backend != "ray":
        raise SweepError("--address is for --backend ray.")
    if address != "auto":
        _host_port(address)


def _host_port(address: str) -> tuple[str, int]:
    """``host:port`` of a Ray address (``host:port`` or ``ray://host:port``)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SweepError(
            f"--address must be auto, HOST:PORT (the head node's GCS, e.g. 10.0.0.1:6379) or "
            f"ray://HOST:PORT (Ray Client), got {address!r}."
        )
    return host.strip("[]"), int(port)


def _ray_client_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("grpc") is not None  # what ray[client] adds to Ray


def check_device(device: str, backend: str = "local", address: str | None = None) -> None:
    """Check that ``device`` can train here: ``cpu``, or ``cuda``/``cuda:N`` where this
    machine's torch sees a GPU. On a Ray cluster (``address``) the GPUs are the workers': they
    are checked once connected (:func:`_ray_session`).

    Raises:
        SweepError: for an unknown device, or CUDA where there is none, in one line.
    """
    if not isinstance(device, str) or not device.strip():
        raise SweepError(f"--device must be cpu or cuda, got {device!r}.")
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise SweepError(f"--device must be cpu, cuda or cuda:N, got {device!r}.") from None
    if kind not in ("cpu", "cuda"):
        raise SweepError(f"--device must be cpu, cuda or cuda:N, got {device!r}.")
    if kind == "cpu" or (backend == "ray" and address is not None):
        return
    from sbil.deep.learners import LearnerInputError, resolve_device

    try:
        resolve_device(device)
    except LearnerInputError as error:
        raise SweepError(f"--device {device}: {error}") from None


#: Ray's token authentication (https://docs.ray.io/en/latest/ray-security/token-auth.html):
#: the mode, then where the token is read from, highest precedence first.
_RAY_AUTH_MODE = "RAY_AUTH_MODE"
_RAY_TOKEN_VARIABLE = "RAY_AUTH_TOKEN"
_RAY_TOKEN_PATH_VARIABLE = "RAY_AUTH_TOKEN_PATH"
_RAY_TOKEN_WHERE = (
    "give the cluster's token in RAY_AUTH_TOKEN, in a file named by RAY_AUTH_TOKEN_PATH, or in "
    "~/.ray/auth_token (`ray get-auth-token` on the head node prints it)"
)


def _ray_default_token_path() -> Path:
    return Path.home() / ".ray" / "auth_token"


def ray_token_source() -> str | None:
    """Where Ray takes this process's authentication token from when ``RAY_AUTH_MODE=token``
    (the first of ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``'s file, ``~/.ray/auth_token``),
    or None when there is none.

    Raises:
        SweepError: when ``RAY_AUTH_TOKEN_PATH`` names a file that cannot be read or is empty
            (Ray aborts the process on it).
    """
    if os.environ.get(_RAY_TOKEN_VARIABLE):
        return _RAY_TOKEN_VARIABLE
    named = os.environ.get(_RAY_TOKEN_PATH_VARIABLE)
    if named is not None:
        try:
            text = Path(named).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or type(error).__name__
            raise SweepError(
                f"{_RAY_TOKEN_PATH_VARIABLE}={named} cannot be read ({reason}); point it at "
                "the file holding the cluster's token, or unset it."
            ) from None
        if not text.strip():
            raise SweepError(
                f"{_RAY_TOKEN_PATH_VARIABLE}={named} is empty; put the cluster's token in it "
                "(`ray get-auth-token` on the head node prints it), or unset it."
            )
        return f"{_RAY_TOKEN_PATH_VARIABLE} ({named})"
    default = _ray_default_token_path()
    try:
        if default.read_text(encoding="utf-8").strip():
            return str(default)
    except (OSError, UnicodeDecodeError):
        pass
    return None


def _token_auth_on() -> bool:
    return os.environ.get(_RAY_AUTH_MODE, "").strip().lower() == "token"


def _check_ray_token() -> None:
    """With ``RAY_AUTH_MODE=token``, check that this process has a token to send."""
    if _token_auth_on() and ray_token_source() is None:
        raise SweepError(
            f"RAY_AUTH_MODE=token but no Ray authentication token is set: {_RAY_TOKEN_WHERE}."
        )


def _ray_refused(address: str) -> SweepError:
    """The one-line error for a cluster that refused this process's (missing) token."""
    if not _token_auth_on():
        return SweepError(
            f"The Ray cluster at {address} requires token authentication and this process "
            f"sends no token: set RAY_AUTH_MODE=token and {_RAY_TOKEN_WHERE}."
        )
    return SweepError(
        f"The Ray cluster at {address} refused the authentication token from "
        f"{ray_token_source()}: {_RAY_TOKEN_WHERE}."
    )


def _is_auth_failure(error: BaseException) -> bool:
    """Whether ``error`` (or what it was raised from) is Ray refusing this process's token."""
    seen: BaseException | None = error
    for _ in range(8):  # a chain of causes, never a cycle
        if seen is None:
            return False
        text = str(seen)
        if type(seen).__name__ == "AuthenticationError" or "InvalidAuthToken" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


#: Run in a child process by :func:`_probe_ray_auth`: one request to the cluster's GCS, with
#: this process's environment (so its token, if any), printing how it went as one JSON line.
_RAY_AUTH_PROBE = """
import json, sys
try:
    from ray._raylet import GcsClient
    GcsClient(address=sys.argv[1]).internal_kv_get(b"sbil-probe", None, timeout=float(sys.argv[2]))
except Exception as error:
    name = type(error).__name__
    refused = name == "AuthenticationError" or "InvalidAuthToken" in str(error)
    print(json.dumps({"refused": refused, "error": name + ": " + " ".join(str(error).split())}))
else:
    print(json.dumps({"refused": False, "error": None}))
"""


def _probe_ray_auth(address: str) -> None:
    """Ask the cluster's GCS at ``address`` (``host:port``) one question, as this process would
    ask it, to learn within seconds whether it refuses this process's token (``ray.init``
    retries a refused connection for about 20 s, printing a warning a second).

    Anything but a refusal (Ray's internals changed, a slow cluster) is left to ``ray.init``.

    Raises:
        SweepError: when the cluster refuses the token (or its absence), saying what to set.
    """
    import subprocess

    try:
        done = subprocess.run(
            [sys.executable, "-c", _RAY_AUTH_PROBE, address, str(RAY_CONNECT_TIMEOUT_S)],
            capture_output=True,
            text=True,
            timeout=3 * RAY_CONNECT_TIMEOUT_S,
        )
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return
    if isinstance(answer, dict) and answer.get("refused") is True:
        raise _ray_refused(address)


def _ray_bootstrap_address(address: str) -> str:
    """The ``host:port`` Ray itself connects to for ``address``: Ray replaces a loopback host
    by this machine's address (so a head node that listens on loopback alone is reached only
    where Ray is told to use loopback too)."""
    try:
        from ray._private.services import canonicalize_bootstrap_address

        return canonicalize_bootstrap_address(address) or address
    except Exception:  # Ray's internals moved: the address as given
        return address


def check_ray(address: str | None) -> None:
    """Check that Ray is installed and, for an ``address``, that the cluster answers there and
    accepts this process's authentication token (Ray's token authentication), within seconds
    (Ray itself retries a dead address for minutes, a refused token for about 20 s).

    Raises:
        SweepError: saying what to install, that nothing answers at ``address``, or which
            token to set.
    """
    try:
        import ray  # noqa: F401
    except ModuleNotFoundError:
        raise SweepError(
            "--backend ray needs Ray: pip install 'sbil[ray]' (or pip install ray)."
        ) from None
    _check_ray_token()
    if address is None or address == "auto":
        return
    _host_port(address)
    if address.startswith("ray://") and not _ray_client_installed():
        raise SweepError(
            f"--address {address} is a Ray Client address, which needs pip install "
            "'ray[client]' (sbil[ray] installs Ray without its client); or give the head "
            "node's GCS address, HOST:6379."
        )
    gcs = address if address.startswith("ray://") else _ray_bootstrap_address(address)
    host, port = _host_port(gcs)
    try:
        socket.create_connection((host, port), timeout=RAY_CONNECT_TIMEOUT_S).close()
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        via = f" (Ray connects to it as {gcs})" if gcs != address else ""
        raise SweepError(
            f"Cannot reach a Ray cluster at {address}{via} ({reason}); check the address and "
            "that its head node runs (ray start --head), or leave out --address for a local "
            "Ray."
        ) from None
    if not address.startswith("ray://"):  # Ray Client authenticates in its own server
        _probe_ray_auth(gcs)


@contextlib.contextmanager
def _ray_session(workers: int, address: str | None, device: str = "cpu") -> Iterator[None]:
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        try:
            if address is None:
                # A small object store: tasks pass only group descriptions and rows.
                ray.init(
                    num_cpus=workers,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                    object_store_memory=256 * 1024**2,
                )
            else:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
        except Exception as error:
            if address is not None and _is_auth_failure(error):
                raise _ray_refused(address) from None
            where = f" at {address}" if address else ""
            raise SweepError(f"Cannot start Ray{where} ({_error_text(error)}).") from None
    try:
        if _uses_gpu(device) and ray.cluster_resources().get("GPU", 0) < 1:
            where = f"The Ray cluster at {address}" if address else "This machine's Ray"
            raise SweepError(
                f"--device {device}: {where} has no GPU (its resources list none); start its "
                "nodes with GPUs (ray start --num-gpus N) or use --device cpu."
            )
        yield
    finally:
        if started_here:
            ray.shutdown()


def _uses_gpu(device: str) -> bool:
    return device.split(":", 1)[0] == "cuda"
