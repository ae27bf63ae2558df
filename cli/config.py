"""Where vaporctl keeps its logins: ``$XDG_CONFIG_HOME/vapor/config.json`` (default ~/.config/vapor).

The file holds, for each server logged in to, the bearer token, the refresh
token and when each expires, and which server is the current one. It is
written whole through a new file of mode 0600 in a folder of mode 0700 (the
tokens are as good as a password for their lifetime), and changed under a
lock: a refresh token works once, so two vaporctl runs must never both trade
the same one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from .errors import CLIError

DEFAULT_SERVER = "http://localhost:8080"


class Login(BaseModel):
    """One server's tokens."""

    username: str
    role: str = "viewer"
    token: str
    expires_at: int = Field(description="Unix time the bearer token expires.")
    refresh_token: str
    refresh_expires_at: int = Field(description="Unix time the refresh token expires.")


class Config(BaseModel):
    """The whole file."""

    current_server: str | None = None
    logins: dict[str, Login] = Field(default_factory=dict)


def config_dir() -> Path:
    """The folder of vaporctl's configuration."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "vapor"


def config_path() -> Path:
    """The configuration file."""
    return config_dir() / "config.json"


def load() -> Config:
    """The configuration, empty when there is none yet."""
    path = config_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Config()
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return Config.model_validate(json.loads(text))
    except (ValueError, ValidationError):
        raise CLIError(f"{path} is not a vaporctl configuration; remove it and log in again") from None


def save(config: Config) -> None:
    """Write the configuration whole: a new file of mode 0600, then renamed over the old one."""
    folder = config_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    fd, tmp = tempfile.mkstemp(prefix=".config-", dir=folder)  # mkstemp makes it 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(config.model_dump_json(indent=2, exclude_none=True))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, config_path())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Hold the configuration's lock (a file beside it) for a read, change and write."""
    folder = config_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def server_url(override: str | None, config: Config) -> str:
    """The server to talk to: --server or VAPOR_SERVER, else the one logged in to last, else the default."""
    url = override or config.current_server or DEFAULT_SERVER
    return normalized(url)


def normalized(url: str) -> str:
    """A server's URL as the key of its login: with a scheme, without a trailing slash."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    return url
