"""CURVE key pairs in pyzmq's certificate format, and what a socket needs to use them.

A key pair is two files made by :func:`generate` (``zmq.auth.create_certificates``):
``NAME.key`` holds the public key (copy it anywhere), ``NAME.key_secret`` the
public and secret keys (mode 0600, never copied off its machine). Both may carry
a ``metadata`` section of ``name = "value"`` lines; labscope reads one of them,
``nodes``, the extra node ids an agent's key may claim (docs/security.md).

Every client and agent takes its keys the same way (:func:`client_keys`): the
flags ``--curve-server-key FILE`` (the collector's public ``.key``) and
``--curve-secret FILE`` (its own ``.key_secret``), else the environment
variables ``LABSCOPE_CURVE_SERVER_KEY`` / ``LABSCOPE_CURVE_SECRET``, else the
config keys ``curve_server_key`` / ``curve_secret``. Neither: plain, as before.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.utils import z85

from messages.errors import KeyFileError

__all__ = [
    "ENV_SECRET",
    "ENV_SERVER_KEY",
    "Certificate",
    "ClientKeys",
    "NOT_CURVE",
    "REFUSED_KEY",
    "REQUIRES_CURVE",
    "WRONG_SERVER_KEY",
    "add_curve_args",
    "client_keys",
    "fingerprint",
    "generate",
    "load",
]

ENV_SERVER_KEY = "LABSCOPE_CURVE_SERVER_KEY"
ENV_SECRET = "LABSCOPE_CURVE_SECRET"
PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
# The two lines a refused client prints (docs/security.md).
REFUSED_KEY = "the collector did not accept this client's key"
REQUIRES_CURVE = "the collector requires CURVE: pass --curve-server-key"
NOT_CURVE = "the collector does not use CURVE: drop --curve-server-key and --curve-secret"
WRONG_SERVER_KEY = "the collector did not complete the CURVE handshake: is --curve-server-key its public key?"


def fingerprint(public_z85: bytes | str) -> str:
    """A short, stable name for a public key: ``SHA256:`` and the first 16 hex digits of its hash."""
    text = public_z85.encode() if isinstance(public_z85, str) else public_z85
    return "SHA256:" + hashlib.sha256(z85.decode(text)).hexdigest()[:16]


@dataclass(frozen=True)
class Certificate:
    """One certificate file: its name (file name without suffix), keys (Z85) and metadata."""

    path: Path
    name: str
    public: bytes
    secret: bytes | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """See :func:`fingerprint`."""
        return fingerprint(self.public)

    def nodes(self) -> tuple[str, ...]:
        """The node ids an agent with this key may claim: its name, then the metadata's ``nodes``."""
        extra = self.metadata.get("nodes", "").replace(",", " ").split()
        return tuple(dict.fromkeys((self.name, *extra)))


def generate(folder: Path, name: str, nodes: tuple[str, ...] = ()) -> Certificate:
    """Write ``NAME.key`` and ``NAME.key_secret`` into ``folder``; refuses to overwrite either.

    ``nodes`` go into both files' metadata (the extra node ids an agent may claim).
    Raises KeyFileError for a bad name, an existing file or a folder that cannot be written.
    """
    if not name or name.startswith(".") or "/" in name or "\\" in name or "\x00" in name:
        raise KeyFileError(f"key name {name!r} is not a plain file name; use letters, digits, '-', '_' or '.'")
    public, secret = folder / f"{name}{PUBLIC_SUFFIX}", folder / f"{name}{SECRET_SUFFIX}"
    for path in (public, secret):
        if path.exists():
            raise KeyFileError(f"{path} exists; labscope never overwrites a key: remove it or choose another name")
    metadata = {"nodes": " ".join(nodes)} if nodes else None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        old_umask = os.umask(0o077)  # the secret file is never readable by others, not even for a moment
        try:
            zmq.auth.create_certificates(folder, name, metadata=metadata)
        finally:
            os.umask(old_umask)
        os.chmod(secret, 0o600)
        os.chmod(public, 0o644)
        if metadata:
            _add_metadata(public, metadata)
    except OSError as exc:
        raise KeyFileError(f"cannot write keys into {folder}: {exc.strerror or exc}") from None
    return load(secret)


def _add_metadata(path: Path, metadata: Mapping[str, str]) -> None:
    """pyzmq writes metadata into the secret file only: put it into the public file too."""
    lines = path.read_text(encoding="utf-8").splitlines()
    at = lines.index("metadata") + 1
    lines[at:at] = [f'    {key} = "{value}"' for key, value in metadata.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def load(path: Path | str, *, secret: bool = False) -> Certificate:
    """Read one certificate file; with ``secret`` it must hold the secret key too.

    Raises KeyFileError naming the file and the fix.
    """
    try:
        path = Path(path).expanduser()  # a config file or a quoted flag may say ~/keys/NAME.key
    except RuntimeError:  # pathlib's "Could not determine home directory." for ~USER
        raise KeyFileError(f"key file {path}: no home folder for {str(path).split('/', 1)[0]}") from None
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyFileError(
            f"key file {path} does not exist (make one with 'labscope keys generate DIR NAME')"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read key file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    values, metadata = _parse(text)
    public, secret_key = values.get("public-key", ""), values.get("secret-key", "")
    what = "secret certificate (NAME.key_secret)" if secret else "certificate"
    if not _is_key(public):
        raise KeyFileError(f"{path} is not a CURVE {what}: no valid public-key line")
    if secret and not _is_key(secret_key):
        raise KeyFileError(f"{path} holds no secret key: pass the NAME.key_secret file, not NAME.key")
    name = path.name.removesuffix(SECRET_SUFFIX).removesuffix(PUBLIC_SUFFIX)
    return Certificate(path, name, public.encode(), secret_key.encode() if secret_key else None, metadata)


def _parse(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """The ``curve`` section's and the ``metadata`` section's ``key = value`` lines."""
    sections: dict[str, dict[str, str]] = {"curve": {}, "metadata": {}}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not raw[0].isspace():
            current = sections.get(line)
            continue
        key, sep, value = line.partition("=")
        if sep and current is not None:
            current[key.strip()] = value.strip().strip("'\"")
    return sections["curve"], sections["metadata"]


def _is_key(text: str) -> bool:
    if len(text) != 40:
        return False
    try:
        return len(z85.decode(text.encode())) == 32
    except (ValueError, KeyError):  # pyzmq raises either for characters outside Z85
        return False


@dataclass(frozen=True)
class ClientKeys:
    """What a client or agent socket needs for CURVE: the collector's public key and its own pair."""

    server_public: bytes
    public: bytes
    secret: bytes
    name: str

    @property
    def fingerprint(self) -> str:
        """The fingerprint of this side's public key (see :func:`fingerprint`)."""
        return fingerprint(self.public)

    def apply(self, sock: zmq.Socket[Any]) -> None:
        """Make ``sock`` a CURVE client of the collector (before ``connect``)."""
        sock.curve_serverkey = self.server_public
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret


def client_keys(
    server_key: str | None, secret: str | None, config: Mapping[str, Any] | None = None
) -> ClientKeys | None:
    """The keys from the flags, else the environment, else ``config``; None when none names either file.

    Giving only one of the two is a usage error (KeyFileError, exit status 2).
    """
    config = config or {}
    server_key = server_key or os.environ.get(ENV_SERVER_KEY) or config.get("curve_server_key") or None
    secret = secret or os.environ.get(ENV_SECRET) or config.get("curve_secret") or None
    if server_key is None and secret is None:
        return None
    if server_key is None or secret is None:
        missing = "--curve-server-key" if server_key is None else "--curve-secret"
        raise KeyFileError(
            f"CURVE needs both the collector's public key and this side's secret certificate: pass {missing} "
            f"(or set {ENV_SERVER_KEY if server_key is None else ENV_SECRET})"
        )
    server, own = load(server_key), load(secret, secret=True)
    assert own.secret is not None
    return ClientKeys(server.public, own.public, own.secret, own.name)


def add_curve_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--curve-server-key FILE`` and ``--curve-secret FILE`` to a client's or agent's parser.

    Read them back with :func:`client_keys` (``args.curve_server_key``, ``args.curve_secret``).
    """
    group = parser.add_argument_group(
        "CURVE (encryption and authentication; docs/security.md)",
        f"Both files, or neither; the environment variables {ENV_SERVER_KEY} and {ENV_SECRET} "
        "stand in for the flags. Neither: plain, unencrypted ZeroMQ.",
    )
    group.add_argument(
        "--curve-server-key",
        metavar="FILE",
        help="the collector's public certificate (its NAME.key, from 'labscope keys generate')",
    )
    group.add_argument(
        "--curve-secret",
        metavar="FILE",
        help="this side's own secret certificate (NAME.key_secret); its public NAME.key goes into "
        "the collector's allow folder",
    )
