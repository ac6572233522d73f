"""The console's pages and table as data: no cluster, no browser."""

from __future__ import annotations

from typing import Any

from mmerep.console import views
from mmerep.console.live import Series, table_rows


def record(ns: str, env: str, revision: int, status: str = "deployed") -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": f"{env}-r{revision}",
                         "labels": {"app.kubernetes.io/instance": env}},
            "data": {"revision": str(revision), "template": "htcondor-batch", "status": status,
                     "image": "localhost:5000/mme-rep/htcondor-batch/s3:v1@sha256:" + "a" * 64,
                     "time": "2026-12-01T22:00:00Z"}}


def deployment(ns: str, env: str, component: str, desired: int, ready: int) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"namespace": ns, "name": f"{env}-{component}", "generation": 1,
                         "labels": {"app.kubernetes.io/instance": env,
                                    "app.kubernetes.io/component": component}},
            "spec": {"replicas": desired},
            "status": {"observedGeneration": 1, "replicas": desired, "readyReplicas": ready,
                       "updatedReplicas": desired, "availableReplicas": ready}}


def test_table_rows_are_env_lists_rows_with_pods_and_state() -> None:
    rows = table_rows([record("a", "s3", 1), record("a", "s3", 2, "deployed"),
                       record("b", "olci", 1)],
                      [deployment("a", "s3", "executor", 3, 1),
                       deployment("a", "s3", "collector", 1, 1),
                       deployment("b", "olci", "executor", 2, 2)])
    assert [(r["namespace"], r["name"], r["revision"], r["ready"], r["desired"], r["state"])
            for r in rows] == [("a", "s3", 2, 2, 4, "Progressing"),
                               ("b", "olci", 1, 2, 2, "Active")]


def test_an_environment_without_workloads_is_missing() -> None:
    assert table_rows([record("a", "s3", 1)], [])[0]["state"] == "Missing"


def test_short_image_drops_the_registry_and_shortens_the_digest() -> None:
    image = "localhost:5000/mme-rep/htcondor-batch/s3:v1@sha256:" + "a" * 64
    assert views.short_image(image) == ".../mme-rep/htcondor-batch/s3:v1@sha256:aaaaaaaaaaaa"
    assert views.short_image("mme-rep/s3:v1") == "mme-rep/s3:v1"


def test_pages_escape_what_they_show_and_carry_no_inline_script() -> None:
    row = table_rows([record("a", "s3", 1)], [])[0]
    row["name"] = "<script>alert(1)</script>"
    page = views.environments_page([row], "a", csrf="tok")
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert '<script src="/static/console.js" defer></script>' in page
    assert page.count("<script") == 1 and " style=" not in page


def test_every_action_form_carries_the_csrf_token() -> None:
    status = {"namespace": "a", "name": "s3", "warnings": [], "stopped": [],
              "components": [{"component": "executor", "name": "s3-executor",
                              "kind": "Deployment", "state": "Active", "ready": 2,
                              "desired": 2, "restarts": 0, "ports": []}]}
    history = [{"revision": 1, "status": "superseded", "time": "t", "template": "x",
                "image": "i"}, {"revision": 2, "status": "deployed", "time": "t",
                                "template": "x", "image": "i"}]
    page = views.environment_page(status, history, csrf="tok-123", executors=2)
    assert page.count('<form method="post"') == 6  # scale, vscale, repair, 2 rollbacks, delete
    assert page.count('name="csrf" value="tok-123"') == 6


def test_the_error_page_shows_the_api_servers_message() -> None:
    page = views.error_page(403, 'deployments.apps "x" is forbidden: User "u" cannot patch',
                            None, csrf="t")
    assert "Not allowed" in page and "RBAC" in page
    assert "User &quot;u&quot; cannot patch" in page


def test_series_keeps_changes_only() -> None:
    s = Series()
    for desired, ready in ((1, 0), (1, 0), (1, 1), (3, 1)):
        s.add(desired, ready)
    assert [p[1:] for p in s.points] == [(1, 0), (1, 1), (3, 1)]
