"""The web console on the local cluster: plain HTTP for its security, headless Chromium
(Debian's chromium and chromium-driver, through Selenium) for what a user sees and does.

Screenshots go to the test's tmp dir (kept by pytest under its basetemp).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mmerep import environments
from mmerep.cluster import local, sample
from mmerep.console import Console, start_in_thread
from mmerep.console.server import Running
from mmerep.kube import Kube
from mmerep.profiles import get_profile
from testkit.browser import headless_chromium
from tests.cluster.test_monitor_prometheus import prometheus  # noqa: F401 - a fixture

pytestmark = pytest.mark.cluster
WAIT = 60.0  # a loaded machine: wait on conditions, generously


def wait_until(check: Callable[[], Any], timeout: float = WAIT, what: str = "condition") -> Any:
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def env_ns(cluster: local.ClusterInfo) -> Iterator[str]:
    """A namespace with two environments: htcondor-batch (1 executor) and interactive."""
    kube = local.connect()
    ns = f"console-{uuid.uuid4().hex[:6]}"
    profile = dataclasses.replace(get_profile("local"), namespace=ns)
    for flavour in ("htcondor-batch", "interactive"):
        sample.push_sample_image(cluster.registry, repo=f"mme-rep/{flavour}/sentinel3",
                                 tag="v0.1.0")
    environments.deploy(kube, environments.render_environment(
        profile, "htcondor-batch", "sentinel3:v0.1.0", params={"executors": "1"}), timeout=240)
    environments.deploy(kube, environments.render_environment(
        profile, "interactive", "sentinel3:v0.1.0", name="shell"), timeout=240)
    yield ns
    kube.delete("v1", "Namespace", ns, propagation="Background")


def start(kube: Kube, ns: str) -> Running:
    return start_in_thread(Console(kube, ns, profile=dataclasses.replace(
        get_profile("local"), namespace=ns, max_executors=50)))


@pytest.fixture()
def console(env_ns: str) -> Iterator[Running]:
    running = start(local.connect(), env_ns)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with headless_chromium(WAIT) as driver:
        yield driver


def executors(kube: Kube, ns: str) -> int:
    dep = kube.get("apps/v1", "Deployment", "sentinel3-executor", ns)
    assert dep is not None
    return int(dep["spec"]["replicas"])


def text_of(browser: Any, css: str) -> str:
    """The element's text, read in the page at once (live updates replace elements)."""
    return str(browser.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';", css))


def live(browser: Any) -> bool:
    return bool(browser.execute_script("return document.body.dataset.live === '1'"))


# -- plain HTTP: nothing without the token, no action without the CSRF token -----------

class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def http(url: str, *, cookie: str | None = None, form: dict[str, str] | None = None
         ) -> tuple[int, dict[str, str], str]:
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    req = urllib.request.Request(url, data=data)
    if cookie:
        req.add_header("Cookie", cookie)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=WAIT) as resp:
            return resp.status, lower(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, lower(err.headers), err.read().decode()


def lower(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def test_nothing_is_served_without_the_token_and_no_action_without_csrf(
        console: Running, env_ns: str) -> None:
    kube = local.connect()
    base = console.base
    for path in ("/", "/static/console.js", "/api/environments", "/events",
                 f"/env/{env_ns}/sentinel3", f"/api/plots/{env_ns}/sentinel3"):
        status, _, body = http(base + path)
        assert status == 403, path
        assert "token" in body
    assert http(base + "/?token=wrong")[0] == 403

    status, headers, _ = http(console.url)  # the address the command prints
    assert status == 303 and headers["location"] == "/"  # the token leaves the address bar
    cookie = headers["set-cookie"].split(";")[0]
    assert "HttpOnly" in headers["set-cookie"] and "SameSite=strict" in headers["set-cookie"]
    status, headers, body = http(base + "/", cookie=cookie)
    assert status == 200 and "sentinel3" in body
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "<script>" not in body and " style=" not in body  # nothing inline
    assert headers["referrer-policy"] == "no-referrer"

    scale = f"{base}/env/{env_ns}/sentinel3/scale"
    before = executors(kube, env_ns)
    for form in ({"executors": "4"}, {"executors": "4", "csrf": "forged"}):
        status, _, body = http(scale, cookie=cookie, form=form)
        assert status == 403 and "CSRF" in body
    status, _, _ = http(scale, form={"executors": "4", "csrf": console.console.csrf})
    assert status == 403  # the CSRF token alone is not enough either
    assert executors(kube, env_ns) == before

    # No secret is rendered: the pool password appears in no page.
    secret = kube.get("v1", "Secret", "sentinel3-pool", env_ns)
    assert secret is not None
    import base64

    password = base64.b64decode(secret["data"]["password"]).decode()
    _, _, page = http(f"{base}/env/{env_ns}/sentinel3", cookie=cookie)
    assert "sentinel3-executor" in page and password not in page


# -- in the browser ---------------------------------------------------------------------

def env_list_json(ns: str) -> list[dict[str, Any]]:
    out = subprocess.run([sys.executable, "-m", "mmerep", "env", "list", "-A", "-o", "json"],
                         capture_output=True, text=True, timeout=120, check=True)
    return [r for r in json.loads(out.stdout) if r["namespace"] == ns]


def test_the_environments_table_matches_env_list(console: Running, env_ns: str, browser: Any,
                                                tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.get(console.url)
    wait_until(lambda: live(browser), what="the page is live")
    expected = env_list_json(env_ns)
    assert {r["name"] for r in expected} == {"sentinel3", "shell"}

    def shown() -> list[dict[str, str]]:
        rows = []
        for tr in browser.find_elements(By.CSS_SELECTOR, "#envs tbody tr"):
            cells = {td.get_attribute("class"): td for td in tr.find_elements(By.TAG_NAME, "td")}
            rows.append({"namespace": cells["namespace"].text, "name": cells["name"].text,
                         "template": cells["template"].text,
                         "revision": int(cells["revision"].text),
                         "status": cells["status"].text,
                         "image": cells["image"].find_element(By.TAG_NAME, "span")
                         .get_attribute("title"),
                         "updated": cells["updated"].text, "pods": cells["pods"].text,
                         "state": cells["state"].text})
        return rows

    rows = shown()
    assert [{k: r[k] for k in expected[0]} for r in rows] == expected
    by_name = {r["name"]: r for r in rows}
    assert by_name["shell"]["pods"] == "1/1" and by_name["shell"]["state"] == "Active"
    browser.save_screenshot(str(tmp_path / "environments.png"))


def test_scale_from_the_page_and_the_page_follows_the_api(
        console: Running, env_ns: str, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    kube = local.connect()
    page = console.url.replace("/?", f"/env/{env_ns}/sentinel3?")
    browser.get(page)
    wait_until(lambda: live(browser), what="the page is live")
    field = browser.find_element(By.ID, "executors")
    field.clear()
    field.send_keys("51")  # the profile's max_executors is 50 (start())
    browser.find_element(By.ID, "scale").click()
    wait_until(lambda: "exceed the profile's limit of 50" in text_of(browser, "#api-message"),
               what="the limit is explained")
    assert executors(kube, env_ns) == 1

    browser.get(page)
    wait_until(lambda: live(browser), what="the page is live")
    field = browser.find_element(By.ID, "executors")
    field.clear()
    field.send_keys("3")
    browser.find_element(By.ID, "scale").click()
    wait_until(lambda: "scaled sentinel3's executors from 1 to 3" in text_of(browser, "#message"),
               what="the page confirms the scale")
    assert executors(kube, env_ns) == 3  # the Deployment changed
    desired = 'span.desired[data-w="sentinel3-executor"]'
    ready = 'span.ready[data-w="sentinel3-executor"]'
    wait_until(lambda: live(browser) and text_of(browser, desired) == "3",
               what="the page shows 3 desired")
    wait_until(lambda: text_of(browser, ready) == "3", what="the page shows 3 ready")

    # A change made elsewhere (kubectl, the autoscaler) shows up live, without a reload.
    kube.scale("Deployment", "sentinel3-executor", 2, namespace=env_ns)
    wait_until(lambda: text_of(browser, desired) == "2", timeout=10,
               what="the page follows a change made through the API")

    # The plot: desired and ready executors over time, drawn as SVG.
    def plotted() -> dict[str, list[str]]:  # read at once: each update redraws the plot
        return dict(browser.execute_script(
            "const out = {};"
            "for (const p of document.querySelectorAll('svg#plot path.series'))"
            "  out[p.classList[1]] = [p.dataset.last, p.getAttribute('d')];"
            "return out;"))

    wait_until(lambda: plotted().get("desired", [""])[0] == "2",
               what="the plot shows 2 desired")
    _, d = plotted()["desired"]
    assert d.count("L") >= 5  # steps: 1, then 3, then 2 executors
    browser.save_screenshot(str(tmp_path / "environment.png"))

    browser.get(console.base + "/")
    wait_until(lambda: text_of(browser, 'tr[data-env$="/sentinel3"] td.pods').startswith(
        f"{2 + 1 + 1 + 4}/"), what="the table counts 2 executors")


def test_the_queue_plot_follows_what_the_autoscaler_records(
        console: Running, env_ns: str, browser: Any, tmp_path: Path) -> None:
    """The autoscaler loop saves what it observed each interval; written here with its own
    function (no HTCondor pool runs in the simulated pods)."""
    import time

    from mmerep.scaler.state import read_state, save_progress

    kube = local.connect()
    browser.get(console.url.replace("/?", f"/env/{env_ns}/sentinel3?"))
    wait_until(lambda: live(browser), what="the page is live")
    now = time.time()
    for ago, idle, running in ((20, 7, 3), (10, 4, 6), (0, 2, 8)):
        state = read_state(kube, env_ns, "sentinel3")
        state.observed = {"time": now - ago, "idle_jobs": idle, "running_jobs": running,
                          "executors": 3, "busy": min(running, 3), "replicas": 3, "wanted": 3}
        save_progress(kube, env_ns, "sentinel3", state)

    def plotted() -> dict[str, list[str]]:
        return dict(browser.execute_script(
            "const out = {};"
            "for (const p of document.querySelectorAll('svg#pool-plot path.series'))"
            "  out[p.classList[1]] = [p.dataset.last, p.getAttribute('d')];"
            "return out;"))

    wait_until(lambda: plotted().get("idle", [""])[0] == "2" and
               plotted().get("running", [""])[0] == "8", what="the queue plot's last values")
    path = plotted()["idle"][1]  # three recorded intervals: three levels, stepping down
    assert len({seg.split()[1] for seg in path[1:].split(" L")}) == 3, path
    browser.save_screenshot(str(tmp_path / "queue.png"))


def test_a_user_rbac_forbids_to_scale_sees_why_and_nothing_changes(
        env_ns: str, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    admin = local.connect()
    admin.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                 "metadata": {"name": "viewer", "namespace": env_ns}})
    admin.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                 "metadata": {"name": "viewer-view", "namespace": env_ns},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                             "name": "view"},
                 "subjects": [{"kind": "ServiceAccount", "name": "viewer",
                               "namespace": env_ns}]})
    token = admin.request(
        "POST", f"/api/v1/namespaces/{env_ns}/serviceaccounts/viewer/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
              "spec": {"expirationSeconds": 3600}})["status"]["token"]
    cfg = yaml.safe_load(local.kubeconfig_path().read_text())
    cfg["users"] = [{"name": "viewer", "user": {"token": token}}]
    cfg["contexts"][0]["context"]["user"] = "viewer"
    path = tmp_path / "viewer.kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    viewer = Kube.from_kubeconfig(path, local.CONTEXT, namespace=env_ns)

    running = start(viewer, env_ns)
    try:
        before = executors(admin, env_ns)
        browser.get(running.url.replace("/?", f"/env/{env_ns}/sentinel3?"))
        wait_until(lambda: live(browser), what="the page is live")  # viewing is allowed
        field = browser.find_element(By.ID, "executors")
        field.clear()
        field.send_keys(str(before + 2))
        browser.find_element(By.ID, "scale").click()
        message = wait_until(lambda: text_of(browser, "#api-message"),
                             what="the API server's message")
        assert "Not allowed" in text_of(browser, "h1")
        # The API server's refusal with the user's identity: the scale's lock (a Lease,
        # as the CLI takes it) or the scale itself, whichever RBAC stops first.
        assert "is forbidden" in message and \
            f'User "system:serviceaccount:{env_ns}:viewer" cannot ' in message, message
        browser.save_screenshot(str(tmp_path / "forbidden.png"))
        assert executors(admin, env_ns) == before
    finally:
        running.stop()


def test_the_command_prints_an_address_that_serves_only_with_its_token(
        cluster: local.ClusterInfo, tmp_path: Path) -> None:
    import re

    proc = subprocess.Popen([sys.executable, "-m", "mmerep", "console", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"(http://127\.0\.0\.1:(\d+)/\?token=\S+)", line)
        assert found, line
        url, port = found.group(1), found.group(2)
        assert "namespace mmerep" in line
        assert http(f"http://127.0.0.1:{port}/")[0] == 403
        status, headers, _ = http(url)
        assert status == 303
        status, _, body = http(f"http://127.0.0.1:{port}/",
                               cookie=headers["set-cookie"].split(";")[0])
        assert status == 200 and "Environments in namespace mmerep" in body
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode in (0, -15, 143)  # 143: the CLI's exit on SIGTERM (128 + 15)


def test_vscale_from_the_page_rolls_the_executors(
        console: Running, env_ns: str, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    kube = local.connect()
    browser.get(console.url.replace("/?", f"/env/{env_ns}/sentinel3?"))
    wait_until(lambda: live(browser), what="the page is live")
    browser.find_element(By.ID, "vcpu").send_keys("300m")
    browser.find_element(By.ID, "vmemory").send_keys("700Mi")
    browser.find_element(By.ID, "vscale").click()
    wait_until(lambda: "rolling" in text_of(browser, "#message"), what="the roll starts")
    wait_until(lambda: ": done, revision" in text_of(browser, "#task"), timeout=300,
               what="the page shows the roll's end")
    dep = kube.get("apps/v1", "Deployment", "sentinel3-executor", env_ns)
    assert dep is not None
    requests = dep["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    assert (requests["cpu"], requests["memory"]) == ("300m", "700Mi")
    browser.save_screenshot(str(tmp_path / "vscale.png"))


def test_the_autoscaler_is_switched_from_the_page(
        console: Running, env_ns: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from mmerep.scaler.state import read_state

    kube = local.connect()
    browser.get(console.url.replace("/?", f"/env/{env_ns}/sentinel3?"))
    wait_until(lambda: live(browser), what="the page is live")
    Select(browser.find_element(By.ID, "daemon")).select_by_value("on")
    for field, value in (("dmin", "1"), ("dmax", "4")):
        browser.find_element(By.ID, field).clear()
        browser.find_element(By.ID, field).send_keys(value)
    browser.find_element(By.ID, "set-daemon").click()
    wait_until(lambda: "autoscaler of sentinel3: on (min 1, max 4)" in text_of(
        browser, "#message"), what="the page confirms")
    assert "on, between 1 and 4 executors" in text_of(browser, "#autoscaler")
    state = read_state(kube, env_ns, "sentinel3")
    assert (state.daemon, state.minimum, state.maximum) == (True, 1, 4)

    Select(browser.find_element(By.ID, "daemon")).select_by_value("off")
    browser.find_element(By.ID, "dmax").clear()
    browser.find_element(By.ID, "dmax").send_keys("60")  # above the profile's 50
    browser.find_element(By.ID, "set-daemon").click()
    wait_until(lambda: "exceeds the profile's limit of 50" in text_of(browser, "#api-message"),
               what="the limit is explained")
    assert read_state(kube, env_ns, "sentinel3").daemon is True  # nothing changed

    browser.get(console.url.replace("/?", f"/env/{env_ns}/sentinel3?"))
    wait_until(lambda: live(browser), what="the page is live")
    Select(browser.find_element(By.ID, "daemon")).select_by_value("off")
    browser.find_element(By.ID, "set-daemon").click()
    wait_until(lambda: "autoscaler of sentinel3: off" in text_of(browser, "#message"),
               what="the page confirms")
    assert read_state(kube, env_ns, "sentinel3").daemon is False


def test_repair_from_the_page_puts_back_what_was_deleted(
        console: Running, env_ns: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    kube = local.connect()
    kube.delete("v1", "Service", "sentinel3-collector", env_ns)
    browser.get(console.url.replace("/?", f"/env/{env_ns}/sentinel3?"))
    wait_until(lambda: live(browser), what="the page is live")
    browser.find_element(By.ID, "repair").click()
    wait_until(lambda: "re-created Service/sentinel3-collector" in text_of(browser, "#message"),
               what="the page says what the repair did")
    assert kube.get("v1", "Service", "sentinel3-collector", env_ns) is not None


# -- the monitor's plots, the table's columns, rollback ----------------------------------

@dataclasses.dataclass
class Monitored:
    port: int  # the monitor's exporter on 127.0.0.1
    pod: str  # the scheduler pod it stands for


@pytest.fixture()
def monitored(env_ns: str, tmp_path: Path) -> Iterator[Monitored]:
    """The real monitor of `sentinel3` (an in-memory HTCondor pool: no HTCondor runs in the
    simulated pods) with its exporter on loopback, reading a real synclocal daemon that
    copies 2 MB from the bulk tier every second; six jobs run, each using another share
    of its CPU."""
    import os
    import threading

    from prometheus_client import start_http_server

    from mmerep.condor import JobState, MemoryPool
    from mmerep.console.metrics import scheduler_pod
    from mmerep.monitor.loop import Monitor
    from mmerep.synclocal.daemon import Daemon
    from mmerep.synclocal.layout import Layout
    from tests.cluster.test_monitor_prometheus import free_port

    kube = local.connect()
    bulk = tmp_path / "bulk" / "olci"
    bulk.mkdir(parents=True)
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(f"datasets: [{{name: olci, paths: [{bulk}]}}]\n")
    daemon = Daemon(Layout(tmp_path / "ssd"), manifest)
    synclocal_port = free_port()
    daemon.metrics.serve(synclocal_port, addr="127.0.0.1")
    pool = MemoryPool()
    for i in range(3):
        pool.add_executor(f"sentinel3-executor-{i}", cpus=2)
    jobs = pool.submit(6)
    pool.schedule()
    monitor = Monitor(kube, env_ns, "sentinel3", pool, interval=1, executor_grace=1e9,
                      synclocal_urls=lambda: [f"http://127.0.0.1:{synclocal_port}/metrics"])
    server, _ = start_http_server(free_port(), addr="127.0.0.1",
                                  registry=monitor.metrics.registry)
    stop = threading.Event()

    def progress() -> None:
        n = 0
        while not stop.wait(0.5):
            for i, job in enumerate(jobs):
                sample = next(j for j in pool.jobs() if j.job_id == job)
                if sample.status == JobState.RUNNING:
                    pool.update(job, wall_s=sample.wall_s + 0.5,
                                cpu_user_s=sample.cpu_user_s + 0.08 * (i + 1))
            n += 1
            if n % 2 == 0:
                (bulk / f"granule-{n}.nc").write_bytes(os.urandom(2 * 1024 * 1024))
                daemon.run_pass()

    threads = [threading.Thread(target=progress, daemon=True),
               threading.Thread(target=monitor.run, daemon=True)]
    for t in threads:
        t.start()
    try:
        yield Monitored(server.server_address[1], scheduler_pod(kube, env_ns, "sentinel3"))
    finally:
        stop.set()
        monitor.stop.set()
        for t in threads:
            t.join(10)
        server.shutdown()
        server.server_close()


def plot_lines(browser: Any, svg_id: str) -> dict[str, dict[str, float]]:
    """Each line of a monitor plot: its number of points, last and largest value."""
    return dict(browser.execute_script(
        "const out = {};"
        "for (const p of document.querySelectorAll('svg#' + arguments[0] + ' path.series')) {"
        "  const ys = p.getAttribute('d').split(/[ML]/).filter(s => s.trim())"
        "    .map(s => Number(s.trim().split(' ')[1]));"
        "  out[p.dataset.label] = {points: Number(p.dataset.points),"
        "                          last: Number(p.dataset.last), top: Math.min(...ys)};"
        "}"
        "return out;", svg_id))


def jobs_plotted(lines: dict[str, dict[str, float]], points: int) -> bool:
    jobs = [v for k, v in lines.items() if k.startswith("job ")]
    return len(jobs) == 6 and all(v["points"] >= points for v in jobs) and "mean" in lines


@pytest.fixture()
def scaler_exporter(env_ns: str) -> Iterator[int]:
    """The real autoscaler of `sentinel3`, off (as it runs in the scheduler pod until
    someone turns it on), its exporter on loopback: it still exports the executors. Its pool
    (in memory) knows the executor pods, one of them running a job."""
    import threading

    from prometheus_client import start_http_server

    from mmerep.condor import MemoryPool
    from mmerep.scaler.autoscaler import Autoscaler
    from mmerep.scaler.state import ScalerState, executor_selector, save_settings
    from tests.cluster.test_monitor_prometheus import free_port

    kube = local.connect()
    save_settings(kube, env_ns, "sentinel3", ScalerState(daemon=False))
    pool = MemoryPool()
    pool.set_executors(sorted(p["metadata"]["name"] for p in kube.list_objects(
        "v1", "Pod", env_ns, label_selector=executor_selector("sentinel3"))
        if not p["metadata"].get("deletionTimestamp")), cpus=1, memory_mb=128)
    pool.submit(1, cpus=1, memory_mb=100)
    assert pool.schedule() == 1
    auto = Autoscaler(kube, env_ns, "sentinel3", pool, interval=1)
    server, _ = start_http_server(free_port(), addr="127.0.0.1", registry=auto.metrics.registry)
    thread = threading.Thread(target=auto.run, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        auto.stop.set()
        thread.join(10)
        server.shutdown()
        server.server_close()


def test_the_monitor_plots_come_from_prometheus_when_the_profile_names_one(
        env_ns: str, browser: Any, monitored: Monitored, scaler_exporter: int,
        tmp_path: Path, prometheus: tuple[str, Path]) -> None:  # noqa: F811 - the fixture
    """Debian's Prometheus scrapes the monitor's and the autoscaler's exporters (labelled as
    a PodMonitor would label the scheduler pod); the page draws its query_range answers,
    with the history Prometheus kept from before the console started."""
    import time

    from tests.cluster.test_monitor_prometheus import wait_for

    base, targets = prometheus
    targets.write_text(json.dumps([{"targets": [f"127.0.0.1:{monitored.port}",
                                                f"127.0.0.1:{scaler_exporter}"],
                                    "labels": {"namespace": env_ns, "pod": monitored.pod}}]))
    assert wait_for(base, f'mmerep_monitor_datalake_read_bytes_per_second{{namespace="{env_ns}"}}'
                    " > 0", 90), "Prometheus has no data-lake reads"
    assert wait_for(base, "count_over_time(mmerep_scaler_executors_current"
                    f'{{namespace="{env_ns}"}}[5m]) >= 15', 90), "Prometheus has no executors"
    kube = local.connect()
    before = executors(kube, env_ns)
    kube.scale("Deployment", "sentinel3-executor", before + 1, namespace=env_ns)
    try:
        assert wait_for(base, f'mmerep_scaler_executors_ready{{namespace="{env_ns}"}} == '
                        f"{before + 1}", 90), "Prometheus did not see the scale"
        started = time.time()
        check_plots_from_prometheus(base, env_ns, browser, tmp_path, before + 1, started)
    finally:
        kube.scale("Deployment", "sentinel3-executor", before, namespace=env_ns)


def check_plots_from_prometheus(base: str, env_ns: str, browser: Any, tmp_path: Path,
                                replicas: int, started: float) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    kube = local.connect()
    running = start_in_thread(Console(kube, env_ns, profile=dataclasses.replace(
        get_profile("local"), namespace=env_ns, max_executors=50, prometheus=base)))
    try:
        browser.get(running.url.replace("/?", f"/env/{env_ns}/sentinel3?"))
        wait_until(lambda: live(browser), what="the page is live")
        assert "from Prometheus" in text_of(browser, "main")
        Select(browser.find_element(By.ID, "range")).select_by_value("15m")
        # Each of the six jobs a line of several points (Prometheus' history), at its own
        # utilisation: 0.16 .. 0.96 CPU s per wall s.
        wait_until(lambda: jobs_plotted(plot_lines(browser, "cpu-plot"), 3), timeout=90,
                   what="six job lines with history from Prometheus")
        cpu = plot_lines(browser, "cpu-plot")
        lasts = sorted(round(v["last"], 2) for k, v in cpu.items() if k.startswith("job "))
        assert lasts == [0.16, 0.32, 0.48, 0.64, 0.8, 0.96], cpu
        wait_until(lambda: plot_lines(browser, "datalake-plot").get("read", {}).get(
            "points", 0) >= 3, what="the data-lake reads with history")
        reads = plot_lines(browser, "datalake-plot")["read"]
        assert reads["top"] < 190  # a line above the zero axis (y = 190): MB/s were read
        # The queue plot's history comes from Prometheus too: six jobs running.
        wait_until(lambda: plot_lines(browser, "pool-plot").get("running", {}).get("last")
                   == 6, what="the queue plot from Prometheus")
        # The executors plot too, as the autoscaler exported them while off: the
        # Deployment's replicas and ready pods, and the one busy executor, with points
        # from before this console started (its own history would begin now).
        # It was scaled up by one just before: each of desired, current and ready steps.
        wait_until(lambda: plot_lines(browser, "plot").get("busy", {}).get("last") == 1,
                   what="the executors plot from Prometheus")
        lines = plot_lines(browser, "plot")
        assert {k: v["last"] for k, v in lines.items()} == {
            "desired": replicas, "current": replicas, "ready": replicas, "busy": 1}, lines
        assert all(v["points"] >= 3 for v in lines.values()), lines
        drawn = dict(browser.execute_script(
            "const out = {};"
            "for (const p of document.querySelectorAll('svg#plot path.series'))"
            "  out[p.dataset.label] = [Number(p.dataset.first), p.getAttribute('d')];"
            "return out;"))
        for label in ("desired", "current", "ready"):
            first, d = drawn[label]
            assert first < started - 5, (label, first, started)  # older than the console
            levels = {seg.split()[1] for seg in d[1:].split(" L")}
            assert len(levels) == 2, (label, d)  # before and after the scale
        assert "from Prometheus" in text_of(browser, "#executors-about")
        assert text_of(browser, "#plots-state") == ""
        assert browser.execute_script("return document.body.dataset.range") == "900"
        browser.execute_script("document.getElementById('plot').scrollIntoView()")
        browser.save_screenshot(str(tmp_path / "plots-prometheus-executors.png"))
        browser.execute_script("document.getElementById('range').scrollIntoView()")
        browser.save_screenshot(str(tmp_path / "plots-prometheus.png"))
    finally:
        running.stop()


def test_the_monitor_plots_come_from_its_exporter_without_prometheus(
        console: Running, env_ns: str, browser: Any, monitored: Monitored,
        tmp_path: Path) -> None:
    """No Prometheus in the profile: the console reads the monitor in the scheduler pod
    through the API server's port-forward (KWOK routes the pod's port 9111 to the exporter
    on loopback) and keeps the samples."""
    kube = local.connect()
    kube.apply({"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "PortForward",
                "metadata": {"name": monitored.pod, "namespace": env_ns},
                "spec": {"forwards": [{"ports": [9111], "target": {
                    "address": "127.0.0.1", "port": monitored.port}}]}})
    try:
        browser.get(console.url.replace("/?", f"/env/{env_ns}/sentinel3?"))
        wait_until(lambda: live(browser), what="the page is live")
        assert "read from the monitor in the scheduler pod" in text_of(browser, "main")
        wait_until(lambda: jobs_plotted(plot_lines(browser, "cpu-plot"), 2), timeout=90,
                   what="six job lines sampled twice from the monitor")
        cpu = plot_lines(browser, "cpu-plot")
        assert all(0 < v["last"] <= 1.0 for k, v in cpu.items() if k.startswith("job ")), cpu
        wait_until(lambda: plot_lines(browser, "datalake-plot").get("read", {}).get(
            "top", 190) < 190, what="data-lake reads above zero")
        assert text_of(browser, "#plots-state") == ""
        browser.execute_script("document.getElementById('range').scrollIntoView()")
        browser.save_screenshot(str(tmp_path / "plots-exporter.png"))
    finally:
        kube.delete("kwok.x-k8s.io/v1alpha1", "PortForward", monitored.pod, env_ns)


def test_the_table_says_when_created_restarts_per_node_and_the_ssh_host(
        console: Running, env_ns: str, browser: Any, tmp_path: Path) -> None:
    from mmerep.ssh.config import ssh_config
    from mmerep.ssh.manage import environment_keys

    kube = local.connect()
    profile = console.console.profile
    assert profile is not None
    # The hosts `mme-rep ssh config` writes for this namespace's environments.
    block = ssh_config(profile, environment_keys(kube, env_ns), proxy=["mme-rep"],
                       known_hosts="known_hosts")
    hosts = {line.split()[1] for line in block.splitlines()
             if line.startswith("Host ") and "*" not in line}
    first = min((r for r in kube.list_objects(
        "v1", "ConfigMap", env_ns, label_selector=f"{environments.RECORD_LABEL}=true")
        if r["metadata"]["labels"]["app.kubernetes.io/instance"] == "sentinel3"),
        key=lambda r: int(r["data"]["revision"]))
    # A container of the collector restarted twice (as the kubelet would report it).
    pod = kube.list_objects("v1", "Pod", env_ns, label_selector=(
        "app.kubernetes.io/instance=sentinel3,app.kubernetes.io/component=collector"))[0]
    statuses = [{**c, "restartCount": 2} for c in pod["status"]["containerStatuses"]]
    kube.request("PATCH", f"/api/v1/namespaces/{env_ns}/pods/{pod['metadata']['name']}/status",
                 body={"status": {"containerStatuses": statuses}},
                 content_type="application/merge-patch+json")
    expected_restarts = sum(int(c.get("restartCount", 0)) for p in kube.list_objects(
        "v1", "Pod", env_ns, label_selector="app.kubernetes.io/instance=sentinel3")
        for c in p["status"].get("containerStatuses") or [])
    assert expected_restarts >= 2

    browser.get(console.url)
    wait_until(lambda: live(browser), what="the page is live")
    row = 'tr[data-env$="/sentinel3"]'
    wait_until(lambda: text_of(browser, f"{row} td.restarts") == str(expected_restarts),
               what=f"{expected_restarts} restarts, live")
    assert "synclocal: 1 per node" in text_of(browser, f"{row} td.pods")
    assert "1 per node" not in text_of(browser, 'tr[data-env$="/shell"] td.pods')
    shown = set(text_of(browser, f"{row} td.access").split()) | set(
        text_of(browser, 'tr[data-env$="/shell"] td.access').split())
    assert shown == hosts and "sentinel3-scheduler.local.mmerep-local" in shown
    created = browser.execute_script(
        "return document.querySelector(arguments[0]).getAttribute('datetime')",
        f"{row} td.created time")
    assert created == first["metadata"]["creationTimestamp"]
    assert text_of(browser, f"{row} td.created").endswith(" ago")
    browser.save_screenshot(str(tmp_path / "environments-columns.png"))


def test_rollback_from_the_history_restores_the_previous_image(
        console: Running, env_ns: str, browser: Any, cluster: local.ClusterInfo,
        tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    kube = local.connect()
    sample.push_sample_image(cluster.registry, repo="mme-rep/interactive/sentinel3",
                             tag="v0.2.0")
    profile = dataclasses.replace(get_profile("local"), namespace=env_ns)
    environments.deploy(kube, environments.render_environment(
        profile, "interactive", "sentinel3:v0.2.0", name="shell"), timeout=240)
    history = environments.history(kube, env_ns, "shell")
    previous, latest = history[-2], history[-1]
    assert ":v0.1.0@" in previous["image"] and ":v0.2.0@" in latest["image"]

    def images() -> set[str]:
        return {c["image"] for d in kube.list_objects(
            "apps/v1", "Deployment", env_ns, label_selector="app.kubernetes.io/instance=shell")
            for c in d["spec"]["template"]["spec"]["containers"]}

    assert images() == {latest["image"]}
    browser.get(console.url.replace("/?", f"/env/{env_ns}/shell?"))
    wait_until(lambda: live(browser), what="the page is live")
    browser.find_element(By.XPATH, f"//table[@id='history']//tr[td[1]="
                                   f"'{previous['revision']}']//button").click()
    new = latest["revision"] + 1
    wait_until(lambda: f"rolled back to revision {previous['revision']} (now revision {new})"
               in text_of(browser, "#message"), timeout=300, what="the page confirms")
    assert images() == {previous["image"]}  # the Deployment runs the previous image again
    top = browser.find_element(By.CSS_SELECTOR, "#history tbody tr")
    cells = [td.text for td in top.find_elements(By.TAG_NAME, "td")]
    assert cells[0] == str(new) and cells[1] == "deployed"
    assert ":v0.1.0@" in cells[4]
    browser.save_screenshot(str(tmp_path / "rollback.png"))


def test_delete_asks_for_the_name_and_the_table_follows(
        console: Running, env_ns: str, browser: Any) -> None:
    """Runs last in this module: it removes the `shell` environment the others list."""
    from selenium.webdriver.common.by import By

    kube = local.connect()
    page = console.url.replace("/?", f"/env/{env_ns}/shell?")
    browser.get(page)
    wait_until(lambda: live(browser), what="the page is live")
    browser.find_element(By.ID, "confirm").send_keys("shel")  # a typo: nothing is deleted
    browser.find_element(By.ID, "delete").click()
    wait_until(lambda: "type the environment's name (shell) to confirm" in text_of(
        browser, "#api-message"), what="the confirmation is asked for")
    assert environments.list_environments(kube, env_ns)[-1]["name"] == "shell"

    browser.get(page)
    wait_until(lambda: live(browser), what="the page is live")
    browser.find_element(By.ID, "confirm").send_keys("shell")
    browser.find_element(By.ID, "delete").click()
    wait_until(lambda: "deleting shell" in text_of(browser, "#message"),
               what="the environments page says it is deleting")
    wait_until(lambda: text_of(browser, f'tr[data-env="{env_ns}/shell"]') == "" and
               text_of(browser, f'tr[data-env="{env_ns}/sentinel3"]') != "",
               what="the row goes, live")
    assert [r["name"] for r in environments.list_environments(kube, env_ns)] == ["sentinel3"]
