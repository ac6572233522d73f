"""GitLab CI through python-gitlab: the latest pipeline, job logs, triggering and waiting.

The only module that imports ``gitlab``. Every function returns plain data (dicts,
strings) and every python-gitlab or HTTP failure becomes a ``CiError`` whose message
never contains the token.

Where things come from (first found wins):

- server and token: explicit arguments; ``GITLAB_URL`` / ``CI_SERVER_URL`` with
  ``GITLAB_TOKEN`` / ``GITLAB_PRIVATE_TOKEN`` / ``CI_JOB_TOKEN``; python-gitlab's config
  file (``$PYTHON_GITLAB_CFG``, ``~/.python-gitlab.cfg``, ``/etc/python-gitlab.cfg``).
- project: ``--project``, ``CI_PROJECT_PATH``, the ``origin`` remote of the checkout.
- ref: ``--ref``, ``CI_COMMIT_REF_NAME``, the checked-out branch.
"""

from __future__ import annotations

import codecs
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import gitlab
import requests

from mmerep import __version__
from mmerep.errors import (  # noqa: F401  (the CI errors, re-exported for callers)
    CiAuthError,
    CiConfigError,
    CiError,
    CiNotFound,
    CiTimeout,
    CiUnreachable,
    MmerepError,
    UsageError,
)

URL_VARS = ("GITLAB_URL", "CI_SERVER_URL")
TOKEN_VARS = ("GITLAB_TOKEN", "GITLAB_PRIVATE_TOKEN")
JOB_TOKEN_VAR = "CI_JOB_TOKEN"  # noqa: S105 (a variable name)
PIPELINE_DONE = frozenset({"success", "failed", "canceled", "skipped", "manual"})
JOB_DONE = frozenset({"success", "failed", "canceled", "skipped", "manual"})
_AUTH_HINT = ("set GITLAB_TOKEN to an access token with the api scope, or private_token "
              "in ~/.python-gitlab.cfg or the file $PYTHON_GITLAB_CFG names")
_PIPELINE_FIELDS = ("id", "iid", "status", "ref", "sha", "source", "web_url", "created_at",
                    "updated_at", "started_at", "finished_at", "duration", "queued_duration")
_JOB_FIELDS = ("id", "name", "stage", "status", "duration", "failure_reason", "allow_failure",
               "web_url", "started_at", "finished_at")


@dataclass
class GitLab:
    """A python-gitlab client with what error messages need: the URL and where the token
    came from (never the token itself)."""

    api: gitlab.Gitlab
    url: str
    token_source: str
    secrets: tuple[str, ...] = field(default=(), repr=False)
    projects: dict[str, Any] = field(default_factory=dict, repr=False)

    def scrub(self, text: str) -> str:
        """``text`` with every known secret replaced by ``***``."""
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return text


def connect(url: str | None = None, token: str | None = None,
            config_section: str | None = None, *, job_token: str | None = None,
            config_files: list[str] | None = None, timeout: float = 30.0) -> GitLab:
    """A client for the GitLab server; see the module docstring for the precedence."""
    env = os.environ
    source = "the given token" if token or job_token else ""
    if not token and not job_token:
        for var in TOKEN_VARS:
            if env.get(var):
                token, source = env[var], f"${var}"
                break
        else:
            if env.get(JOB_TOKEN_VAR):
                job_token, source = env[JOB_TOKEN_VAR], f"${JOB_TOKEN_VAR} (a job token)"
    url = url or next((env[v] for v in URL_VARS if env.get(v)), None)
    agent = f"mme-rep/{__version__}"
    if url:
        api = gitlab.Gitlab(url, private_token=token, job_token=job_token, timeout=timeout,
                            user_agent=agent)
    else:
        api = _from_config(config_section, config_files)
        if token or job_token:  # a token from the environment beats the file's
            api = gitlab.Gitlab(api.url, private_token=token, job_token=job_token,
                                ssl_verify=api.ssl_verify, timeout=api.timeout,
                                user_agent=agent)
        elif api.private_token or api.job_token or api.oauth_token:
            section = f"[{config_section}]" if config_section else "its default section"
            source = f"the python-gitlab config, {section}"
    if not _is_http_url(api.url):
        raise CiConfigError(f"GitLab URL '{api.url}' is not an http(s) address",
                            hint="e.g. GITLAB_URL=https://gitlab.example.org")
    secrets = tuple(s for s in (api.private_token, api.job_token, api.oauth_token) if s)
    parts = urlsplit(api.url)  # credentials in the URL are never shown either
    shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    return GitLab(api, shown, source or "no token", secrets)


def _from_config(section: str | None, files: list[str] | None) -> gitlab.Gitlab:
    where = "~/.python-gitlab.cfg ($PYTHON_GITLAB_CFG)"
    try:
        parsed = gitlab.config.GitlabConfigParser(section, files)
    except gitlab.config.GitlabConfigMissingError as exc:
        raise CiConfigError(f"no GitLab server configured: {exc}",
                            hint="set GITLAB_URL and GITLAB_TOKEN, or fix the path in "
                            "$PYTHON_GITLAB_CFG") from None
    except gitlab.config.ConfigError as exc:
        raise CiConfigError(f"the python-gitlab config is not usable: {exc}",
                            hint="name a section with --gitlab SECTION, or set [global] "
                            f"default in {where}") from None
    if not parsed.url:  # no file at all: python-gitlab would silently use gitlab.com
        raise CiConfigError("no GitLab server configured",
                            hint=f"set GITLAB_URL and GITLAB_TOKEN, or write {where} with a "
                            "section holding url and private_token")
    return gitlab.Gitlab.from_config(section, files)


def _is_http_url(url: str | None) -> bool:
    parts = urlsplit(url or "")
    return parts.scheme in ("http", "https") and bool(parts.netloc)


# --- project and ref -----------------------------------------------------------------

_SCP_REMOTE = re.compile(r"^(?:[^@/]+@)?[^:/]+:(?P<path>[^/].*)$")


def project_from_remote(remote: str) -> str | None:
    """``group/sub/project`` from a git remote URL (https, ssh:// or scp-like)."""
    remote = remote.strip()
    if "://" in remote:
        path = urlsplit(remote).path
    else:
        match = _SCP_REMOTE.match(remote)
        if match is None:
            return None
        path = match["path"]
    path = path.strip("/").removesuffix(".git").removesuffix("/")
    return path if "/" in path else None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                             check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def resolve_project(project: str | None = None) -> str:
    """``--project``, else ``$CI_PROJECT_PATH``, else the ``origin`` remote's path."""
    chosen = project or os.environ.get("CI_PROJECT_PATH")
    if not chosen:
        remote = _git("remote", "get-url", "origin")
        chosen = project_from_remote(remote) if remote else None
    if not chosen:
        raise UsageError("no GitLab project given and none found in the git remote",
                         hint="pass --project GROUP/PROJECT, or run inside a clone whose "
                         "origin is on GitLab")
    return chosen.strip("/")


def resolve_ref(ref: str | None = None) -> str:
    """``--ref``, else ``$CI_COMMIT_REF_NAME``, else the checked-out branch."""
    chosen = ref or os.environ.get("CI_COMMIT_REF_NAME") or _git("symbolic-ref", "--short",
                                                                 "-q", "HEAD")
    if not chosen:
        raise UsageError("no git ref given, and no checked-out branch here (not a git "
                         "checkout, or a detached HEAD)",
                         hint="pass --ref BRANCH_OR_TAG, e.g. --ref main")
    return chosen


# --- errors --------------------------------------------------------------------------

@contextmanager
def _calls(gl: GitLab, what: str, project: str | None = None,
           not_found: str | None = None) -> Iterator[None]:
    """Turns python-gitlab and HTTP failures while doing ``what`` into CiErrors."""
    try:
        yield
    except gitlab.exceptions.GitlabError as exc:
        code = exc.response_code
        detail = gl.scrub(str(exc.error_message or "")).strip()
        if code == 401 and not gl.secrets:
            raise CiAuthError(f"GitLab at {gl.url} wants a token (401 Unauthorized) and none "
                              "is set", hint=_AUTH_HINT) from None
        if code == 401:
            raise CiAuthError(f"GitLab refused the token ({gl.token_source}; 401 "
                              f"Unauthorized from {gl.url})",
                              hint=_AUTH_HINT) from None
        if code == 403:
            raise CiAuthError(f"GitLab denied {what} (403 Forbidden; token from "
                              f"{gl.token_source})",
                              hint="the token needs the api scope and at least the "
                              f"Developer role on {project or 'the project'}") from None
        if code == 404:
            message = not_found or f"{what}: not found on {gl.url}"
            hint = (f"check the project path, and that the token ({gl.token_source}) can "
                    "see it" if project else None)
            raise CiNotFound(message, hint=hint) from None
        raise CiError(f"GitLab failed {what}: " + (f"HTTP {code} " if code else "")
                      + (detail or type(exc).__name__)) from None
    except requests.Timeout:
        raise CiUnreachable(f"GitLab at {gl.url} did not answer in time ({what})",
                            hint="check the network, or try again later") from None
    except requests.RequestException as exc:
        kind = "TLS failed" if isinstance(exc, requests.exceptions.SSLError) else "unreachable"
        raise CiUnreachable(f"GitLab at {gl.url} is {kind} ({what})",
                            hint="check GITLAB_URL or the url in the python-gitlab "
                            "config, and that the server is up") from None


def _project(gl: GitLab, path: str) -> Any:
    if path not in gl.projects:
        with _calls(gl, f"reading project {path}", path,
                    not_found=f"GitLab project '{path}' not found on {gl.url}"):
            gl.projects[path] = gl.api.projects.get(path)
    return gl.projects[path]


# --- pipelines and jobs ---------------------------------------------------------------

def _pick(obj: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    attrs = obj.attributes if hasattr(obj, "attributes") else obj
    return {key: attrs.get(key) for key in fields}


def failed_jobs(pipeline: dict[str, Any]) -> list[dict[str, Any]]:
    """The jobs that made the pipeline fail (failed and not allowed to)."""
    return [j for j in pipeline["jobs"] if j["status"] == "failed" and not j["allow_failure"]]


def pipeline_details(gl: GitLab, project: str, pipeline_id: int) -> dict[str, Any]:
    """One pipeline and its jobs (oldest first) as plain data."""
    proj = _project(gl, project)
    with _calls(gl, f"reading pipeline {pipeline_id}", project,
                not_found=f"pipeline {pipeline_id} not found in {project}"):
        pipeline = proj.pipelines.get(pipeline_id)
        jobs = pipeline.jobs.list(get_all=True)
    data = _pick(pipeline, _PIPELINE_FIELDS)
    data["project"] = project
    data["jobs"] = sorted((_pick(j, _JOB_FIELDS) for j in jobs), key=lambda j: j["id"])
    data["failed_jobs"] = [{k: j[k] for k in ("id", "name", "stage", "failure_reason")}
                           for j in failed_jobs(data)]
    return data


def latest_pipeline(gl: GitLab, project: str, ref: str) -> dict[str, Any]:
    """The newest pipeline on ``ref`` with its jobs; CiNotFound when there is none."""
    proj = _project(gl, project)
    with _calls(gl, f"listing pipelines of {project}", project):
        found = proj.pipelines.list(ref=ref, order_by="id", sort="desc", per_page=1,
                                    get_all=False)
    if not found:
        raise CiNotFound(f"{project} has no pipeline on ref '{ref}'",
                         hint=f"start one: mme-rep ci trigger --project {project} --ref {ref}")
    return pipeline_details(gl, project, found[0].id)


def _find_job(gl: GitLab, project: str, job: str | int, ref: str | None) -> Any:
    proj = _project(gl, project)
    if isinstance(job, int) or str(job).isdigit():
        with _calls(gl, f"reading job {job}", project,
                    not_found=f"job {job} not found in {project}"):
            return proj.jobs.get(int(job))
    if not ref:
        raise UsageError(f"job '{job}' is a name, which needs a ref",
                         hint="pass --ref BRANCH, or give the job's number")
    pipeline = latest_pipeline(gl, project, ref)
    matches = [j for j in pipeline["jobs"] if j["name"] == job]
    if not matches:
        names = ", ".join(j["name"] for j in pipeline["jobs"]) or "none"
        raise CiNotFound(f"no job '{job}' in pipeline {pipeline['id']} of {project} "
                         f"({ref})", hint=f"jobs: {names}")
    return _find_job(gl, project, matches[-1]["id"], None)


def job_log(gl: GitLab, project: str, job: str | int, follow: bool = False, *,
            ref: str | None = None, poll: float = 1.0,
            sleep: Callable[[float], None] = time.sleep,
            timeout: float | None = None) -> Iterator[str]:
    """The job's log in chunks. ``job`` is an id, or a name in the latest pipeline of
    ``ref``. Following re-reads the trace every ``poll`` seconds and yields only what is
    new, until the job ends."""
    found = _find_job(gl, project, job, ref)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    offset, first = 0, True
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if not first:  # the first status comes with _find_job
            with _calls(gl, f"reading job {found.id}", project):
                found = _project(gl, project).jobs.get(found.id)
        first = False
        # Status before trace: a job seen finished has its whole trace in the next read.
        done = not follow or found.status in JOB_DONE
        try:
            with _calls(gl, f"reading the log of job {found.id}", project,
                        not_found=f"job {found.id} in {project} has no log"):
                trace = found.trace()
        except CiNotFound:
            if done:
                raise
            trace = b""  # not started yet: its log appears once a runner takes it
        offset = min(offset, len(trace))
        text = decoder.decode(trace[offset:], final=done)
        offset = len(trace)
        if text:
            yield text
        if done:
            return
        if deadline is not None and time.monotonic() > deadline:
            raise CiTimeout(f"job {found.id} still {found.status} after {timeout:.0f}s")
        sleep(poll)


def trigger_pipeline(gl: GitLab, project: str, ref: str,
                     variables: dict[str, str] | None = None,
                     trigger_token: str | None = None) -> dict[str, Any]:
    """Start a pipeline on ``ref``: with the user's token (pipeline-create API), or with a
    trigger token (trigger API). Returns the new pipeline with its jobs."""
    variables = variables or {}
    proj = _project(gl, project)
    if trigger_token:
        gl.secrets = (*gl.secrets, trigger_token)
        try:
            with _calls(gl, f"triggering a pipeline on {project} ({ref})", project):
                created = proj.trigger_pipeline(ref, trigger_token, variables=variables)
        except (CiAuthError, CiNotFound):  # GitLab answers 404 to a wrong trigger token
            raise CiAuthError(f"GitLab refused the trigger token for {project}",
                              hint="create one under Settings > CI/CD > Pipeline trigger "
                              "tokens; pass it with --trigger-token or "
                              "$GITLAB_TRIGGER_TOKEN") from None
    else:
        with _calls(gl, f"creating a pipeline on {project} ({ref})", project):
            created = proj.pipelines.create({"ref": ref, "variables": [
                {"key": k, "value": v, "variable_type": "env_var"}
                for k, v in variables.items()]})
    return pipeline_details(gl, project, created.id)


def wait_pipeline(gl: GitLab, project: str, pipeline_id: int,
                  on_update: Callable[[dict[str, Any]], None] | None = None,
                  poll: float = 2.0, timeout: float = 3600.0,
                  sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Poll the pipeline until it ends (see PIPELINE_DONE); returns it as plain data.
    A failed pipeline is returned, not raised: the caller decides what failure means."""
    deadline = time.monotonic() + timeout
    while True:
        data = pipeline_details(gl, project, pipeline_id)
        if on_update is not None:
            on_update(data)
        if data["status"] in PIPELINE_DONE:
            return data
        if time.monotonic() > deadline:
            raise CiTimeout(f"pipeline {pipeline_id} of {project} still {data['status']} "
                            f"after {timeout:.0f}s", hint=f"follow it at {data['web_url']}")
        sleep(poll)
