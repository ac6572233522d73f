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
              compare: bool = True, field_manager: str = FIELD_MANAGER) -> ApplyResult:
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
            query={"fieldManager": field_manager, "force": "true" if force else None,
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

    def create(self, obj: Obj, *, dry_run: bool = False,
               field_manager: str = FIELD_MANAGER) -> Obj:
        res = self._resource_of(obj)
        ns = self._namespace_of(obj, res)
        return self.request("POST", res.path(ns), body=obj,
                            query={"dryRun": "All" if dry_run else None,
                                   "fieldManager": field_manager},
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

    def scale(self, kind: str, name: str, replicas: int, namespace: str | None = None, *,
              field_manager: str = FIELD_MANAGER) -> Obj:
        """Set replicas through the scale subresource (needs only that RBAC permission)."""
        if replicas < 0:
            raise KubeInvalid(f"replicas must be 0 or more, not {replicas}")
        res = self.resource("apps/v1", kind)
        return self.request(
            "PATCH", res.path(namespace or self.namespace, name, "scale"),
            body={"spec": {"replicas": replicas}}, query={"fieldManager": field_manager},
            content_type="application/merge-patch+json", what=f"scale {kind}/{name}")

    def patch(self, api_version: str, kind: str, name: str, patch: Obj,
              namespace: str | None = None, *, field_manager: str = FIELD_MANAGER) -> Obj:
        """A JSON merge patch (e.g. one annotation on a pod someone else manages)."""
        res = self.resource(api_version, kind)
        ns = (namespace or self.namespace) if res.namespaced else None
        return self.request("PATCH", res.path(ns, name), body=patch,
                            query={"fieldManager": field_manager},
                            content_type="application/merge-patch+json",
                            what=f"patch {kind}/{name}")

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
