"""An environment's SSH data: host keys made once and kept, public keys, authorized keys.

Host keys are generated at first deploy with ``ssh-keygen`` into the environment's
Secret and never regenerated, so clients can pin them. Their public halves go into a
ConfigMap (``<env>-ssh-known-hosts``) that users may read without reading Secrets.
The authorized keys live in their own ConfigMap (``<env>-ssh-authorized-keys``), seeded
from the ``authorized_keys`` parameter at first deploy and owned afterwards by
``mme-rep ssh keys``: a deploy keeps what is there.

Objects built here carry ``KEPT_LABEL``: deploys re-apply them with their live data and
never prune them.
"""

from __future__ import annotations

import base64
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from mmerep.errors import MmerepError, UsageError

Obj = dict[str, Any]
KEPT_LABEL = "mme-rep/kept"
HOST_KEY = re.compile(r"^ssh_host_(ed25519|ecdsa|rsa)_key$")
KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
             "ssh-rsa", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
_KEYGEN_TYPE = {"ed25519": ["-t", "ed25519"], "ecdsa": ["-t", "ecdsa", "-b", "256"],
                "rsa": ["-t", "rsa", "-b", "3072"]}


def known_hosts_name(env_name: str) -> str:
    return f"{env_name}-ssh-known-hosts"


def authorized_keys_name(env_name: str) -> str:
    return f"{env_name}-ssh-authorized-keys"


def is_host_key(key: str) -> bool:
    return bool(HOST_KEY.match(key))


def generate_host_key(key: str) -> tuple[str, str]:
    """(private, public) OpenSSH texts of a new host key named like ``ssh_host_ed25519_key``."""
    match = HOST_KEY.match(key)
    if not match:
        raise UsageError(f"{key!r} is not a host key name (ssh_host_<ed25519|ecdsa|rsa>_key)")
    with tempfile.TemporaryDirectory(prefix="mmerep-hostkey-") as tmp:
        path = Path(tmp) / key
        try:
            subprocess.run(["ssh-keygen", "-q", *_KEYGEN_TYPE[match.group(1)], "-N", "",
                            "-C", "", "-f", str(path)], check=True, capture_output=True,
                           timeout=60)
        except FileNotFoundError:
            raise MmerepError("ssh-keygen not found: it makes the environment's SSH host keys",
                              hint="install OpenSSH's client tools (apt-get install "
                              "openssh-client)") from None
        except subprocess.CalledProcessError as exc:
            raise MmerepError(f"ssh-keygen failed: {exc.stderr.decode().strip()}") from None
        return path.read_text(), path.with_suffix(".pub").read_text().strip() + "\n"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def fill_host_keys(data: dict[str, str], keys: tuple[str, ...]) -> dict[str, str]:
    """Secret ``data`` (base64) with every host key in ``keys`` present, and its ``.pub``.

    Keys already there are kept as they are: that is what keeps a host key pinned.
    """
    out = dict(data)
    for key in keys:
        if is_host_key(key) and key not in out:
            private, public = generate_host_key(key)
            out[key], out[f"{key}.pub"] = _b64(private), _b64(public)
    return out


def known_hosts_configmap(env_name: str, namespace: str, secret_data: dict[str, str],
                          components: list[str], labels: dict[str, str]) -> Obj:
    """The public host keys, and which components answer SSH, readable without Secrets."""
    public = {k: _unb64(v) for k, v in sorted(secret_data.items())
              if k.endswith(".pub") and is_host_key(k[:-4])}
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": known_hosts_name(env_name), "namespace": namespace,
                         "labels": {**labels, KEPT_LABEL: "true"}},
            "data": {**public, "components": " ".join(components)}}


def parse_authorized_keys(text: str) -> list[str]:
    """The key lines of an authorized_keys text (comments and blank lines dropped)."""
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def check_public_key(line: str) -> str:
    """One OpenSSH public key line, checked: ``[options] TYPE BASE64 [comment]``."""
    line = " ".join(line.strip().split())
    parts = line.split(" ")
    at = next((i for i, p in enumerate(parts) if p in KEY_TYPES), None)
    if at is None or at + 1 >= len(parts):
        raise UsageError(f"not an OpenSSH public key: {line[:40]!r}...",
                         hint="give the contents of a .pub file, e.g. ~/.ssh/id_ed25519.pub")
    try:
        blob = base64.b64decode(parts[at + 1], validate=True)
    except ValueError:
        raise UsageError(f"the key data of {line[:40]!r}... is not base64") from None
    name_len = int.from_bytes(blob[:4], "big")
    if blob[4:4 + name_len].decode("ascii", "replace") != parts[at]:
        raise UsageError(f"the key data of {line[:40]!r}... does not match its type {parts[at]}")
    return line


def key_fields(line: str) -> tuple[str, str, str]:
    """(type, base64 data, comment) of a checked key line."""
    parts = line.split(" ")
    at = next(i for i, p in enumerate(parts) if p in KEY_TYPES)
    return parts[at], parts[at + 1], " ".join(parts[at + 2:])


def fingerprint(line: str) -> str:
    """SHA256 fingerprint as ``ssh-keygen -l`` prints it."""
    import hashlib

    _, data, _ = key_fields(line)
    digest = hashlib.sha256(base64.b64decode(data)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def authorized_keys_configmap(env_name: str, namespace: str, keys: list[str],
                              labels: dict[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": authorized_keys_name(env_name), "namespace": namespace,
                         "labels": {**labels, KEPT_LABEL: "true"}},
            "data": {"authorized_keys": "".join(f"{k}\n" for k in keys)}}


def with_key(keys: list[str], line: str) -> list[str]:
    """``keys`` plus ``line`` (a key already there, same type and data, is not added twice)."""
    new = key_fields(line)[:2]
    if any(key_fields(k)[:2] == new for k in keys):
        return keys
    return [*keys, line]


def without_key(keys: list[str], which: str) -> tuple[list[str], list[str]]:
    """(kept, removed): ``which`` is a fingerprint, a comment or a whole key line."""
    def matches(k: str) -> bool:
        _, data, comment = key_fields(k)
        return which in (fingerprint(k), comment, data) or " ".join(which.split()) == k
    removed = [k for k in keys if matches(k)]
    return [k for k in keys if k not in removed], removed
