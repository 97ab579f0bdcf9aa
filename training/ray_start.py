"""Ray start-up for the RLlib backend: a local Ray, or a cluster joined by address.

``--address HOST:PORT`` (or ``RAY_ADDRESS``) is probed first
(:func:`probe_ray`: a TCP connection and a gRPC answer, each within
:data:`CONNECT_TIMEOUT_S`), so a closed port, an unroutable host or a service
that is not Ray ends in one line naming the address within seconds, and Ray's
own waits are bounded (:data:`RAY_TIMEOUTS`) so joining ends in <= 30 s.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from attn_env.errors import UserError

__all__ = [
    "CONNECT_TIMEOUT_S",
    "INSTALL_HINT",
    "RAY_TIMEOUTS",
    "import_ray",
    "init_ray",
    "parse_address",
    "probe_ray",
]

INSTALL_HINT = 'Ray RLlib is not installed; run `pip install -e ".[rllib]"`'


def import_ray():
    try:
        import ray
        from ray.rllib.env.multi_agent_env import MultiAgentEnv  # noqa: F401
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return ray


CONNECT_TIMEOUT_S = 5.0
"Seconds to open a TCP connection to ``--address`` and to hear its gRPC answer."
RAY_TIMEOUTS = {
    "RAY_gcs_rpc_server_connect_timeout_s": "5",
    "RAY_gcs_rpc_server_reconnect_timeout_s": "10",
    "RAY_py_gcs_connect_timeout_s": "15",
}
"Ray's own waits for a cluster, bounded so that joining one ends in <= 30 s."
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
"An HTTP/2 client preface and an empty SETTINGS frame (what a gRPC client sends)."


def parse_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``[ray://]HOST:PORT``, else one line naming it."""
    rest = address.removeprefix("ray://")
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--address {address!r} is not HOST:PORT (e.g. 127.0.0.1:6379)")
    return host, int(port)


def probe_ray(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """One line unless something at ``address`` answers as a gRPC server does.

    A Ray head's GCS (and Ray Client's server) speak gRPC over HTTP/2: after a
    client's preface the server sends a SETTINGS frame. A closed port, an
    unroutable host or a TCP service that is not Ray ends here within
    ``2 * timeout`` seconds, before ``ray.init`` could wait minutes on it.
    """
    host, port = parse_address(address)
    hint = (
        "start one with `ray start --head --port=PORT` or drop --address / RAY_ADDRESS"
    )
    try:
        with socket.create_connection((host, port), timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(_H2_PREFACE)
            head = conn.recv(9)
    except TimeoutError:
        raise UserError(
            f"cannot reach a Ray cluster at {address!r}: no answer within "
            f"{timeout:g} s (not Ray, or unroutable); {hint}"
        ) from None
    except OSError as err:
        raise UserError(
            f"cannot reach a Ray cluster at {address!r} ({err.strerror or err}); {hint}"
        ) from None
    if len(head) < 9 or head[3] != 4:  # frame type 4: SETTINGS
        raise UserError(
            f"cannot reach a Ray cluster at {address!r}: what answers there does "
            f"not speak gRPC, so it is not a Ray head; {hint}"
        )


def _ray_config_for_joining() -> bool:
    """Token auth as `ray start` set it up; bounded waits (:data:`RAY_TIMEOUTS`).
    True when the token mode is a guess of ours (the user set no auth mode)."""
    token = Path.home() / ".ray" / "auth_token"
    guessed = "RAY_AUTH_MODE" not in os.environ and token.is_file()
    if guessed:
        # `ray start` of Ray >= 2.52 enables token auth when this file exists,
        # but a driver joining by address does not send the token unless asked
        os.environ["RAY_AUTH_MODE"] = "token"
    for key, value in RAY_TIMEOUTS.items():
        os.environ.setdefault(key, value)
    _refresh_ray_config()
    return guessed


def _refresh_ray_config() -> None:
    """Ray reads its config from the environment when imported: refresh it."""
    try:
        from ray._raylet import Config

        Config.initialize("")
    except (ImportError, AttributeError):
        pass


ACTOR_TIMEOUT_S = 30.0
"Seconds a joined cluster has to start one actor for this driver."


def _actors_start(ray, timeout: float = ACTOR_TIMEOUT_S) -> bool:
    """Whether the joined cluster starts an actor for this driver. A driver in
    another auth mode than the cluster's connects and runs tasks, but its actors
    are cancelled before they start: every Tune trial and RLlib env runner
    would fail with 'the actor never ran'."""

    @ray.remote(num_cpus=0)
    class Ping:
        def ping(self) -> bool:
            return True

    try:
        actor = Ping.remote()
        ok = ray.get(actor.ping.remote(), timeout=timeout)
    except (ray.exceptions.RayError, TimeoutError):
        return False
    ray.kill(actor)
    return bool(ok)


def init_ray(ray, address: str | None, runners: int) -> None:
    """Start a local Ray, or join the cluster at ``address`` (one line if not)."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address in (None, "", "local"):
        ray.init(
            address="local",  # a new Ray in this process, even if one runs nearby
            num_cpus=max(2, runners + 1),
            include_dashboard=False,
            ignore_reinit_error=True,
            log_to_driver=False,
            configure_logging=False,
        )
        return
    if address != "auto":
        probe_ray(address)
    guessed = _ray_config_for_joining()
    if guessed and not _child_starts_actors(address):
        # the token file is another cluster's: this one runs without auth
        os.environ["RAY_AUTH_MODE"] = "disabled"
        _refresh_ray_config()
    _join(ray, address)
    if _actors_start(ray):
        return
    ray.shutdown()
    mode = os.environ.get("RAY_AUTH_MODE", "disabled")
    raise UserError(
        f"joined the Ray cluster at {address!r}, but it cancels this driver's actors "
        f"before they start (auth mode {mode}); set RAY_AUTH_MODE to the cluster's "
        "(token, with RAY_AUTH_TOKEN_PATH, or disabled)"
    )


_CHILD_PROBE = """
import sys, ray
sys.path[:0] = [{root!r}]
from training.ray_start import _actors_start
ray.init(address={address!r}, include_dashboard=False, log_to_driver=False)
sys.exit(0 if _actors_start(ray) else 3)
"""
"What :func:`_child_starts_actors` runs: join, start one actor, say whether it ran."


def _child_starts_actors(address: str) -> bool:
    """Whether a driver in the auth mode of this environment (token, guessed from
    ``~/.ray/auth_token``) starts actors at ``address``; tried in a child process,
    because Ray keeps its first auth mode for the life of a process."""
    import subprocess

    root = str(Path(__file__).resolve().parents[1])
    code = _CHILD_PROBE.format(root=root, address=address)
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            timeout=ACTOR_TIMEOUT_S + 30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def _join(ray, address: str) -> None:
    """``ray.init`` at ``address``; a failure in one line with Ray's last reason."""
    with _native_stderr() as logged:
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                ignore_reinit_error=True,
                log_to_driver=False,
                configure_logging=False,
            )
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as err:
            failed = err
        else:
            failed = None
    if failed is not None:
        text = " ".join(str(failed).split())[:200]
        why = _last_reason("".join(logged))
        raise UserError(
            f"cannot join the Ray cluster at {address!r}: {text}"
            + (f" (Ray's log: {why})" if why else "")
        ) from None


@contextlib.contextmanager
def _native_stderr() -> Iterator[list[str]]:
    """Ray's C++ core logs each failed retry to file descriptor 2 (20 lines in
    20 s at an address that speaks gRPC but is no Ray head); keep those lines
    in a temporary file while joining so a failure stays one line. The list
    yielded holds that text once the block ends."""
    sys.stderr.flush()
    saved = os.dup(2)
    logged: list[str] = []
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield logged
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            logged.append(sink.read().decode("utf-8", "replace"))


def _last_reason(log: str, limit: int = 160) -> str:
    """The message of the last line Ray logged (without its time and source)."""
    lines = [line.rsplit("] ", 1)[-1].strip() for line in log.splitlines()]
    lines = [line for line in lines if line]
    return lines[-1][:limit] if lines else ""
