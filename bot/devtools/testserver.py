"""A throwaway Synapse homeserver on 127.0.0.1 for the test suite, the demo and the benchmarks.

`Homeserver` generates a fresh Synapse config in a work directory (a temporary one by default),
rewrites it for local use (loopback listener on a free port, no federation key servers, no open
registration, presence off, rate limits raised so a test suite is never throttled, Synapse's own
log at WARNING and above kept in the work directory) and runs Synapse as a child process with
``sys.executable -m synapse.app.homeserver``. Synapse is never imported here: it is AGPL-licensed
and only a test and demo dependency, so the bot's runtime must not need it. Users are created with
the shared-secret admin API, asynchronously (aiohttp) or synchronously (urllib). The module speaks
plain HTTP only; logging in as a user is the caller's business.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import hashlib
import hmac
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import yaml

__all__ = ["Homeserver", "HomeserverError", "RegistrationError"]

CONFIG_NAME = "homeserver.yaml"
SYNAPSE_LOG_NAME = "homeserver.log"  # Synapse's own log (WARNING and above)
PROCESS_LOG_NAME = "process.log"  # the child's stdout and stderr
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0

_UNLIMITED = {"per_second": 1000, "burst_count": 1000}

# Every rate limiter a test suite on one machine (one IP, a handful of users) could run into.
RATE_LIMITS: dict[str, Any] = {
    "rc_message": _UNLIMITED,
    "rc_registration": _UNLIMITED,
    "rc_login": {
        "address": _UNLIMITED,
        "account": _UNLIMITED,
        "failed_attempts": _UNLIMITED,
    },
    "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
    "rc_joins_per_room": _UNLIMITED,
    "rc_invites": {
        "per_room": _UNLIMITED,
        "per_user": _UNLIMITED,
        "per_issuer": _UNLIMITED,
    },
    "rc_room_creation": _UNLIMITED,
    "rc_3pid_validation": _UNLIMITED,
    "rc_third_party_invite": _UNLIMITED,
    "rc_admin_redaction": _UNLIMITED,
    "rc_key_requests": _UNLIMITED,
    "rc_media_create": _UNLIMITED,
    "rc_profile": _UNLIMITED,
    "rc_user_directory": _UNLIMITED,
    "rc_reports": _UNLIMITED,
    "rc_delayed_event_mgmt": _UNLIMITED,
}


class HomeserverError(RuntimeError):
    """The test homeserver could not be set up, started or used."""


class RegistrationError(HomeserverError):
    """Synapse refused to register a user (``errcode`` is e.g. ``M_USER_IN_USE``)."""

    def __init__(self, localpart: str, status: int, errcode: str | None, error: str) -> None:
        self.localpart = localpart
        self.status = status
        self.errcode = errcode
        self.error = error
        super().__init__(
            f"registering {localpart!r} failed: HTTP {status} {errcode or '-'}: {error}"
        )


def _deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Merge `overrides` into `base` in place: nested dicts merge, anything else replaces."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = _copy(value)
    return base


def _copy(value: Any) -> Any:
    return copy.deepcopy(value)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _registration_body(
    secret: str, nonce: str, localpart: str, password: str, admin: bool
) -> dict[str, Any]:
    """The body of the shared-secret registration request, MAC included."""
    message = b"\x00".join(
        [
            nonce.encode(),
            localpart.encode(),
            password.encode(),
            b"admin" if admin else b"notadmin",
        ]
    )
    mac = hmac.new(secret.encode(), message, hashlib.sha1).hexdigest()
    return {
        "nonce": nonce,
        "username": localpart,
        "password": password,
        "admin": admin,
        "mac": mac,
    }


def _registration_result(localpart: str, status: int, text: str) -> str:
    """The registered user id, or a RegistrationError built from Synapse's answer."""
    try:
        body = json.loads(text)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if status == 200 and isinstance(body.get("user_id"), str):
        return body["user_id"]
    raise RegistrationError(
        localpart, status, body.get("errcode"), body.get("error") or text.strip()[:500]
    )


class Homeserver:
    """A Synapse child process on 127.0.0.1; use `start()`/`stop()` or ``with Homeserver():``."""

    def __init__(
        self,
        workdir: Path | None = None,
        server_name: str = "localhost",
        config_overrides: dict[str, Any] | None = None,
    ) -> None:
        self._requested_workdir = Path(workdir).resolve() if workdir is not None else None
        self._workdir: Path | None = None
        self._owns_workdir = False
        self._server_name = server_name
        self._config_overrides = _copy(config_overrides or {})
        self._secret = secrets.token_urlsafe(32)
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._process_log: Any = None
        self.startup_seconds: float | None = None
        """Wall time of the last `start()` (config generation included) or `restart()`."""

    # -- properties -------------------------------------------------------------------------

    @property
    def server_name(self) -> str:
        return self._server_name

    @property
    def port(self) -> int:
        if self._port is None:
            raise HomeserverError("the homeserver has not been started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise HomeserverError("the homeserver has not been started")
        return self._workdir

    @property
    def config_path(self) -> Path:
        return self.workdir / CONFIG_NAME

    @property
    def log_path(self) -> Path:
        """Synapse's own log: WARNING and above."""
        return self.workdir / SYNAPSE_LOG_NAME

    @property
    def process_log_path(self) -> Path:
        """Whatever the Synapse process wrote to stdout and stderr."""
        return self.workdir / PROCESS_LOG_NAME

    @property
    def registration_shared_secret(self) -> str:
        return self._secret

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self._server_name}"

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "not started"
        return f"<Homeserver {self._server_name} {where}>"

    # -- life cycle -------------------------------------------------------------------------

    def __enter__(self) -> Homeserver:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Generate the config, start Synapse and wait until it answers. Idempotent."""
        if self.running:
            return
        began = time.monotonic()
        if self._requested_workdir is not None:
            self._workdir = self._requested_workdir
            self._workdir.mkdir(parents=True, exist_ok=True)
            self._owns_workdir = False
        else:
            self._workdir = Path(tempfile.mkdtemp(prefix="nextbot-synapse-")).resolve()
            self._owns_workdir = True
        atexit.register(self.stop)
        try:
            self._generate_config()
            # The free port is found by binding and closing; another process can take it before
            # Synapse binds it. That shows as an early exit, so try again on a fresh port.
            for attempt in range(3):
                self._port = _free_port()
                self._write_config()
                try:
                    self._launch()
                    break
                except HomeserverError as exc:
                    if attempt == 2 or "Address already in use" not in str(exc):
                        raise
        except HomeserverError:
            # Keep the workdir: the error names the log files in it.
            self._owns_workdir = False
            self.stop()
            raise
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def restart(self) -> None:
        """Stop the Synapse process and start it again: same port, config and database."""
        if self._workdir is None or self._port is None:
            raise HomeserverError("the homeserver has not been started")
        began = time.monotonic()
        self._terminate()
        self._launch()
        self.startup_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop Synapse and remove the temporary work directory, if one was made. Idempotent.

        Set the environment variable NEXTBOT_KEEP_SYNAPSE_DIR=1 to keep it for a post-mortem.
        """
        self._terminate()
        keep = os.environ.get("NEXTBOT_KEEP_SYNAPSE_DIR", "") not in ("", "0")
        if self._owns_workdir and self._workdir is not None and keep:
            print(f"kept the Synapse workdir {self._workdir}", file=sys.stderr)
            self._owns_workdir = False
        if self._owns_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
            self._owns_workdir = False
        atexit.unregister(self.stop)

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._process_log is not None:
            self._process_log.close()
            self._process_log = None

    # -- config -----------------------------------------------------------------------------

    def _generate_config(self) -> None:
        workdir = self.workdir
        if self.config_path.exists():  # a reused workdir: keep its keys and database
            return
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "synapse.app.homeserver",
                "--generate-config",
                "--report-stats=no",
                "--server-name",
                self._server_name,
                "--config-path",
                str(self.config_path),
                # Without this the database and media store land in the current directory.
                "--data-directory",
                str(workdir),
            ],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            hint = ""
            if "No module named" in output and "synapse" in output:
                hint = " (install the test or demo extra: pip install -e '.[test]')"
            raise HomeserverError(f"generating the Synapse config failed{hint}:\n{output[-3000:]}")

    def _write_config(self) -> None:
        workdir = self.workdir
        config = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise HomeserverError(f"{self.config_path} is not a YAML mapping")
        config.update(
            {
                "server_name": self._server_name,
                "public_baseurl": f"{self.url}/",
                "pid_file": str(workdir / "homeserver.pid"),
                "listeners": [
                    {
                        "port": self.port,
                        "bind_addresses": ["127.0.0.1"],
                        "type": "http",
                        "tls": False,
                        "x_forwarded": False,
                        "resources": [{"names": ["client"], "compress": False}],
                    }
                ],
                "database": {
                    "name": "sqlite3",
                    "args": {"database": str(workdir / "homeserver.db")},
                },
                "media_store_path": str(workdir / "media_store"),
                "signing_key_path": str(workdir / f"{self._server_name}.signing.key"),
                "log_config": str(self._write_log_config()),
                "report_stats": False,
                "trusted_key_servers": [],
                "suppress_key_server_warning": True,
                "enable_registration": False,
                "registration_shared_secret": self._secret,
                "presence": {"enabled": False},
            }
        )
        config.pop("registration_shared_secret_path", None)
        config.update(_copy(RATE_LIMITS))
        _deep_merge(config, self._config_overrides)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    def _write_log_config(self) -> Path:
        """Point Synapse's logging at a plain file in the workdir, WARNING and above."""
        path = self.workdir / f"{self._server_name}.log.config"
        log_config: dict[str, Any] = {}
        if path.exists():
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                log_config = loaded
        log_config.update(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {
                    "file": {
                        "class": "logging.FileHandler",
                        "formatter": "precise",
                        "filename": str(self.workdir / SYNAPSE_LOG_NAME),
                        "encoding": "utf8",
                    }
                },
                "loggers": {"synapse.storage.SQL": {"level": "WARNING"}},
                "root": {"level": "WARNING", "handlers": ["file"]},
            }
        )
        log_config.setdefault(
            "formatters",
            {
                "precise": {
                    "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s"
                    " - %(request)s - %(message)s"
                }
            },
        )
        path.write_text(yaml.safe_dump(log_config, sort_keys=False), encoding="utf-8")
        return path

    # -- process ----------------------------------------------------------------------------

    def _launch(self) -> None:
        """Start the Synapse process on the written config and wait until it answers."""
        self._process_log = open(self.process_log_path, "ab")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._process_log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        versions = f"{self.url}/_matrix/client/versions"
        while True:
            code = self._process.poll()
            if code is not None:
                self._terminate()
                raise HomeserverError(
                    f"Synapse exited with code {code} while starting.\n"
                    f"--- {self.process_log_path}\n{_tail(self.process_log_path)}\n"
                    f"--- {self.log_path}\n{_tail(self.log_path)}"
                )
            try:
                with urllib.request.urlopen(versions, timeout=2) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                self._terminate()
                raise HomeserverError(
                    f"Synapse did not answer {versions} within {START_TIMEOUT:.0f} s.\n"
                    f"--- {self.log_path}\n{_tail(self.log_path)}"
                )
            time.sleep(0.05)

    # -- users ------------------------------------------------------------------------------

    @property
    def _register_url(self) -> str:
        return f"{self.url}/_synapse/admin/v1/register"

    async def register(self, localpart: str, password: str, admin: bool = False) -> str:
        """Create a user with the shared-secret admin API; return the full user id."""
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(self._register_url) as response:
                response.raise_for_status()
                nonce = (await response.json())["nonce"]
            body = _registration_body(self._secret, nonce, localpart, password, admin)
            async with session.post(self._register_url, json=body) as response:
                return _registration_result(localpart, response.status, await response.text())

    def register_sync(self, localpart: str, password: str, admin: bool = False) -> str:
        """`register` for synchronous callers (urllib)."""
        with urllib.request.urlopen(self._register_url, timeout=30) as response:
            nonce = json.load(response)["nonce"]
        body = _registration_body(self._secret, nonce, localpart, password, admin)
        request = urllib.request.Request(
            self._register_url,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, text = response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode("utf-8", "replace")
        return _registration_result(localpart, status, text)


# A manual smoke check: python -m bot.devtools.testserver
if __name__ == "__main__":  # pragma: no cover
    with Homeserver() as server:
        print(f"{server!r} started in {server.startup_seconds:.2f} s; Ctrl-C stops it")
        with contextlib.suppress(KeyboardInterrupt):
            while server.running:
                time.sleep(1)
