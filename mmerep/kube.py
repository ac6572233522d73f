"""The one gateway to Kubernetes: the only module that imports the official client.

Everything else hands plain dicts to ``Kube`` and gets plain dicts back. Requests go
through ``Kube.request``, which retries connection errors, 429 (honouring Retry-After)
and 5xx with logged back-off, and maps every other failure to an ``MmerepError``
subclass carrying the API server's own message.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mmerep.errors import (
    KubeAdmissionDenied,
    KubeConflict,
    KubeError,
    KubeForbidden,
    KubeInvalid,
    KubeNotFound,
    KubeTimeout,
    KubeUnauthenticated,
    KubeUnreachable,
)

log = logging.getLogger(__name__)

FIELD_MANAGER = "mme-rep"
DEFAULT_SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

Obj = dict[str, Any]

# Dependencies first: what a workload mounts or runs as must exist before it.
APPLY_ORDER = (
    "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "ServiceAccount", "Secret", "ConfigMap", "StorageClass",
    "PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
    "ClusterRoleBinding", "Role", "RoleBinding", "Service", "DaemonSet", "Pod",
    "ReplicationController", "ReplicaSet", "Deployment", "HorizontalPodAutoscaler",
    "StatefulSet", "Job", "CronJob", "Ingress",
)


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the API."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace)}"
        base += f"/{self.plural}"
        if name:
            base += f"/{quote(name)}"
        if subresource:
            base += f"/{subresource}"
        return base


_KNOWN = [
    Resource("v1", "Namespace", "namespaces", False),
    Resource("v1", "Node", "nodes", False),
    Resource("v1", "PersistentVolume", "persistentvolumes", False),
    Resource("v1", "Pod", "pods", True),
    Resource("v1", "Service", "services", True),
    Resource("v1", "ServiceAccount", "serviceaccounts", True),
    Resource("v1", "Secret", "secrets", True),
    Resource("v1", "ConfigMap", "configmaps", True),
    Resource("v1", "PersistentVolumeClaim", "persistentvolumeclaims", True),
    Resource("v1", "Event", "events", True),
    Resource("v1", "Endpoints", "endpoints", True),
    Resource("v1", "ResourceQuota", "resourcequotas", True),
    Resource("v1", "LimitRange", "limitranges", True),
    Resource("apps/v1", "Deployment", "deployments", True),
    Resource("apps/v1", "DaemonSet", "daemonsets", True),
    Resource("apps/v1", "StatefulSet", "statefulsets", True),
    Resource("apps/v1", "ReplicaSet", "replicasets", True),
    Resource("apps/v1", "ControllerRevision", "controllerrevisions", True),
    Resource("batch/v1", "Job", "jobs", True),
    Resource("batch/v1", "CronJob", "cronjobs", True),
    Resource("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", True),
    Resource("networking.k8s.io/v1", "Ingress", "ingresses", True),
    Resource("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", True),
    Resource("rbac.authorization.k8s.io/v1", "Role", "roles", True),
    Resource("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", True),
    Resource("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", False),
    Resource("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", False),
    Resource("storage.k8s.io/v1", "StorageClass", "storageclasses", False),
    Resource("apiextensions.k8s.io/v1", "CustomResourceDefinition",
             "customresourcedefinitions", False),
    Resource("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True),
    Resource("coordination.k8s.io/v1", "Lease", "leases", True),
    Resource("events.k8s.io/v1", "Event", "events", True),
    Resource("authorization.k8s.io/v1", "SelfSubjectAccessReview",
             "selfsubjectaccessreviews", False),
]
KNOWN_RESOURCES = {(r.api_version, r.kind): r for r in _KNOWN}


def kind_rank(kind: str) -> int:
    try:
        return APPLY_ORDER.index(kind)
    except ValueError:
        return len(APPLY_ORDER)


def sort_for_apply(objs: Iterable[Obj]) -> list[Obj]:
    """Objects in dependency order (stable within a kind)."""
    return sorted(objs, key=lambda o: kind_rank(o.get("kind", "")))


def sort_for_delete(objs: Iterable[Obj]) -> list[Obj]:
    return list(reversed(sort_for_apply(objs)))


@dataclass
class RetryPolicy:
    """Back-off for transient failures: connection errors, 429 and 5xx."""

    attempts: int = 6
    initial: float = 0.2
    maximum: float = 5.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def delays(self) -> Iterator[float]:
        delay = self.initial
        for _ in range(self.attempts - 1):
            yield delay
            delay = min(delay * 2, self.maximum)


@dataclass(frozen=True)
class ApplyResult:
    obj: Obj
    action: str  # "created", "configured" or "unchanged"
    before: Obj | None = None

    @property
    def changed(self) -> bool:
        return self.action != "unchanged"


def kind_name_ns(obj: Obj) -> str:
    """``Kind/name in ns``: how the gateway names an object (``environments.model.
    kind_and_name`` leaves the namespace out: an environment lives in one)."""
    meta = obj.get("metadata", {})
    ns = meta.get("namespace")
    return f"{obj.get('kind', '?')}/{meta.get('name', '?')}" + (f" in {ns}" if ns else "")


def _server_message(body: Any) -> tuple[str, str | None]:
    """The API server's message and reason from an error body (a Status object)."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        status = json.loads(body) if isinstance(body, str) else {}
    except ValueError:
        return (str(body).strip()[:300] or "no message", None)
    if not isinstance(status, dict):
        return (str(body)[:300], None)
    return (status.get("message") or str(body)[:300], status.get("reason"))


# RBAC's refusal: 'pods is forbidden: User "alice" cannot list resource "pods" ...'.
_RBAC_DENIAL = re.compile(r'User "[^"]*" cannot ')


def error_for_status(status: int, body: Any, what: str) -> KubeError:
    """Map an HTTP status from the API server to our error classes."""
    message, reason = _server_message(body)
    text = f"{what}: {message}"
    if status == 401:
        return KubeUnauthenticated(
            f"not authenticated: {text}",
            hint="log in again: renew the kubeconfig user's token or certificate (e.g. with "
            "your identity provider's kubectl login plugin), and check the context with "
            "kubectl config get-contexts", status=status, reason=reason)
    if status == 403 and not _RBAC_DENIAL.search(message):
        # Admission (Pod Security, a webhook, a quota, the ServiceAccount plugin) also
        # answers 403; its message says what to change, and RBAC is not the cause.
        return KubeAdmissionDenied(
            f"admission refused {what.partition(' ')[2] or what}: {message}",
            hint="change what the message names, or ask a cluster admin about the policy",
            status=status, reason=reason)
    if status == 403:
        return KubeForbidden(text, hint="ask a cluster admin for the RBAC permission, or use "
                             "a profile whose namespace you may use", status=status, reason=reason)
    if status == 404:
        return KubeNotFound(text, status=status, reason=reason)
    if status == 409:
        hint = ("another field manager owns these fields; change them with the tool that set "
                "them, or take them over with mme-rep env deploy --force"
                ) if reason == "Conflict" else None
        return KubeConflict(text, hint=hint, status=status, reason=reason)
    if status == 422 or status == 400:
        return KubeInvalid(text, status=status, reason=reason)
    return KubeError(text, status=status, reason=reason)


class Kube:
    """A connection to one API server, with retries and error mapping."""

    def __init__(self, api_client: Any, *, namespace: str = "default",
                 retry: RetryPolicy | None = None, context: str | None = None,
                 request_timeout: float = 30.0) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.retry = retry or RetryPolicy()
        self.context = context
        self.request_timeout = request_timeout
        self.requests_sent = 0
        self._count_lock = threading.Lock()
        self._discovered: dict[tuple[str, str], Resource] = {}

    # -- construction ------------------------------------------------------------------

    @classmethod
    def from_kubeconfig(cls, path: str | os.PathLike[str] | None = None,
                        context: str | None = None, **kw: Any) -> Kube:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        configuration = client.Configuration()
        try:
            config.load_kube_config(config_file=str(path) if path else None, context=context,
                                    client_configuration=configuration)
            contexts, active = config.list_kube_config_contexts(
                config_file=str(path) if path else None)
        except (ConfigException, FileNotFoundError, OSError) as exc:
            where = path or os.environ.get("KUBECONFIG") or "~/.kube/config"
            raise KubeError(f"cannot load kubeconfig {where}"
                            f"{f' context {context!r}' if context else ''}: {exc}",
                            hint="check the file and the context name (kubectl config "
                            "get-contexts)") from exc
        chosen = next((c for c in contexts if c["name"] == context), active) if context else active
        namespace = (kw.pop("namespace", None)
                     or (chosen or {}).get("context", {}).get("namespace") or "default")
        configuration.retries = False
        return cls(client.ApiClient(configuration), namespace=namespace,
                   context=(chosen or {}).get("name"), **kw)

    @classmethod
    def from_url(cls, url: str, *, token: str | None = None, ca_file: str | None = None,
                 insecure: bool = False, **kw: Any) -> Kube:
        """A server by address, e.g. for a service-account token or a test server."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = url
        configuration.retries = False
        if token:
            configuration.api_key = {"authorization": f"Bearer {token}"}
        if ca_file:
            configuration.ssl_ca_cert = ca_file
        configuration.verify_ssl = not insecure
        return cls(client.ApiClient(configuration), **kw)

    @classmethod
    def in_cluster(cls, sa_dir: str | os.PathLike[str] | None = None, **kw: Any) -> Kube:
        """The pod's own service account; ``sa_dir`` (or $MMEREP_SA_DIR) overrides its files."""
        from kubernetes import client
        from kubernetes.config.config_exception import ConfigException
        from kubernetes.config.incluster_config import InClusterConfigLoader

        directory = Path(sa_dir or os.environ.get("MMEREP_SA_DIR") or DEFAULT_SA_DIR)
        configuration = client.Configuration()
        try:
            InClusterConfigLoader(token_filename=str(directory / "token"),
                                  cert_filename=str(directory / "ca.crt")).load_and_set(
                client_configuration=configuration)
        except ConfigException as exc:
            raise KubeError(f"not running in a pod with a service account ({directory}): {exc}",
                            hint="run inside the cluster, or use a kubeconfig") from exc
        ns_file = directory / "namespace"
        namespace = ns_file.read_text().strip() if ns_file.exists() else "default"
        configuration.retries = False
        return cls(client.ApiClient(configuration), namespace=namespace, **kw)

    @property
    def host(self) -> str:
        return str(self.api_client.configuration.host)

    # -- the one request path ----------------------------------------------------------

    def request(self, method: str, path: str, *, body: Any = None,
                query: dict[str, Any] | None = None, content_type: str | None = None,
                what: str | None = None, timeout: float | None = None,
                stream: bool = False) -> Any:
        """Send one request, retrying transient failures; JSON body in, parsed JSON out.

        With ``stream`` the open urllib3 response is returned (for watches); the caller
        releases it.
        """
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        what = what or f"{method} {path}"
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        _, url, headers, _, _ = self.api_client.param_serialize(
            method, path, query_params=params, header_params=headers,
            auth_settings=["BearerToken"])
        delays = self.retry.delays()
        while True:
            with self._count_lock:
                self.requests_sent += 1
            try:
                resp = self.api_client.call_api(
                    method, url, header_params=dict(headers), body=body,
                    _request_timeout=timeout or self.request_timeout)
            except (ApiException, Urllib3Error, ConnectionError, OSError) as exc:
                delay = next(delays, None)
                if delay is None:
                    raise KubeUnreachable(
                        f"cannot reach the API server at {self.host} after "
                        f"{self.retry.attempts} attempts: {type(exc).__name__}",
                        hint="is the cluster up? (mme-rep cluster status) and is the "
                        "kubeconfig context right?",
                    ) from None
                log.warning("%s: %s, retrying in %.1fs", what, type(exc).__name__, delay)
                self.retry.sleep(delay)
                continue
            if 200 <= resp.status < 300:
                if stream:
                    return resp.response
                data = resp.read()
                return json.loads(data) if data else None
            data = resp.read()
            retryable = resp.status == 429 or resp.status >= 500
            delay = next(delays, None) if retryable else None
            if delay is None:
                raise error_for_status(resp.status, data, what)
            retry_after = resp.headers.get("Retry-After")
            if resp.status == 429 and retry_after and retry_after.isdigit():
                delay = max(delay, float(retry_after))
            log.warning("%s: HTTP %s, retrying in %.1fs", what, resp.status, delay)
            self.retry.sleep(delay)

    # -- discovery ---------------------------------------------------------------------

    def resource(self, api_version: str, kind: str) -> Resource:
        key = (api_version, kind)
        known = KNOWN_RESOURCES.get(key) or self._discovered.get(key)
        if known:
            return known
        path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        try:
            listing = self.request("GET", path, what=f"discover {api_version}")
        except KubeNotFound:
            listing = None
        for item in (listing or {}).get("resources", []):
            if "/" not in item["name"]:
                self._discovered[(api_version, item["kind"])] = Resource(
                    api_version, item["kind"], item["name"], item["namespaced"])
        if key not in self._discovered:
            raise KubeInvalid(f"the API server does not serve {kind} in {api_version}",
                              hint="check apiVersion and kind, or install the CRD first")
        return self._discovered[key]

    def _resource_of(self, obj: Obj) -> Resource:
        try:
            return self.resource(obj["apiVersion"], obj["kind"])
        except KeyError as exc:
            raise KubeInvalid(f"object has no {exc.args[0]}: {kind_name_ns(obj)}") from None

    def _namespace_of(self, obj: Obj, res: Resource) -> str | None:
        if not res.namespaced:
            return None
        return obj.get("metadata", {}).get("namespace") or self.namespace

    # -- reads -------------------------------------------------------------------------

    def get(self, api_version: str, kind: str, name: str,
            namespace: str | None = None) -> Obj | None:
        """The object, or None when it does not exist."""
        res = self.resource(api_version, kind)
        ns = (namespace or self.namespace) if res.namespaced else None
        try:
            return self.request("GET", res.path(ns, name), what=f"get {kind}/{name}")
        except KubeNotFound:
            return None

    def list_objects(self, api_version: str, kind: str, namespace: str | None = None, *,
             label_selector: str | None = None, field_selector: str | None = None,
             all_namespaces: bool = False) -> list[Obj]:
        return self.list_raw(api_version, kind, namespace, label_selector=label_selector,
                             field_selector=field_selector,
                             all_namespaces=all_namespaces).get("items", [])

    def list_raw(self, api_version: str, kind: str, namespace: str | None = None, *,
                 label_selector: str | None = None, field_selector: str | None = None,
                 all_namespaces: bool = False) -> Obj:
        res = self.resource(api_version, kind)
        ns = None if (all_namespaces or not res.namespaced) else (namespace or self.namespace)
        data: Obj = self.request("GET", res.path(ns), query={
            "labelSelector": label_selector, "fieldSelector": field_selector,
        }, what=f"list {res.plural}")
        for item in data.get("items", []):
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return data

    def watch(self, api_version: str, kind: str, namespace: str | None = None, *,
              label_selector: str | None = None, timeout: float = 60.0) -> Iterator[Obj]:
        """Every object now (as ADDED events), then changes until ``timeout``.

        Lists first and watches from the list's resourceVersion; a 410 Gone (history
        compacted) lists again instead of failing.
        """
        deadline = time.monotonic() + timeout
        res = self.resource(api_version, kind)
        ns = None if not res.namespaced else (namespace or self.namespace)
        while True:
            listing = self.list_raw(api_version, kind, ns, label_selector=label_selector)
            for item in listing.get("items", []):
                yield {"type": "ADDED", "object": item}
            version = listing["metadata"]["resourceVersion"]
            gone = False
            while not gone:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                resp = self.request("GET", res.path(ns), query={
                    "watch": "true", "resourceVersion": version, "allowWatchBookmarks": "true",
                    "labelSelector": label_selector, "timeoutSeconds": max(1, int(remaining)),
                }, stream=True, timeout=remaining + 5, what=f"watch {res.plural}")
                try:
                    for line in resp:  # urllib3 yields the stream line by line
                        event = json.loads(line)
                        obj = event.get("object", {})
                        if event["type"] == "ERROR":
                            if obj.get("code") == 410:
                                gone = True
                                break
                            raise error_for_status(obj.get("code", 500), json.dumps(obj),
                                                   f"watch {res.plural}")
                        version = obj.get("metadata", {}).get("resourceVersion", version)
                        if event["type"] != "BOOKMARK":
                            yield event
                finally:
                    resp.release_conn()

    # -- writes ------------------------------------------------------------------------

    def apply(self, obj: Obj, *, force: bool = False, dry_run: bool = False,
              compare: bool = True) -> ApplyResult:
        """Server-side apply one object as field manager ``mme-rep``.

        ``compare`` reads the object first to tell created/configured/unchanged; a caller
        that learnt that from a dry run can skip the read (the action is then "applied").
        """
        res = self._resource_of(obj)
        ns = self._namespace_of(obj, res)
        name = obj.get("metadata", {}).get("name")
        if not name:
            raise KubeInvalid(f"object has no metadata.name: {kind_name_ns(obj)}")
        before = self.get(res.api_version, res.kind, name, ns) if compare else None
        body = dict(obj)
        if ns:
            body["metadata"] = {**obj["metadata"], "namespace": ns}
        after = self.request(
            "PATCH", res.path(ns, name), body=body, content_type="application/apply-patch+yaml",
            query={"fieldManager": FIELD_MANAGER, "force": "true" if force else None,
                   "dryRun": "All" if dry_run else None},
            what=f"apply {kind_name_ns(body)}",
        )
        if not compare:
            action = "applied"
        elif before is None:
            action = "created"
        elif _project(before, body) == _project(after, body):
            # Only what we sent counts: controllers change status, annotations and the
            # resourceVersion under us at any time.
            action = "unchanged"
        else:
            action = "configured"
        return ApplyResult(after, action, before)

    def apply_all(self, objs: Iterable[Obj], *, force: bool = False, dry_run: bool = False,
                  compare: bool = True) -> list[ApplyResult]:
        """Apply in dependency order; objects of the same kind go in parallel.

        A dry run has no order to respect (nothing is written), so it is parallel throughout.
        """
        ordered = sort_for_apply(objs)
        groups: list[list[Obj]] = []
        for obj in ordered:
            if groups and (dry_run or kind_rank(groups[-1][0]["kind"]) == kind_rank(obj["kind"])):
                groups[-1].append(obj)
            else:
                groups.append([obj])
        results: list[ApplyResult] = []
        for group in groups:
            results.extend(self.map(
                lambda o: self.apply(o, force=force, dry_run=dry_run, compare=compare), group))
        return results

    def map(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        """``fn`` over ``items`` concurrently (requests wait on the network, not the CPU);
        results in order, and the first error is raised."""
        if len(items) <= 1:
            return [fn(i) for i in items]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
            return list(pool.map(fn, items))

    def create(self, obj: Obj, *, dry_run: bool = False) -> Obj:
        res = self._resource_of(obj)
        ns = self._namespace_of(obj, res)
        return self.request("POST", res.path(ns), body=obj,
                            query={"dryRun": "All" if dry_run else None},
                            what=f"{'check' if dry_run else 'create'} {kind_name_ns(obj)}")

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None,
               *, propagation: str = "Foreground") -> bool:
        """Delete one object; False when it was already gone."""
        res = self.resource(api_version, kind)
        ns = (namespace or self.namespace) if res.namespaced else None
        try:
            self.request("DELETE", res.path(ns, name),
                         body={"kind": "DeleteOptions", "apiVersion": "v1",
                               "propagationPolicy": propagation},
                         what=f"delete {kind}/{name}")
        except KubeNotFound:
            return False
        return True

    def delete_all(self, objs: Iterable[Obj]) -> list[Obj]:
        """Delete in reverse apply order; returns those that existed."""
        deleted = []
        for obj in sort_for_delete(objs):
            meta = obj.get("metadata", {})
            if self.delete(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace")):
                deleted.append(obj)
        return deleted

    def wait_gone(self, objs: Iterable[Obj], *, timeout: float = 120.0,
                  interval: float = 0.25) -> None:
        """Wait until none of ``objs`` exists any more (finalizers and dependents done)."""
        pending = list(objs)
        deadline = time.monotonic() + timeout
        while pending:
            pending = [o for o in pending if self.get(
                o["apiVersion"], o["kind"], o["metadata"]["name"],
                o["metadata"].get("namespace")) is not None]
            if not pending:
                return
            if time.monotonic() >= deadline:
                raise KubeTimeout(f"still present after {timeout:.0f}s: "
                                  + ", ".join(kind_name_ns(o) for o in pending),
                                  hint="a finalizer may be stuck; see the object's events")
            time.sleep(interval)

    def get_scale(self, kind: str, name: str, namespace: str | None = None) -> Obj:
        res = self.resource("apps/v1", kind)
        return self.request("GET", res.path(namespace or self.namespace, name, "scale"),
                            what=f"get scale of {kind}/{name}")

    def scale(self, kind: str, name: str, replicas: int, namespace: str | None = None) -> Obj:
        """Set replicas through the scale subresource (needs only that RBAC permission)."""
        if replicas < 0:
            raise KubeInvalid(f"replicas must be 0 or more, not {replicas}")
        res = self.resource("apps/v1", kind)
        return self.request(
            "PATCH", res.path(namespace or self.namespace, name, "scale"),
            body={"spec": {"replicas": replicas}},
            content_type="application/merge-patch+json", what=f"scale {kind}/{name}")

    # -- waiting -----------------------------------------------------------------------

    def wait_for(self, objs: Iterable[Obj], *, timeout: float = 300.0, interval: float = 0.5,
                 on_progress: Callable[[list[WorkloadStatus]], None] | None = None,
                 ) -> list[WorkloadStatus]:
        """Wait until every workload among ``objs`` is ready; KubeTimeout otherwise."""
        targets = [o for o in objs if o.get("kind") in READY_CHECKS]
        deadline = time.monotonic() + timeout
        # Polls start fast (simulated and small rollouts finish in well under a second)
        # and back off to ``interval`` for long ones.
        pause = 0.05
        while True:
            statuses = self.map(lambda o: workload_status(o, self.get(
                o["apiVersion"], o["kind"], o["metadata"]["name"],
                o["metadata"].get("namespace"))), targets)
            if on_progress:
                on_progress(statuses)
            if all(s.ready for s in statuses):
                return statuses
            if time.monotonic() >= deadline:
                waiting = ", ".join(f"{s.kind}/{s.name} ({s.ready_pods}/{s.desired} ready)"
                                    for s in statuses if not s.ready)
                raise KubeTimeout(f"not ready after {timeout:.0f}s: {waiting}",
                                  hint="see the events (mme-rep env status) for why")
            time.sleep(pause)
            pause = min(pause * 2, interval)


def _project(live: Any, shape: Any) -> Any:
    """The parts of ``live`` at the paths present in ``shape`` (what an apply sent)."""
    if isinstance(shape, dict) and isinstance(live, dict):
        return {k: _project(live.get(k), v) for k, v in shape.items()}
    if isinstance(shape, list) and isinstance(live, list) and len(shape) == len(live):
        return [_project(a, b) for a, b in zip(live, shape, strict=True)]
    return live


@dataclass(frozen=True)
class WorkloadStatus:
    kind: str
    name: str
    desired: int
    ready_pods: int
    ready: bool
    exists: bool = True
    note: str = ""  # e.g. the latest warning event of a workload that is not ready


def _deployment_ready(live: Obj) -> tuple[int, int, bool]:
    spec, status = live.get("spec", {}), live.get("status", {})
    desired = spec.get("replicas", 1)
    ready = status.get("readyReplicas", 0)
    done = (status.get("observedGeneration", 0) >= live["metadata"].get("generation", 0)
            and status.get("updatedReplicas", 0) == desired
            and status.get("availableReplicas", 0) == desired
            and status.get("replicas", 0) == desired)
    return desired, ready, done


def _daemonset_ready(live: Obj) -> tuple[int, int, bool]:
    status = live.get("status", {})
    desired = status.get("desiredNumberScheduled", 0)
    ready = status.get("numberReady", 0)
    done = (status.get("observedGeneration", 0) >= live["metadata"].get("generation", 0)
            and status.get("updatedNumberScheduled", 0) == desired and ready == desired)
    return desired, ready, done


def _statefulset_ready(live: Obj) -> tuple[int, int, bool]:
    spec, status = live.get("spec", {}), live.get("status", {})
    desired = spec.get("replicas", 1)
    ready = status.get("readyReplicas", 0)
    done = (status.get("observedGeneration", 0) >= live["metadata"].get("generation", 0)
            and status.get("updatedReplicas", 0) == desired and ready == desired)
    return desired, ready, done


def _pod_ready(live: Obj) -> tuple[int, int, bool]:
    conditions = live.get("status", {}).get("conditions", [])
    ok = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return 1, int(ok), ok


READY_CHECKS: dict[str, Callable[[Obj], tuple[int, int, bool]]] = {
    "Deployment": _deployment_ready,
    "DaemonSet": _daemonset_ready,
    "StatefulSet": _statefulset_ready,
    "Pod": _pod_ready,
}


def workload_status(obj: Obj, live: Obj | None) -> WorkloadStatus:
    kind, name = obj["kind"], obj["metadata"]["name"]
    if live is None:
        return WorkloadStatus(kind, name, 0, 0, False, exists=False)
    desired, ready, done = READY_CHECKS[kind](live)
    return WorkloadStatus(kind, name, desired, ready, done)


# -- port-forward ------------------------------------------------------------------------
# `mme-rep ssh proxy` runs once per SSH connection, so this path avoids importing the
# Kubernetes client (a second or more): it reads the kubeconfig itself for the usual
# credentials (tokens, client certificates), speaks HTTP with the standard library, and
# opens the API server's WebSocket port-forward (v4.channel.k8s.io) on a raw TLS socket.
# Credentials it cannot handle alone (exec plugins, auth providers) are loaded through
# the client, once.

PORT_FORWARD_PROTOCOL = "v4.channel.k8s.io"


@dataclass(frozen=True)
class Endpoint:
    """How to reach one API server without the client: address, TLS and auth header."""

    server: str  # https://host:port
    namespace: str = "default"
    headers: tuple[tuple[str, str], ...] = ()
    ssl_context: Any = None  # ssl.SSLContext for https
    server_hostname: str | None = None
    # A kept-alive connection from ``get``, reused by the next request or the upgrade
    # (one TLS handshake less on the proxy's path).
    _idle: list[Any] = field(default_factory=list, compare=False, repr=False)

    @property
    def host_port(self) -> tuple[str, int]:
        from urllib.parse import urlsplit

        parts = urlsplit(self.server)
        return (parts.hostname or "localhost",
                parts.port or (443 if parts.scheme == "https" else 80))

    def connect(self, timeout: float = 15.0, reuse: bool = True) -> Any:
        """A connected socket (TLS when https), or KubeUnreachable."""
        import socket

        if reuse and self._idle:
            return self._idle.pop()
        host, port = self.host_port
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                sock = self.ssl_context.wrap_socket(
                    sock, server_hostname=self.server_hostname or host)
        except OSError as exc:
            raise KubeUnreachable(f"cannot reach the API server at {self.server}: {exc}",
                                  hint="is the cluster up, and the kubeconfig context "
                                  "right?") from None
        return sock

    def get(self, path: str, query: dict[str, str] | None = None, what: str = "") -> Any:
        """GET a JSON document; errors mapped as ``Kube.request`` maps them."""
        import http.client
        from urllib.parse import urlencode

        host, port = self.host_port
        conn: http.client.HTTPConnection
        if self.ssl_context is not None:
            conn = http.client.HTTPSConnection(host, port, timeout=15, context=self.ssl_context)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=15)
        url = path + (f"?{urlencode(query)}" if query else "")
        if self._idle:
            conn.sock = self._idle.pop()
        try:
            conn.request("GET", url, headers={"Accept": "application/json", **dict(self.headers)})
            resp = conn.getresponse()
            data = resp.read()
            if not resp.will_close:
                self._idle.append(conn.sock)
                conn.sock = None
        except OSError as exc:
            raise KubeUnreachable(f"cannot reach the API server at {self.server}: {exc}",
                                  hint="is the cluster up, and the kubeconfig context "
                                  "right?") from None
        finally:
            conn.close()
        if not 200 <= resp.status < 300:
            raise error_for_status(resp.status, data, what or f"GET {path}")
        return json.loads(data)


def _kubeconfig_files(path: str | os.PathLike[str] | None) -> list[Path]:
    if path:
        return [Path(path)]
    env = os.environ.get("KUBECONFIG")
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    return [Path.home() / ".kube" / "config"]


def _named(items: Any, name: str | None) -> dict[str, Any] | None:
    for item in items or []:
        if item.get("name") == name:
            return dict(item)
    return None


def endpoint_from_kubeconfig(path: str | os.PathLike[str] | None = None,
                             context: str | None = None) -> Endpoint:
    """An ``Endpoint`` from a kubeconfig (``$KUBECONFIG`` rules); the client only for
    credentials that need it (exec plugins, auth providers)."""
    import yaml

    docs = []
    for file in _kubeconfig_files(path):
        try:
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # C: 10x faster
            docs.append((file, yaml.load(file.read_text(), Loader=loader) or {}))  # noqa: S506
        except FileNotFoundError:
            continue
        except (OSError, yaml.YAMLError) as exc:
            raise KubeError(f"cannot read kubeconfig {file}: {exc}") from None
    if not docs:
        where = path or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise KubeError(f"no kubeconfig at {where}",
                        hint="check the profile's kubeconfig and context")
    name = context or next((d.get("current-context") for _, d in docs
                            if d.get("current-context")), None)

    def find(section: str, key: str | None) -> tuple[Path, dict[str, Any]] | None:
        for file, doc in docs:
            found = _named(doc.get(section), key)
            if found is not None:
                return file, found.get(section[:-1], {}) or {}
        return None

    ctx = find("contexts", name)
    if ctx is None:
        raise KubeError(f"kubeconfig has no context {name!r}",
                        hint="check the context name (kubectl config get-contexts)")
    cluster = find("clusters", ctx[1].get("cluster"))
    user = find("users", ctx[1].get("user")) or (ctx[0], {})
    namespace = ctx[1].get("namespace") or "default"
    if cluster is None:
        raise KubeError(f"kubeconfig context {name!r} names no known cluster")
    if {"exec", "auth-provider"} & set(user[1]) or cluster[1].get("proxy-url"):
        return endpoint_of(Kube.from_kubeconfig(path, context), namespace)
    return _light_endpoint(cluster, user, namespace)


def _light_endpoint(cluster: tuple[Path, dict[str, Any]], user: tuple[Path, dict[str, Any]],
                    namespace: str) -> Endpoint:
    import base64
    import ssl
    import tempfile

    def file_or_data(where: tuple[Path, dict[str, Any]],
                     key: str) -> tuple[str | None, bytes | None]:
        base, section = where
        if section.get(f"{key}-data"):
            return None, base64.b64decode(section[f"{key}-data"])
        if section.get(key):
            return str((base.parent / section[key]).resolve()), None
        return None, None

    info = cluster[1]
    server = str(info.get("server", ""))
    headers: list[tuple[str, str]] = []
    context = None
    if server.startswith("https"):
        # Not create_default_context(): loading the system's CAs costs ~50 ms per
        # connection, and a kubeconfig that names its CA trusts only that one.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if info.get("insecure-skip-tls-verify"):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            ca_file, ca_data = file_or_data(cluster, "certificate-authority")
            if ca_file or ca_data:
                context.load_verify_locations(cafile=ca_file,
                                              cadata=ca_data.decode() if ca_data else None)
            else:
                context.load_default_certs()
        cert_file, cert_data = file_or_data(user, "client-certificate")
        key_file, key_data = file_or_data(user, "client-key")
        if cert_file or cert_data:
            # ssl loads a client certificate only from files: private ones, gone at once.
            with tempfile.TemporaryDirectory(prefix="mmerep-kube-") as tmp:
                if cert_data:
                    cert_file = os.path.join(tmp, "cert")
                    Path(cert_file).write_bytes(cert_data)
                if key_data:
                    key_file = os.path.join(tmp, "key")
                    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(key_data)
                context.load_cert_chain(str(cert_file), key_file)
    token = user[1].get("token")
    if not token and user[1].get("tokenFile"):
        token = Path(user[1]["tokenFile"]).read_text().strip()
    if token:
        headers.append(("Authorization", f"Bearer {token}"))
    elif user[1].get("username"):
        pair = f"{user[1]['username']}:{user[1].get('password', '')}".encode()
        headers.append(("Authorization", f"Basic {base64.b64encode(pair).decode()}"))
    return Endpoint(server.rstrip("/"), namespace, tuple(headers), context,
                    info.get("tls-server-name"))


def endpoint_of(kube: Kube, namespace: str | None = None) -> Endpoint:
    """The ``Endpoint`` of a client-made connection (its TLS files and credentials)."""
    import ssl

    conf = kube.api_client.configuration
    headers = []
    auth = conf.get_api_key_with_prefix("authorization")
    if auth:
        headers.append(("Authorization", auth))
    context = None
    if str(conf.host).startswith("https"):
        context = ssl.create_default_context(cafile=conf.ssl_ca_cert or None)
        if not conf.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if conf.cert_file:
            context.load_cert_chain(conf.cert_file, conf.key_file)
    return Endpoint(str(conf.host).rstrip("/"), namespace or kube.namespace, tuple(headers),
                    context, getattr(conf, "tls_server_name", None))


class PortForward:
    """One pod port through the API server (WebSocket, ``v4.channel.k8s.io``), non-blocking.

    Channel 0 carries the data, channel 1 the server's errors; the first message on each
    repeats the port. ``send`` frames and queues; ``flush`` writes what the socket takes;
    ``receive`` returns the data that arrived (b"" when none), None when the stream ended.
    """

    def __init__(self, sock: Any, port: int, buffered: bytes = b"") -> None:
        self.sock = sock
        self.port = port
        self._in = bytearray(buffered)
        self._out = bytearray()
        self._started = [False, False]
        self._channel = 0  # of the message being continued by continuation frames
        self._closed = False
        sock.setblocking(False)

    @classmethod
    def open(cls, endpoint: Endpoint, namespace: str, pod: str, port: int,
             timeout: float = 15.0) -> PortForward:
        import base64
        import hashlib

        path = (f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}/portforward"
                f"?ports={port}")
        key = base64.b64encode(os.urandom(16)).decode()
        host, hport = endpoint.host_port
        request = [f"GET {path} HTTP/1.1", f"Host: {host}:{hport}", "Upgrade: websocket",
                   "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                   "Sec-WebSocket-Version: 13",
                   f"Sec-WebSocket-Protocol: {PORT_FORWARD_PROTOCOL}"]
        request += [f"{k}: {v}" for k, v in endpoint.headers]
        for reuse in (True, False):  # a kept-alive connection may have been closed
            sock = endpoint.connect(timeout, reuse=reuse)
            head = bytearray()
            try:
                sock.sendall(("\r\n".join(request) + "\r\n\r\n").encode())
                while b"\r\n\r\n" not in head:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    head += chunk
            except OSError as exc:
                sock.close()
                if not reuse:
                    raise KubeUnreachable(f"port-forward to {pod}: the API server closed "
                                          f"the connection: {exc}") from None
                continue
            if head or not reuse:
                break
            sock.close()
        header, _, rest = bytes(head).partition(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1]) if len(lines[0].split()) > 1 else 0
        fields = {k.strip().lower(): v.strip() for k, _, v in
                  (line.partition(":") for line in lines[1:])}
        what = f"port-forward to pod {pod} in {namespace}"
        if status != 101:
            length = int(fields.get("content-length", "0") or 0)
            while len(rest) < length:
                try:
                    more = sock.recv(65536)
                except OSError:
                    break
                if not more:
                    break
                rest += more
            sock.close()
            raise error_for_status(status, rest, what)
        accept = base64.b64encode(hashlib.sha1(  # noqa: S324 (the WebSocket handshake)
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        if fields.get("sec-websocket-accept") != accept:
            sock.close()
            raise KubeError(f"{what}: the server's WebSocket handshake is wrong")
        return cls(sock, port, rest)

    def fileno(self) -> int:
        return int(self.sock.fileno())

    def pending(self) -> bool:
        """Decrypted bytes wait inside the TLS layer (select cannot see them)."""
        return bool(getattr(self.sock, "pending", lambda: 0)())

    @property
    def wants_write(self) -> bool:
        return bool(self._out)

    def send(self, data: bytes, opcode: int = 2) -> None:
        payload = (b"\x00" + data) if opcode == 2 else data
        n = len(payload)
        if n < 126:
            head = bytes((0x80 | opcode, 0x80 | n))
        elif n < 65536:
            head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
        mask = os.urandom(4)
        # Client frames are masked (RFC 6455); a big-int XOR does it at memory speed.
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
        self._out += head
        self._out += mask
        self._out += (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")

    def flush(self) -> None:
        import ssl

        while self._out:
            try:
                with memoryview(self._out) as view:  # no copy of what is queued
                    sent = self.sock.send(view[:1 << 20])
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return
            del self._out[:sent]

    def receive(self, limit: int = 1 << 20) -> bytes | None:
        """Data that arrived on the data channel; None once the stream has ended."""
        import ssl

        while len(self._in) < limit:
            try:
                chunk = self.sock.recv(1 << 18)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except OSError:
                chunk = b""
            if not chunk:
                self._closed = True
                break
            self._in += chunk
            if not self.pending():
                break
        data = self._frames()
        if data is None or (self._closed and not data):
            return None
        return data

    def _frames(self) -> bytes | None:
        out = bytearray()
        buf, pos, end = self._in, 0, len(self._in)
        try:
            while end - pos >= 2:
                opcode, n, at = buf[pos] & 0x0F, buf[pos + 1] & 0x7F, pos + 2
                if n == 126:
                    if end - pos < 4:
                        break
                    n, at = int.from_bytes(buf[pos + 2:pos + 4], "big"), pos + 4
                elif n == 127:
                    if end - pos < 10:
                        break
                    n, at = int.from_bytes(buf[pos + 2:pos + 10], "big"), pos + 10
                if end - at < n:
                    break
                pos = at + n
                if opcode == 8:  # close
                    self._closed = True
                    return bytes(out) or None
                if opcode == 9:  # ping
                    self.send(bytes(buf[at:at + n]), opcode=10)
                    continue
                if opcode not in (0, 2) or n == 0:
                    continue
                if opcode == 2:
                    self._channel, at = buf[at], at + 1
                channel = self._channel
                if channel > 1:
                    continue
                if not self._started[channel]:  # the first message repeats the port
                    self._started[channel] = True
                    at += 2
                if channel == 1:
                    if pos > at:
                        message = bytes(buf[at:pos]).decode("utf-8", "replace").strip()
                        raise KubeError(f"port-forward to port {self.port}: {message}")
                    continue
                out += buf[at:pos]
        finally:
            del buf[:pos]  # once: deleting per frame would move the rest each time
        return bytes(out)

    def close(self) -> None:
        try:
            self.sock.setblocking(True)
            self.sock.settimeout(1)
            self.sock.sendall(self._out)
            self._out.clear()
            self.send(b"\x03\xe8", opcode=8)  # normal closure
            self.sock.sendall(self._out)
        except OSError:
            pass
        finally:
            self.sock.close()
