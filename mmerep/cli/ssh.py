"""`mme-rep ssh ...`: reach environments with plain OpenSSH through the API server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from mmerep.cli.options import OutputFormat, OutputOption

HELP = ("Reach an environment's scheduler over SSH through a port-forward.\n\n"
        "Host names read <env>-<component>.<profile>.<ssh_domain>; nothing is exposed "
        "outside the cluster, the connection rides the API server's port-forward.\n\n"
        "Examples:\n\n"
        "  mme-rep ssh config -F dev-s3 --write     # ~/.ssh/config block + known_hosts\n\n"
        "  ssh sentinel3-scheduler.dev-s3.mmerep-general-dev\n\n"
        "  mme-rep ssh keys add -F dev-s3 sentinel3 ~/.ssh/id_ed25519.pub\n\n"
        "  mme-rep ssh -F dev-s3 sentinel3 -- -L 8888:localhost:8888  # ssh options after --")


class SshGroup(TyperGroup):
    """`mme-rep ssh ENV ...` (no sub-command name) means `mme-rep ssh connect ENV ...`."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        first = args[0] if args else ""
        if args and (first in ("-F", "--profile", "--profiles")
                     or (not first.startswith("-") and first not in self.commands)):
            args = ["connect", *args]
        if args and args[0] == "connect" and "--" in args:  # the rest is ssh's
            at = args.index("--")
            ctx.meta["ssh_args"], args = args[at + 1:], args[:at]
        return super().resolve_command(ctx, args)


app = typer.Typer(help=HELP, cls=SshGroup, no_args_is_help=True)
keys_app = typer.Typer(help="Public keys allowed to log in to an environment (no re-deploy "
                       "needed; a later deploy keeps them).\n\n"
                       "Examples:\n\n"
                       "  mme-rep ssh keys add sentinel3 ~/.ssh/id_ed25519.pub\n\n"
                       "  mme-rep ssh keys list sentinel3 -o json\n\n"
                       "  mme-rep ssh keys remove sentinel3 SHA256:abc...",
                       no_args_is_help=True)
app.add_typer(keys_app, name="keys")

ProfileOption = typer.Option("local", "--profile", "-F", help="Deployment profile (target).")
ProfilesFileOption = typer.Option(None, "--profiles", help="Profiles file (overrides "
                                  "$MMEREP_PROFILES and the user config).")


def _target(profile_name: str, profiles_file: str | None,
            env: str | None = None) -> tuple[Any, Any]:
    """The profile and its connection; with a profile group, the member holding ``env``."""
    from mmerep.cli.env import _target as env_target

    return env_target(profile_name, profiles_file, env)


def _key_text(key: str) -> str:
    """A key given inline, or the path of a .pub file."""
    from mmerep.errors import UsageError

    if key.startswith(("ssh-", "ecdsa-", "sk-")) or " " in key.strip():
        return key
    path = Path(key).expanduser()
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise UsageError(f"cannot read public key file {path}: {exc.strerror}",
                         hint="give a .pub file or the key text in quotes") from None


@keys_app.command("add")
def keys_add(env: str = typer.Argument(..., help="Environment name."),
             key: str = typer.Argument(..., help="Public key text, or a .pub file."),
             profile_name: str = ProfileOption,
             profiles_file: str | None = ProfilesFileOption) -> None:
    """Allow a public key to log in (takes effect in the pod within a minute)."""
    from mmerep import sshkeys
    from mmerep.cli.output import console
    from mmerep.ssh import manage

    profile, kube = _target(profile_name, profiles_file, env)
    line = sshkeys.check_public_key(_key_text(key))
    added = manage.add_key(kube, profile.namespace, env, line)
    console.print(f"{'added' if added else 'already there'}: {sshkeys.fingerprint(line)} "
                  f"to {env}", soft_wrap=True)


@keys_app.command("list")
def keys_list(env: str = typer.Argument(..., help="Environment name."),
              profile_name: str = ProfileOption,
              profiles_file: str | None = ProfilesFileOption,
              output: OutputFormat = OutputOption) -> None:
    """List the keys allowed to log in (type, fingerprint, comment)."""
    from mmerep.cli.output import render, table
    from mmerep.ssh import manage

    profile, kube = _target(profile_name, profiles_file, env)
    rows = manage.list_keys(kube, profile.namespace, env)
    render(rows, output, lambda data: table(f"authorized keys of {env}",
                                            ["type", "fingerprint", "comment"],
                                            [(r["type"], r["fingerprint"], r["comment"])
                                             for r in data]))


@keys_app.command("remove")
def keys_remove(env: str = typer.Argument(..., help="Environment name."),
                which: str = typer.Argument(..., help="Fingerprint (SHA256:...), comment, "
                                            "or the key text."),
                profile_name: str = ProfileOption,
                profiles_file: str | None = ProfilesFileOption) -> None:
    """Stop a key from logging in."""
    from mmerep.cli.output import console
    from mmerep.ssh import manage

    profile, kube = _target(profile_name, profiles_file, env)
    for fp in manage.remove_key(kube, profile.namespace, env, which):
        console.print(f"removed: {fp} from {env}", soft_wrap=True)


@app.command("config")
def config(profile_name: str = ProfileOption,
           profiles_file: str | None = ProfilesFileOption,
           write: bool = typer.Option(False, "--write", help="Write the block into the ssh "
                                      "config (replacing an earlier one, after a backup) and "
                                      "the known_hosts file."),
           known_hosts: bool = typer.Option(False, "--known-hosts", help="Print the "
                                            "known_hosts lines instead of the config block."),
           ssh_config: Path = typer.Option(Path("~/.ssh/config"), "--ssh-config",
                                           help="The ssh config file to write into.")) -> None:
    """Print (or --write) the ssh config block and known_hosts for a profile's environments.

    The block's ProxyCommand is `mme-rep ssh proxy %h %p`; host keys are pinned
    (StrictHostKeyChecking yes, a known_hosts file of our own). Running it again
    replaces the block. Example: mme-rep ssh config -F dev-s3 --write
    """
    from mmerep.cli.output import console, err_console
    from mmerep.ssh import manage
    from mmerep.ssh.hosts import host_pattern

    profile, kube = _target(profile_name, profiles_file)
    host_pattern(profile)  # fails early, with the fix, when the profile cannot name hosts
    envs = manage.environment_keys(kube, profile.namespace)
    path = ssh_config.expanduser()
    block, known = manage.render_client(profile, envs, path, profiles_file)
    if write:
        written = manage.write_client(profile, block, known, path)
        console.print(f"wrote {written['config']} (profile {profile.name}: {len(envs)} "
                      f"environment(s)) and {written['known_hosts']}"
                      + (f"; backup {written['backup']}" if "backup" in written else ""),
                      soft_wrap=True)
    elif known_hosts:
        print(known, end="")
    else:
        print(block, end="")
        err_console.print(f"(--write also saves {len(envs)} environment(s)' host keys to "
                          f"{manage.known_hosts_path(path, profile.name)})", soft_wrap=True)


@app.command("proxy")
def proxy(host: str = typer.Argument(..., help="Host name (%h): <env>-<component>."
                                     "<profile>.<cluster>."),
          port: int = typer.Argument(22, help="Port (%p); the pod's ssh port is used."),
          profiles_file: str | None = ProfilesFileOption) -> None:
    """OpenSSH's ProxyCommand: stdin/stdout to the environment's sshd through the API server.

    Example (in ~/.ssh/config): ProxyCommand mme-rep ssh proxy %h %p
    """
    from mmerep.ssh.proxy import run

    run(host, port, profiles_file)


@app.command("connect", hidden=True)
def connect(ctx: typer.Context,
            env: str = typer.Argument(..., help="Environment name."),
            component: str = typer.Argument("scheduler", help="Component (scheduler, "
                                            "interactive...)."),
            profile_name: str = ProfileOption,
            profiles_file: str | None = ProfilesFileOption) -> None:
    """`mme-rep ssh ENV [COMPONENT] [-- ssh args]`: run ssh through the proxy."""
    from mmerep.ssh import manage
    from mmerep.ssh.hosts import domain_of, host_name

    profile, _ = _target(profile_name, profiles_file, env)  # a group: the member holding it
    host_file = manage.known_hosts_path(Path("~/.ssh/config").expanduser(), profile.name)
    proxy_cmd = " ".join(manage.proxy_command(profiles_file)) + " %h %p"
    name = host_name(env, component, profile.name, str(domain_of(profile)))
    args = ["ssh", "-o", f"ProxyCommand={proxy_cmd}", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={host_file}", "-o", f"HostKeyAlias={name}",
            name, *ctx.meta.get("ssh_args", [])]  # ssh reads options after the host too
    os.execvp("ssh", args)  # noqa: S606 (ssh replaces us, as typing it would)
