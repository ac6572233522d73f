"""`mme-rep ci` and mmerep.gitlab_ci: python-gitlab over real HTTP to a fake GitLab.

The fake answers the v4 endpoints python-gitlab calls for us (project, pipelines, jobs,
traces, pipeline create, trigger) and checks the token like GitLab does. Pipelines and
jobs move through scripted states, one step per read, so following them is tested as it
happens against a real server.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from typer.testing import CliRunner

from mmerep import gitlab_ci
from mmerep.cli.ci import app
from testkit.scripted_http import QuietHandler, serving

TOKEN = "glpat-s3cr3t-t0ken-value"
WRONG = "glpat-wr0ng-t0ken-value"
TRIGGER = "glptt-trigger-s3cr3t"
PROJECT = "processors/sentinel3"
PROJECT_ID = 7
ENV_VARS = ("GITLAB_URL", "CI_SERVER_URL", "GITLAB_TOKEN", "GITLAB_PRIVATE_TOKEN",
            "CI_JOB_TOKEN", "CI_PROJECT_PATH", "CI_COMMIT_REF_NAME", "PYTHON_GITLAB_CFG",
            "GITLAB_TRIGGER_TOKEN")

# (pipeline status, {job name: (job status, failure_reason)}) per read of the pipeline.
PASSING = [("success", {"build-image": ("success", None), "scan": ("success", None)})]
FAILING_RUN = [
    ("pending", {"build-image": ("pending", None), "scan": ("created", None)}),
    ("running", {"build-image": ("running", None), "scan": ("created", None)}),
    ("running", {"build-image": ("success", None), "scan": ("running", None)}),
    ("failed", {"build-image": ("success", None), "scan": ("failed", "script_failure")}),
]
STAGES = {"build-image": "build", "scan": "test"}
# (job status, whole trace so far) per read of the job.
GROWING_TRACE = [("running", "Running with gitlab-runner 17.0\n"),
                 ("running", "Running with gitlab-runner 17.0\n$ buildah bud .\n"),
                 ("running", "Running with gitlab-runner 17.0\n$ buildah bud .\nSTEP 1/3 ✓\n"),
                 ("success", "Running with gitlab-runner 17.0\n$ buildah bud .\nSTEP 1/3 ✓\n"
                  "Job succeeded\n")]


class FakeGitLab:
    """State of the fake server: pipelines and jobs with scripted steps."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pipelines: dict[int, dict[str, Any]] = {}
        self.jobs: dict[int, dict[str, Any]] = {}
        self.seen: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self.next_run = FAILING_RUN
        self._next_job = 100

    def add_pipeline(self, pid: int, ref: str, steps: list[Any],
                     traces: dict[str, list[tuple[str, str]]] | None = None) -> dict[str, Any]:
        jobs = {}
        for name in steps[0][1]:
            self._next_job += 1
            jid = self._next_job
            jobs[name] = jid
            self.jobs[jid] = {"name": name, "pipeline": pid, "views": 0,
                              "trace": (traces or {}).get(name)}
        self.pipelines[pid] = {"id": pid, "ref": ref, "steps": steps, "views": 0, "step": 0,
                               "jobs": jobs}
        return self.pipelines[pid]

    def pipeline_json(self, p: dict[str, Any]) -> dict[str, Any]:
        status = p["steps"][p["step"]][0]
        done = status in gitlab_ci.PIPELINE_DONE
        return {"id": p["id"], "iid": p["id"], "project_id": PROJECT_ID, "status": status,
                "ref": p["ref"], "sha": f"{p['id']:040x}", "source": "push",
                "web_url": f"http://gitlab.test/{PROJECT}/-/pipelines/{p['id']}",
                "created_at": "2025-03-01T10:00:00.000Z", "updated_at": "2025-03-01T10:05:00Z",
                "started_at": "2025-03-01T10:00:05Z",
                "finished_at": "2025-03-01T10:05:00Z" if done else None,
                "duration": 295 if done else None, "queued_duration": 5}

    def job_json(self, jid: int) -> dict[str, Any]:
        job = self.jobs[jid]
        if job["trace"]:
            status, reason = job["trace"][min(max(job["views"], 1), len(job["trace"])) - 1][0], None
        else:
            p = self.pipelines[job["pipeline"]]
            status, reason = p["steps"][p["step"]][1][job["name"]]
        body = {"id": jid, "name": job["name"], "stage": STAGES.get(job["name"], "build"),
                "status": status, "allow_failure": False, "pipeline": {"id": job["pipeline"]},
                "duration": 61.5 if status in ("success", "failed") else None,
                "web_url": f"http://gitlab.test/{PROJECT}/-/jobs/{jid}",
                "started_at": None, "finished_at": None}
        if status == "failed":
            body["failure_reason"] = reason
        return body

    def trace(self, jid: int) -> str:
        job = self.jobs[jid]
        if job["trace"]:
            return job["trace"][min(max(job["views"], 1), len(job["trace"])) - 1][1]
        return f"log of {job['name']}\nERROR: it failed\n" if self.job_json(jid)[
            "status"] == "failed" else f"log of {job['name']}\n"

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        pid = max(self.pipelines, default=0) + 1
        return self.pipeline_json(self.add_pipeline(pid, body["ref"], self.next_run))


def _route(fake: FakeGitLab, method: str, parts: list[str], query: dict[str, list[str]],
           body: dict[str, Any]) -> tuple[int, Any]:
    """(status, JSON or text) for /api/v4/<parts>; parts are still URL-encoded."""
    if len(parts) < 2 or parts[0] != "projects":
        return 404, {"message": "404 Not Found"}
    if unquote(parts[1]) not in (PROJECT, str(PROJECT_ID)):
        return 404, {"message": "404 Project Not Found"}
    rest = parts[2:]
    if method == "GET" and not rest:
        return 200, {"id": PROJECT_ID, "path_with_namespace": PROJECT, "name": "sentinel3",
                     "default_branch": "main"}
    if method == "GET" and rest == ["pipelines"]:
        ref = query.get("ref", [None])[0]
        found = sorted((p for p in fake.pipelines.values() if ref in (None, p["ref"])),
                       key=lambda p: -p["id"])[:int(query.get("per_page", ["20"])[0])]
        return 200, [fake.pipeline_json(p) for p in found]
    if method == "GET" and len(rest) in (2, 3) and rest[0] == "pipelines":
        p = fake.pipelines.get(int(rest[1]))
        if p is None:
            return 404, {"message": "404 Not found"}
        if len(rest) == 2:  # each read of the pipeline moves it one step on
            p["step"] = min(p["views"], len(p["steps"]) - 1)
            p["views"] += 1
            return 200, fake.pipeline_json(p)
        return 200, [fake.job_json(j) for j in sorted(p["jobs"].values(), reverse=True)]
    if method == "GET" and len(rest) in (2, 3) and rest[0] == "jobs":
        jid = int(rest[1])
        if jid not in fake.jobs:
            return 404, {"message": "404 Not found"}
        if len(rest) == 2:
            fake.jobs[jid]["views"] += 1
            return 200, fake.job_json(jid)
        return 200, fake.trace(jid)
    if method == "POST" and rest == ["pipeline"]:
        return 201, fake.create(body)
    return 404, {"message": "404 Not Found"}


@pytest.fixture()
def fake() -> Iterator[tuple[str, FakeGitLab]]:
    state = FakeGitLab()

    class Handler(QuietHandler):
        def _answer(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else {}
            with state.lock:
                state.seen.append(f"{self.command} {url.path}")
                state.bodies.append(body)
                parts = url.path.removeprefix("/api/v4/").split("/")
                if parts[-2:] == ["trigger", "pipeline"]:
                    # The trigger API authenticates with the trigger token in the body.
                    status, answer = ((201, state.create(body)) if body.get("token") == TRIGGER
                                      else (404, {"message": "404 Not Found"}))
                elif self.headers.get("PRIVATE-TOKEN") != TOKEN:
                    status, answer = 401, {"message": "401 Unauthorized"}
                else:
                    status, answer = _route(state, self.command, parts, parse_qs(url.query),
                                            body)
            self.send_json(status, answer, content_type="text/plain" if isinstance(
                answer, str) else "application/json")

        do_GET = do_POST = _answer

    with serving(Handler) as url:
        yield url, state


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)


def gitlab_env(url: str, token: str = TOKEN) -> dict[str, str]:
    return {"GITLAB_URL": url, "GITLAB_TOKEN": token}


def invoke(*args: str, env: dict[str, str]) -> Any:
    return CliRunner().invoke(app, list(args), env=env)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- status ----------------------------------------------------------------------------

def test_status_of_a_passing_pipeline(fake) -> None:
    url, state = fake
    state.add_pipeline(11, "main", PASSING)
    state.add_pipeline(12, "main", PASSING)
    state.add_pipeline(13, "feature", FAILING_RUN)
    out = invoke("status", "--project", PROJECT, "--ref", "main", "-o", "json",
                 env=gitlab_env(url))
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["id"] == 12 and data["status"] == "success" and data["ref"] == "main"
    assert data["project"] == PROJECT and data["duration"] == 295
    assert [(j["name"], j["stage"], j["status"]) for j in data["jobs"]] == [
        ("build-image", "build", "success"), ("scan", "test", "success")]
    assert data["failed_jobs"] == []
    # The project path went URL-encoded, as GitLab wants it.
    assert "GET /api/v4/projects/processors%2Fsentinel3" in state.seen

    table = invoke("status", "--project", PROJECT, "--ref", "main", env=gitlab_env(url))
    assert table.exit_code == 0
    assert "pipeline #12 success" in table.stdout
    assert "build-image" in table.stdout and "scan" in table.stdout


def test_status_of_a_failing_pipeline_names_the_job_and_reason(fake) -> None:
    url, state = fake
    state.add_pipeline(21, "main", FAILING_RUN[-1:])
    out = invoke("status", "-p", PROJECT, "-r", "main", "-o", "json", env=gitlab_env(url))
    assert out.exit_code == 0, out.output  # reported as data, not as an error
    data = json.loads(out.stdout)
    assert data["status"] == "failed"
    assert data["failed_jobs"] == [{"id": data["jobs"][1]["id"], "name": "scan",
                                    "stage": "test", "failure_reason": "script_failure"}]
    table = invoke("status", "-p", PROJECT, "-r", "main", env=gitlab_env(url))
    assert "script_failure" in table.stdout and "failed" in table.stdout


def test_status_without_pipelines_and_with_an_unknown_project(fake) -> None:
    url, _ = fake
    out = invoke("status", "-p", PROJECT, "-r", "main", env=gitlab_env(url))
    assert isinstance(out.exception, gitlab_ci.CiNotFound)
    assert "no pipeline on ref 'main'" in str(out.exception)
    assert "mme-rep ci trigger" in (out.exception.hint or "")

    out = invoke("status", "-p", "nobody/nothing", "-r", "main", env=gitlab_env(url))
    assert isinstance(out.exception, gitlab_ci.CiNotFound)
    assert out.exception.message == f"GitLab project 'nobody/nothing' not found on {url}"


# --- trigger ---------------------------------------------------------------------------

def test_trigger_follows_a_failing_pipeline_and_exits_1(fake) -> None:
    url, state = fake
    out = invoke("trigger", "-p", PROJECT, "-r", "main", "--var", "SCAN=1", "--var",
                 "FLAVOURS=htcondor-batch", "--poll", "0", env=gitlab_env(url))
    assert out.exit_code == 1, out.output
    create = state.bodies[state.seen.index(f"POST /api/v4/projects/{PROJECT_ID}/pipeline")]
    assert create["ref"] == "main"
    assert {v["key"]: v["value"] for v in create["variables"]} == {
        "SCAN": "1", "FLAVOURS": "htcondor-batch"}
    # Without a terminal the live view prints one line per change, in order.
    assert "running: build-image running, scan created" in out.stderr
    assert "running: build-image success, scan running" in out.stderr
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1
    assert "pipeline #1 failed: job scan (stage test): script_failure" in errors[0]
    assert "mme-rep ci logs" in errors[0]
    assert "pipeline #1 failed" in out.stdout  # the final table


def test_trigger_of_a_passing_pipeline_with_a_trigger_token(fake) -> None:
    url, state = fake
    state.next_run = [("running", {"build-image": ("running", None)}),
                      ("success", {"build-image": ("success", None)})]
    out = invoke("trigger", "-p", PROJECT, "-r", "v0.1.0", "--var", "A=b", "--poll", "0",
                 "-o", "json", env={**gitlab_env(url), "GITLAB_TRIGGER_TOKEN": TRIGGER})
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["status"] == "success"
    trigger = state.bodies[state.seen.index(
        f"POST /api/v4/projects/{PROJECT_ID}/trigger/pipeline")]
    assert trigger["ref"] == "v0.1.0" and trigger["variables"] == {"A": "b"}

    wrong = "glptt-wr0ng-trigger"
    refused = invoke("trigger", "-p", PROJECT, "-r", "main", "--trigger-token", wrong,
                     env=gitlab_env(url))
    assert isinstance(refused.exception, gitlab_ci.CiAuthError)
    assert "refused the trigger token" in str(refused.exception)
    assert wrong not in str(refused.exception) and wrong not in refused.output


def test_wait_pipeline_times_out_with_a_clear_message(fake) -> None:
    url, state = fake
    state.add_pipeline(5, "main", [("running", {"build-image": ("running", None)})])
    gl = gitlab_ci.connect(url, TOKEN)
    seen: list[str] = []
    with pytest.raises(gitlab_ci.CiTimeout, match=r"pipeline 5 of .* still running after 0s"):
        gitlab_ci.wait_pipeline(gl, PROJECT, 5, lambda d: seen.append(d["status"]),
                                poll=0, timeout=0.0, sleep=lambda s: None)
    assert seen == ["running"]


def test_bad_variable_is_a_usage_error(fake) -> None:
    url, _ = fake
    out = invoke("trigger", "-p", PROJECT, "-r", "main", "--var", "NOEQUALS",
                 env=gitlab_env(url))
    assert out.exception is not None and getattr(out.exception, "exit_code", 0) == 2
    assert "--var 'NOEQUALS' is not KEY=VALUE" in str(out.exception)


# --- logs ------------------------------------------------------------------------------

def test_log_follow_streams_only_what_is_new_until_the_job_ends(fake) -> None:
    url, state = fake
    p = state.add_pipeline(30, "main", [("running", {"build-image": ("running", None)})],
                           traces={"build-image": GROWING_TRACE})
    jid = p["jobs"]["build-image"]
    gl = gitlab_ci.connect(url, TOKEN)
    slept: list[float] = []
    chunks = list(gitlab_ci.job_log(gl, PROJECT, jid, follow=True, poll=0.25,
                                    sleep=slept.append))
    assert chunks == ["Running with gitlab-runner 17.0\n", "$ buildah bud .\n",
                      "STEP 1/3 ✓\n", "Job succeeded\n"]
    assert slept == [0.25, 0.25, 0.25]  # three polls while running, none after the end
    assert state.seen.count(f"GET /api/v4/projects/{PROJECT_ID}/jobs/{jid}/trace") == 4


def test_logs_command_by_name_and_by_id(fake) -> None:
    url, state = fake
    p = state.add_pipeline(31, "main", [("running", {"build-image": ("running", None)})],
                           traces={"build-image": GROWING_TRACE})
    out = invoke("logs", "build-image", "--follow", "-p", PROJECT, "-r", "main", "--poll",
                 "0", env=gitlab_env(url))
    assert out.exit_code == 0, out.output
    assert out.stdout == GROWING_TRACE[-1][1]

    once = invoke("logs", str(p["jobs"]["build-image"]), "-p", PROJECT, env=gitlab_env(url))
    assert once.exit_code == 0 and once.stdout == GROWING_TRACE[-1][1]

    missing = invoke("logs", "deploy", "-p", PROJECT, "-r", "main", env=gitlab_env(url))
    assert isinstance(missing.exception, gitlab_ci.CiNotFound)
    assert "no job 'deploy' in pipeline 31" in str(missing.exception)
    assert "build-image" in (missing.exception.hint or "")


# --- connection, token, errors -----------------------------------------------------------

def test_refused_token_is_one_line_without_the_token(fake) -> None:
    url, state = fake
    state.add_pipeline(1, "main", PASSING)
    out = invoke("status", "-p", PROJECT, "-r", "main", env=gitlab_env(url, WRONG))
    assert isinstance(out.exception, gitlab_ci.CiAuthError)
    text = str(out.exception)
    assert text.startswith("GitLab refused the token ($GITLAB_TOKEN; 401 Unauthorized")
    assert "GITLAB_TOKEN" in (out.exception.hint or "")
    assert WRONG not in text and WRONG not in out.output and TOKEN not in text


def test_no_token_and_credentials_in_the_url_are_not_shown(fake) -> None:
    url, _ = fake
    with pytest.raises(gitlab_ci.CiAuthError, match=r"wants a token .* and none is set"):
        gitlab_ci.latest_pipeline(gitlab_ci.connect(url), PROJECT, "main")
    port = closed_port()
    gl = gitlab_ci.connect(f"http://me:{WRONG}@127.0.0.1:{port}", TOKEN)
    with pytest.raises(gitlab_ci.CiUnreachable) as info:
        gitlab_ci.latest_pipeline(gl, PROJECT, "main")
    assert f"GitLab at http://127.0.0.1:{port} is unreachable" in str(info.value)
    assert WRONG not in str(info.value)


def test_unreachable_server_names_the_url() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    gl = gitlab_ci.connect(url, TOKEN)
    with pytest.raises(gitlab_ci.CiUnreachable) as info:
        gitlab_ci.latest_pipeline(gl, PROJECT, "main")
    assert info.value.message == (f"GitLab at {url} is unreachable (reading project "
                                  f"{PROJECT})")
    assert TOKEN not in str(info.value)


def test_connection_precedence_env_and_config_file(fake, tmp_path, monkeypatch) -> None:
    url, state = fake
    state.add_pipeline(3, "main", PASSING)
    cfg = tmp_path / "python-gitlab.cfg"
    cfg.write_text(f"[global]\ndefault = fake\n\n[fake]\nurl = {url}\n"
                   f"private_token = {TOKEN}\n\n[other]\nurl = http://127.0.0.1:1\n"
                   f"private_token = {WRONG}\n")
    monkeypatch.setenv("PYTHON_GITLAB_CFG", str(cfg))
    gl = gitlab_ci.connect()
    assert gl.url == url and "python-gitlab config" in gl.token_source
    assert gitlab_ci.latest_pipeline(gl, PROJECT, "main")["id"] == 3
    # The environment's token beats the file's; the file still gives the URL.
    monkeypatch.setenv("GITLAB_TOKEN", WRONG)
    with pytest.raises(gitlab_ci.CiAuthError, match=r"\$GITLAB_TOKEN"):
        gitlab_ci.latest_pipeline(gitlab_ci.connect(), PROJECT, "main")
    # Explicit arguments beat both.
    assert gitlab_ci.latest_pipeline(gitlab_ci.connect(url, TOKEN), PROJECT, "main")["id"] == 3
    # A job token is sent as JOB-TOKEN, which this fake (like GitLab's pipeline API) refuses.
    monkeypatch.delenv("GITLAB_TOKEN")
    monkeypatch.setenv("GITLAB_URL", url)
    monkeypatch.setenv("CI_JOB_TOKEN", "job-" + TOKEN)
    gl = gitlab_ci.connect()
    assert gl.api.job_token == "job-" + TOKEN and gl.api.private_token is None
    assert "job token" in gl.token_source
    monkeypatch.setenv("PYTHON_GITLAB_CFG", str(tmp_path / "missing.cfg"))
    monkeypatch.delenv("GITLAB_URL")
    with pytest.raises(gitlab_ci.CiConfigError, match="no GitLab server configured"):
        gitlab_ci.connect()
    monkeypatch.setenv("PYTHON_GITLAB_CFG", str(cfg))
    with pytest.raises(gitlab_ci.CiConfigError, match="not usable"):
        gitlab_ci.connect(config_section="absent")


@pytest.mark.parametrize(("remote", "path"), [
    ("git@gitlab.example.org:processors/sentinel3.git", "processors/sentinel3"),
    ("https://gitlab.example.org/eo/processors/sentinel3.git", "eo/processors/sentinel3"),
    ("https://oauth2:abc@gitlab.example.org/processors/sentinel3", "processors/sentinel3"),
    ("ssh://git@gitlab.example.org:2222/processors/sentinel3.git/", "processors/sentinel3"),
    ("/srv/git/sentinel3.git", None),
    ("https://gitlab.example.org/lonely", None),
])
def test_project_from_remote(remote: str, path: str | None) -> None:
    assert gitlab_ci.project_from_remote(remote) == path


def test_project_and_ref_from_ci_variables(monkeypatch) -> None:
    monkeypatch.setenv("CI_PROJECT_PATH", "eo/s3")
    monkeypatch.setenv("CI_COMMIT_REF_NAME", "v1.2.0")
    assert gitlab_ci.resolve_project() == "eo/s3"
    assert gitlab_ci.resolve_ref() == "v1.2.0"
    assert gitlab_ci.resolve_project("given/one") == "given/one"
    assert gitlab_ci.resolve_ref("given") == "given"


def test_project_and_ref_from_the_git_checkout(tmp_path, monkeypatch) -> None:
    # A scratch repository of its own: nothing here touches the project's checkout.
    subprocess.run(["git", "init", "-q", "-b", "feature/s3", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "remote", "add", "origin",
                    "git@gitlab.example.org:eo/processors/s3.git"], check=True)
    monkeypatch.chdir(tmp_path)
    assert gitlab_ci.resolve_project() == "eo/processors/s3"
    assert gitlab_ci.resolve_ref() == "feature/s3"
    monkeypatch.chdir(tmp_path.parent)  # not a checkout
    with pytest.raises(gitlab_ci.UsageError, match="pass --project"):
        gitlab_ci.resolve_project()
    with pytest.raises(gitlab_ci.UsageError) as info:
        gitlab_ci.resolve_ref()
    assert "--ref" in (info.value.hint or "")


# --- the installed command line, as a user runs it ----------------------------------------

def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    return subprocess.run([sys.executable, "-m", "mmerep", *args], capture_output=True,
                          text=True, env={**base, **env}, timeout=60)


def test_cli_status_and_refused_token_through_python_m(fake) -> None:
    url, state = fake
    state.add_pipeline(8, "main", FAILING_RUN[-1:])
    ok = run_cli("ci", "status", "--project", PROJECT, "--ref", "main", "-o", "json",
                 env=gitlab_env(url))
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["failed_jobs"][0]["failure_reason"] == "script_failure"

    refused = run_cli("ci", "status", "--project", PROJECT, "--ref", "main",
                      env=gitlab_env(url, WRONG))
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0].startswith("error: GitLab refused the token ($GITLAB_TOKEN")
    assert WRONG not in refused.stderr and WRONG not in refused.stdout
    assert "Traceback" not in refused.stderr

    down = run_cli("ci", "status", "--project", PROJECT, "--ref", "main",
                   env=gitlab_env(f"http://127.0.0.1:{closed_port()}"))
    assert down.returncode == 1
    assert "is unreachable" in down.stderr and "Traceback" not in down.stderr
