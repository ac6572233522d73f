"""`mme-rep images ...`: what the registry holds that an environment can be deployed from."""

from __future__ import annotations

from typing import Any

import typer

from mmerep.cli.options import OutputFormat, OutputOption

app = typer.Typer(
    help="List the environment images in the profile's registry project.\n\n"
    "Images live at <registry>/<project>/<flavour>/<name>:<tag>, as the CI templates push "
    "them; the flavour is the environment template (htcondor-batch, jupyter, ...).\n\n"
    "Examples:\n\n"
    "  mme-rep images list\n\n"
    "  mme-rep images list -F dev-s3 htcondor-batch\n\n"
    "  mme-rep images list -F dev-s3 -o json",
    no_args_is_help=True,
)


@app.callback()
def _group() -> None:
    # A callback keeps `images` a group when it has one command, so `images list` works
    # wherever the app is mounted (and `images` alone shows the help).
    pass


def _age(created: str | None, now: float) -> int | None:
    from datetime import datetime

    if not created:
        return None
    try:
        stamp = datetime.fromisoformat(created)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        return None
    return max(0, int(now - stamp.timestamp()))


def images_table(rows: list[dict[str, Any]]) -> Any:
    from mmerep.cli.output import age, table

    return table(None, ["flavour", "image", "tag", "digest", "age"],
                 [(r["flavour"], r["image"], r["tag"], r["digest"][:19],
                   age(r["age_seconds"])) for r in rows])


@app.command("list")
def list_cmd(
    flavour: str | None = typer.Argument(None, help="Only this flavour (environment "
                                         "template), e.g. htcondor-batch."),
    profile_name: str = typer.Option("local", "--profile", "-F", help="Deployment profile "
                                     "(its registry and project)."),
    profiles_file: str | None = typer.Option(None, "--profiles", help="Profiles file "
                                             "(overrides $MMEREP_PROFILES and the user "
                                             "config)."),
    show_all: bool = typer.Option(False, "--all", "-a", help="Also list the build jobs' "
                                  "candidate tags (build-..., ci-...), which were not "
                                  "scanned or published."),
    output: OutputFormat = OutputOption,
) -> None:
    """Repositories, tags, digests and ages under the profile's registry project.

    Age is the image's build time (its config's "created", or the
    org.opencontainers.image.created annotation); "-" when the image does not say.
    The CI build jobs' candidate tags are left out unless --all is given: only the tags
    the publish job gave after the scan are meant for `env deploy`.

    Examples:

      mme-rep images list -F dev-s3

      mme-rep images list -F dev-s3 jupyter -o json
    """
    import time

    from mmerep.cipipeline import BUILD_CACHE, CANDIDATE_TAG
    from mmerep.cli.output import err_console, render
    from mmerep.errors import UsageError
    from mmerep.grammar import oci
    from mmerep.profiles import get_profile, resolved_registry
    from mmerep.registry import RegistryClient

    if flavour is not None and not oci.PATH_PART.fullmatch(flavour):
        raise UsageError(f"flavour '{flavour}' is not a valid repository path part",
                         hint="lowercase letters, digits, '.', '_' and '-', e.g. "
                         "htcondor-batch")
    profile = get_profile(profile_name, profiles_file)
    registry = resolved_registry(profile)
    prefix = f"{profile.project}/" + (f"{flavour}/" if flavour else "")
    now = time.time()
    hidden: list[str] = []

    def skip(repository: str, tag: str) -> bool:
        if repository.startswith(f"{profile.project}/{BUILD_CACHE}/"):
            return True  # buildah's layer cache (layer_cache: registry), not images
        if show_all or not CANDIDATE_TAG.fullmatch(tag):
            return False
        hidden.append(tag)
        return True

    rows = []
    for item in RegistryClient(registry).images(prefix, skip=skip):
        rest = item["repository"][len(profile.project) + 1:]
        kind, _, image = rest.partition("/")
        rows.append({**item, "flavour": kind if image else "-", "image": image or kind,
                     "reference": f"{registry}/{item['repository']}:{item['tag']}",
                     "age_seconds": _age(item["created"], now),
                     "candidate": bool(CANDIDATE_TAG.fullmatch(item["tag"]))})
    # Newest first within an image: what was just built is what gets deployed next.
    rows.sort(key=lambda r: (r["flavour"], r["image"], r["age_seconds"] is None,
                             r["age_seconds"] or 0, r["tag"]))
    render(rows, output, images_table)
    if output is not OutputFormat.table:
        return
    if not rows:
        err_console.print(f"no images under {registry}/{prefix}", soft_wrap=True,
                          markup=False)
    if hidden:
        err_console.print(f"{len(hidden)} candidate tag{'s' if len(hidden) > 1 else ''} of "
                          "CI builds "
                          "not shown (not scanned or published yet): --all lists them",
                          soft_wrap=True, markup=False)
