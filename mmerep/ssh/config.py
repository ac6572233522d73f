"""The client side, as text: an ``~/.ssh/config`` block and a known_hosts file (pure).

The block is marked, so writing it again replaces it; it is self-contained, so it can
also be saved on its own and pulled in with ``Include``. Host keys are pinned through
a known_hosts file of our own and ``StrictHostKeyChecking yes``: a changed key refuses
the connection instead of asking.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mmerep.ssh.hosts import domain_of, host_name, host_pattern

BEGIN = "# >>> mme-rep ssh: profile {name} >>>"
END = "# <<< mme-rep ssh: profile {name} <<<"


@dataclass(frozen=True)
class EnvKeys:
    """An environment that answers SSH: its components and its public host keys."""

    env: str
    components: tuple[str, ...]
    host_keys: tuple[str, ...] = field(default_factory=tuple)  # "TYPE BASE64" lines


def _quote(arg: str) -> str:
    """Quote for ssh_config's ProxyCommand (run by the user's shell)."""
    import shlex

    return shlex.quote(arg)


def ssh_config(profile: Any, environments: Iterable[EnvKeys], *, proxy: list[str],
               known_hosts: str) -> str:
    """The marked block for ``profile``: one wildcard Host with the ProxyCommand, and one
    Host per environment component naming its key (HostKeyAlias)."""
    domain = domain_of(profile)
    command = " ".join(_quote(a) for a in proxy) + " %h %p"
    lines = [BEGIN.format(name=profile.name),
             "# Written by `mme-rep ssh config --write`; a later run replaces this block.",
             f"Host {host_pattern(profile)}",
             f"    ProxyCommand {command}",
             f"    UserKnownHostsFile {_quote(known_hosts)}",
             "    StrictHostKeyChecking yes",
             "    CheckHostIP no",
             "    ServerAliveInterval 30"]
    for env in sorted(environments, key=lambda e: e.env):
        for component in env.components:
            name = host_name(env.env, component, profile.name, str(domain))
            lines += [f"Host {name}", f"    HostKeyAlias {name}"]
    lines.append(END.format(name=profile.name))
    return "\n".join(lines) + "\n"


def known_hosts(profile: Any, environments: Iterable[EnvKeys]) -> str:
    """One line per host name and key: ``NAME TYPE BASE64``."""
    domain = str(domain_of(profile))
    out = []
    for env in sorted(environments, key=lambda e: e.env):
        for component in env.components:
            name = host_name(env.env, component, profile.name, domain)
            out += [f"{name} {' '.join(key.split()[:2])}" for key in env.host_keys]
    return "".join(f"{line}\n" for line in out)


def replace_block(text: str, block: str, profile_name: str) -> str:
    """``text`` (an ssh config) with the profile's marked block replaced, or appended."""
    begin, end = BEGIN.format(name=profile_name), END.format(name=profile_name)
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\n") == begin]
    if starts:
        start = starts[0]
        stop = next((i for i in range(start, len(lines)) if lines[i].rstrip("\n") == end),
                    len(lines) - 1)
        return "".join(lines[:start]) + block + "".join(lines[stop + 1:])
    if text and not text.endswith("\n"):
        text += "\n"
    return text + ("\n" if text.strip() else "") + block
