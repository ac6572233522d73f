"""The one gateway to Kubernetes: the only module that imports the official client.

Everything else hands plain dicts to ``Kube`` and gets plain dicts back. Requests go
through ``Kube.request``, which retries connection errors, 429 (honouring Retry-After)
and 5xx with logged back-off, and maps every other failure to an ``MmerepError``
subclass carrying the API server's own message.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mmerep.errors import (
    KubeAdmissionDenied,
    KubeConflict,
    KubeDisruptionRefused,
    KubeError,
    KubeForbidden,
    KubeInvalid,
    KubeNotFound,
    KubeTimeout,
    KubeUnauthenticated,
    KubeUnreachable,
    MmerepError,
)
from mmerep.kubehttp import (
    Connection,
    Transport,
    cache_key,
    forget_cached,
    kubeconfig_files,
    load_cached,
    save_cached,
)
from mmerep.retry import RetryPolicy


class _Log:
    """This module's logger, made on first use: a read command that logs nothing then
    does not import logging (~6% of ``scaler.sh``'s CPU)."""

    def __getattr__(self, name: str) -> Any:
        import logging

        return getattr(logging.getLogger(__name__), name)


log = _Log()

FIELD_MANAGER = "mme-rep"
# Accept header for a list of metadata only (meta.k8s.io/v1 PartialObjectMetadataList).
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
# How often a wait reports progress when nothing changes (a stuck rollout's warnings).
HEARTBEAT = 2.0
DEFAULT_SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

Obj = dict[str, Any]

# Dependencies first: what a workload mounts or runs as must exist before it.
APPLY_ORDER = (
    "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "PriorityClass", "ServiceAccount", "Secret", "ConfigMap", "StorageClass",
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
    Resource("scheduling.k8s.io/v1", "PriorityClass", "priorityclasses", False),
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


# Kinds that others are made inside of, and kinds that make pods (see ``apply_all``).
CONTAINERS = frozenset({"Namespace", "CustomResourceDefinition"})
POD_MAKERS = frozenset({"DaemonSet", "Pod", "ReplicationController", "ReplicaSet",
                        "Deployment", "StatefulSet", "Job", "CronJob",
                        "HorizontalPodAutoscaler"})


def apply_phase(kind: str) -> int:
    return 0 if kind in CONTAINERS else 2 if kind in POD_MAKERS else 1


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

    def __init__(self, connection: Connection, *, namespace: str | None = None,
                 retry: RetryPolicy | None = None, request_timeout: float = 30.0,
                 cache_key: str | None = None, reload: Callable[[], Connection] | None = None,
                 ) -> None:
        self.connection = connection
        self.transport = Transport(connection)
        self.namespace = namespace or connection.namespace
        self.context = connection.context
        self.retry = retry or RetryPolicy()
        self.request_timeout = request_timeout
        self.requests_sent = 0
        self._count_lock = threading.Lock()
        self._discovered: dict[tuple[str, str], Resource] = {}
        self._cache_key = cache_key  # set when the connection came from the cache
        self._reload = reload
        self._api_client: Any = None

    # -- construction ------------------------------------------------------------------

    @classmethod
    def from_kubeconfig(cls, path: str | os.PathLike[str] | None = None,
                        context: str | None = None, **kw: Any) -> Kube:
        """The kubeconfig's context, resolved by the official client once and then cached
        (until the kubeconfig changes or its token expires), so later commands skip the
        client's import."""
        files = kubeconfig_files(path)
        key = cache_key(files, context)
        cached = load_cached(key) if key else None

        def resolve() -> Connection:
            conn, keep, cacheable = _resolve_kubeconfig(path, context)
            if key and cacheable:
                conn = save_cached(key, conn, keep)
            return conn

        if cached is not None:
            return cls(cached, cache_key=key, reload=resolve, **kw)
        return cls(resolve(), **kw)

    @classmethod
    def from_url(cls, url: str, *, token: str | None = None, ca_file: str | None = None,
                 insecure: bool = False, **kw: Any) -> Kube:
        """A server by address, e.g. for a service-account token or a test server."""
        return cls(Connection(host=url, ca_file=ca_file, token=f"Bearer {token}" if token
                              else None, verify=not insecure), **kw)

    @classmethod
    def in_cluster(cls, sa_dir: str | os.PathLike[str] | None = None, **kw: Any) -> Kube:
        """The pod's own service account; ``sa_dir`` (or $MMEREP_SA_DIR) overrides its files.

        Read as the client's in-cluster loader reads it: the service's address from the
        environment, the CA and the token from the mounted files (the token is read again
        for every new connection, since the kubelet rotates it).
        """
        directory = Path(sa_dir or os.environ.get("MMEREP_SA_DIR") or DEFAULT_SA_DIR)
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT")
        token, ca = directory / "token", directory / "ca.crt"
        missing = [what for what, ok in (
            ("KUBERNETES_SERVICE_HOST/PORT", host and port), (str(token), token.is_file()),
            (str(ca), ca.is_file())) if not ok]
        if missing:
            raise KubeError(f"not running in a pod with a service account: no "
                            f"{', '.join(missing)}",
                            hint="run inside the cluster, or use a kubeconfig")
        if not token.read_text().strip():
            raise KubeError(f"the service-account token {token} is empty",
                            hint="check the pod's automountServiceAccountToken")
        ns_file = directory / "namespace"
        namespace = ns_file.read_text().strip() if ns_file.exists() else "default"
        if ":" in str(host):  # an IPv6 address
            host = f"[{host}]"
        return cls(Connection(host=f"https://{host}:{port}", ca_file=str(ca),
                              token_file=str(token), namespace=namespace), **kw)

    @property
    def host(self) -> str:
        return self.connection.host

    @property
    def api_client(self) -> Any:
        """The official client's ApiClient for this connection, for what only it does
        (streaming subresources); built on first use, so other commands never import it."""
        if self._api_client is None:
            from kubernetes import client

            c = self.connection
            configuration = client.Configuration()
            configuration.host = c.host
            configuration.ssl_ca_cert = c.ca_file
            configuration.cert_file = c.cert_file
            configuration.key_file = c.key_file
            configuration.verify_ssl = c.verify
            configuration.tls_server_name = c.tls_server_name
            auth = c.authorization()
            if auth:
                configuration.api_key = {"BearerToken": auth}
            configuration.retries = False
            self._api_client = client.ApiClient(configuration)
        return self._api_client

    def _reresolve(self) -> bool:
        """After a 401 or a TLS failure with a cached connection: resolve the kubeconfig
        again (a certificate or token may have been renewed) and use that."""
        if self._reload is None or self._cache_key is None:
            return False
        forget_cached(self._cache_key)
        self._cache_key = None
        self.connection = self._reload()
        self.transport = Transport(self.connection)
        self._api_client = None
        return True

    # -- the one request path ----------------------------------------------------------

    def request(self, method: str, path: str, *, body: Any = None,
                query: dict[str, Any] | None = None, content_type: str | None = None,
                what: str | None = None, timeout: float | None = None,
                stream: bool = False, retry_busy: bool = True, accept: str | None = None) -> Any:
        """Send one request, retrying transient failures; JSON body in, parsed JSON out.

        With ``stream`` the open response is returned (for watches): iterate it for
        lines, and ``release_conn()`` it when done. Without ``retry_busy`` a 429 is an
        answer, not a reason to retry (the Eviction API says "this would break a
        disruption budget" with it).
        """
        import http.client
        import ssl

        what = what or f"{method} {path}"
        headers = {"Content-Type": content_type} if content_type and body is not None else {}
        if accept:
            headers["Accept"] = accept
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        delays = self.retry.delays()
        while True:
            with self._count_lock:
                self.requests_sent += 1
            try:
                resp = self.transport.send(method, path, query=params, body=body,
                                           headers=headers, stream=stream,
                                           timeout=timeout or self.request_timeout)
            except ssl.SSLError as exc:
                if self._reresolve():
                    continue
                raise KubeUnreachable(f"TLS with the API server at {self.host} failed: {exc}",
                                      hint="check the kubeconfig's certificates") from None
            except (OSError, http.client.HTTPException) as exc:
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
                    return resp
                data = resp.read()
                return json.loads(data) if data else None
            data = resp.read()
            resp.release_conn()
            if resp.status == 401 and self._reresolve():
                continue
            retryable = (resp.status == 429 and retry_busy) or resp.status >= 500
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
            found: Obj = self.request("GET", res.path(ns, name), what=f"get {kind}/{name}")
            return found
        except KubeNotFound:
            return None

    def list_objects(self, api_version: str, kind: str, namespace: str | None = None, *,
             label_selector: str | None = None, field_selector: str | None = None,
             all_namespaces: bool = False) -> list[Obj]:
        items: list[Obj] = self.list_raw(
            api_version, kind, namespace, label_selector=label_selector,
            field_selector=field_selector, all_namespaces=all_namespaces).get("items", [])
        return items

    def list_metadata(self, api_version: str, kind: str, namespace: str | None = None, *,
                      label_selector: str | None = None,
                      all_namespaces: bool = False) -> list[Obj]:
        """Only the objects' metadata (names, labels, annotations): the API server sends a
        PartialObjectMetadataList, a fraction of the bytes of the objects themselves."""
        res = self.resource(api_version, kind)
        ns = None if (all_namespaces or not res.namespaced) else (namespace or self.namespace)
        data: Obj = self.request("GET", res.path(ns), query={"labelSelector": label_selector},
                                 what=f"list {res.plural}", accept=METADATA_LIST)
        items: list[Obj] = data.get("items") or []
        for item in items:  # each says PartialObjectMetadata: say what it describes
            item["apiVersion"], item["kind"] = api_version, kind
        return items

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
              label_selector: str | None = None, field_selector: str | None = None,
              timeout: float = 60.0, resource_version: str | None = None,
              stop: threading.Event | None = None, chunk: float | None = None,
              mark_synced: bool = False, all_namespaces: bool = False) -> Iterator[Obj]:
        """Every object now (as ADDED events), then changes until ``timeout``.

        Lists first and watches from the list's resourceVersion; ``resource_version``
        resumes from one the caller kept instead (no list). When the server no longer has
        the history since then (410 Gone: compacted, or older than its watch cache), it
        lists again and goes on from there, so no change is lost: what changed in the gap
        arrives as the listed objects. With ``mark_synced`` a ``SYNCED`` event follows
        each listing. ``stop`` ends the watch early; it is looked at between watch
        requests, each at most ``chunk`` seconds long.
        """
        deadline = time.monotonic() + timeout
        res = self.resource(api_version, kind)
        ns = None if (not res.namespaced or all_namespaces) else (namespace or self.namespace)
        version = resource_version
        while True:
            if version is None:
                listing = self.list_raw(api_version, kind, ns, label_selector=label_selector,
                                        field_selector=field_selector,
                                        all_namespaces=all_namespaces)
                for item in listing.get("items", []):
                    yield {"type": "ADDED", "object": item}
                if mark_synced:
                    yield {"type": "SYNCED", "object": {}}
                version = str(listing["metadata"]["resourceVersion"])
            gone = False
            while not gone:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (stop is not None and stop.is_set()):
                    return
                seconds = min(remaining, chunk) if chunk else remaining
                try:
                    resp = self.request("GET", res.path(ns), query={
                        "watch": "true", "resourceVersion": version,
                        "allowWatchBookmarks": "true", "labelSelector": label_selector,
                        "fieldSelector": field_selector, "timeoutSeconds": max(1, int(seconds)),
                    }, stream=True, timeout=seconds + 5, what=f"watch {res.plural}")
                except KubeError as exc:
                    if exc.status != 410:
                        raise
                    gone = True
                    break
                try:
                    for line in resp:  # the stream, line by line
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
            log.info("watch %s from resourceVersion %s: 410 Gone (history compacted); "
                     "listing again", res.plural, version)
            version = None

    # -- writes ------------------------------------------------------------------------

    def apply(self, obj: Obj, *, force: bool = False, dry_run: bool = False,
              compare: bool = True, live: Mapping[tuple[str, str], Obj] | None = None,
              field_manager: str = FIELD_MANAGER) -> ApplyResult:
        """Server-side apply one object as field manager ``mme-rep``.

        ``compare`` reads the object first to tell created/configured/unchanged; a caller
        that learnt that from a dry run can skip the read (the action is then "applied").
        A caller that has just listed what exists passes it as ``live`` (by kind and
        name; what is not in it does not exist), and nothing is read.
        """
        res = self._resource_of(obj)
        ns = self._namespace_of(obj, res)
        name = obj.get("metadata", {}).get("name")
        if not name:
            raise KubeInvalid(f"object has no metadata.name: {kind_name_ns(obj)}")
        if live is not None:
            before = live.get((res.kind, name))
        else:
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
                  compare: bool = True, live: Mapping[tuple[str, str], Obj] | None = None,
                  ) -> list[ApplyResult]:
        """Apply in three phases, each in parallel: what others live in (namespaces,
        CRDs), then what workloads use (accounts, config, secrets, RBAC, services,
        priority classes...), then the workloads, so no pod is made before what it needs.

        A dry run has no order to respect (nothing is written), so it is parallel throughout.
        """
        ordered = sort_for_apply(objs)
        phases: dict[int, list[Obj]] = {}
        for obj in ordered:
            phases.setdefault(0 if dry_run else apply_phase(obj.get("kind", "")), []).append(obj)
        results: list[ApplyResult] = []
        for _, group in sorted(phases.items()):
            results.extend(self.map(
                lambda o: self.apply(o, force=force, dry_run=dry_run, compare=compare,
                                     live=live), group, workers=16))
        return results

    def map(self, fn: Callable[[Any], Any], items: list[Any], workers: int = 8) -> list[Any]:
        """``fn`` over ``items`` concurrently (requests wait on the network, not the CPU);
        results in order, and the first error is raised."""
        if len(items) <= 1:
            return [fn(i) for i in items]
        # Threads of its own: importing concurrent.futures costs a read command as much
        # as a request.
        results: list[Any] = [None] * len(items)
        errors: list[BaseException | None] = [None] * len(items)
        todo = iter(enumerate(items))
        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    nxt = next(todo, None)
                if nxt is None:
                    return
                index, item = nxt
                try:
                    results[index] = fn(item)
                except BaseException as exc:  # raised below, in the caller's thread
                    errors[index] = exc

        threads = [threading.Thread(target=work, daemon=True)
                   for _ in range(min(workers, len(items)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for error in errors:
            if error is not None:
                raise error
        return results

    def create(self, obj: Obj, *, dry_run: bool = False,
               field_manager: str = FIELD_MANAGER) -> Obj:
        res = self._resource_of(obj)
        ns = self._namespace_of(obj, res)
        created: Obj = self.request(
            "POST", res.path(ns), body=obj,
            query={"dryRun": "All" if dry_run else None, "fieldManager": field_manager},
            what=f"{'check' if dry_run else 'create'} {kind_name_ns(obj)}")
        return created

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

    def wait_exists(self, api_version: str, kind: str, name: str, namespace: str | None = None,
                    *, timeout: float = 60.0, hint: str | None = None) -> Obj:
        """Wait until the object exists (made by a controller, e.g. a namespace's
        ``default`` ServiceAccount); KubeTimeout otherwise."""
        deadline = time.monotonic() + timeout
        pause = 0.02
        while True:
            found = self.get(api_version, kind, name, namespace)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                where = f" in {namespace}" if namespace else ""
                raise KubeTimeout(f"{kind}/{name}{where} did not appear in {timeout:.0f}s",
                                  hint=hint or "is the controller that makes it running?")
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def get_scale(self, kind: str, name: str, namespace: str | None = None) -> Obj:
        res = self.resource("apps/v1", kind)
        scale: Obj = self.request("GET", res.path(namespace or self.namespace, name, "scale"),
                                  what=f"get scale of {kind}/{name}")
        return scale

    def scale(self, kind: str, name: str, replicas: int, namespace: str | None = None, *,
              field_manager: str = FIELD_MANAGER) -> Obj:
        """Set replicas through the scale subresource (needs only that RBAC permission)."""
        if replicas < 0:
            raise KubeInvalid(f"replicas must be 0 or more, not {replicas}")
        res = self.resource("apps/v1", kind)
        scaled: Obj = self.request(
            "PATCH", res.path(namespace or self.namespace, name, "scale"),
            body={"spec": {"replicas": replicas}}, query={"fieldManager": field_manager},
            content_type="application/merge-patch+json", what=f"scale {kind}/{name}")
        return scaled

    def patch(self, api_version: str, kind: str, name: str, patch: Obj,
              namespace: str | None = None, *, field_manager: str = FIELD_MANAGER) -> Obj:
        """A JSON merge patch (e.g. one annotation on a pod someone else manages)."""
        res = self.resource(api_version, kind)
        ns = (namespace or self.namespace) if res.namespaced else None
        patched: Obj = self.request("PATCH", res.path(ns, name), body=patch,
                                    query={"fieldManager": field_manager},
                                    content_type="application/merge-patch+json",
                                    what=f"patch {kind}/{name}")
        return patched

    def evict(self, name: str, namespace: str | None = None) -> None:
        """Evict a pod through the Eviction API (policy/v1), as a node drain does: the API
        server refuses when a PodDisruptionBudget would break (KubeDisruptionRefused)."""
        ns = namespace or self.namespace
        body = {"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": name, "namespace": ns}}
        try:
            self.request("POST", self.resource("v1", "Pod").path(ns, name, "eviction"),
                         body=body, what=f"evict Pod/{name}", retry_busy=False)
        except KubeError as exc:
            if exc.status != 429:
                raise
            raise KubeDisruptionRefused(exc.message, hint="its disruption budget allows no "
                                        "more evictions now; wait until evicted pods are "
                                        "replaced and ready", status=429,
                                        reason=exc.reason) from None

    # -- waiting -----------------------------------------------------------------------

    def wait_for(self, objs: Iterable[Obj], *, timeout: float = 300.0,
                 on_progress: Callable[[list[WorkloadStatus]], None] | None = None,
                 ) -> list[WorkloadStatus]:
        """Wait until every workload among ``objs`` is ready; KubeTimeout otherwise.

        Watches each workload (two requests each, however long the rollout takes)
        rather than polling, so a change is seen the moment the API server has it.
        """
        import queue

        targets = [o for o in objs if o.get("kind") in READY_CHECKS]
        if not targets:
            return []
        deadline = time.monotonic() + timeout
        changes: queue.Queue[tuple[int, str, Obj | MmerepError]] = queue.Queue()
        stop = threading.Event()

        def follow(index: int, obj: Obj) -> None:
            meta = obj["metadata"]
            try:
                for event in self.watch(obj["apiVersion"], obj["kind"], meta.get("namespace"),
                                        field_selector=f"metadata.name={meta['name']}",
                                        timeout=timeout + 5, stop=stop, chunk=5.0,
                                        mark_synced=True):
                    changes.put((index, event["type"], event["object"]))
            except MmerepError as exc:
                changes.put((index, "ERROR", exc))

        for index, obj in enumerate(targets):
            threading.Thread(target=follow, args=(index, obj), daemon=True,
                             name=f"wait-{obj['metadata']['name']}").start()
        live: dict[int, Obj | None] = {}
        synced: set[int] = set()

        def statuses() -> list[WorkloadStatus]:
            return [workload_status(o, live.get(i)) for i, o in enumerate(targets)]

        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    waiting = ", ".join(f"{s.kind}/{s.name} ({s.ready_pods}/{s.desired} ready)"
                                        for s in statuses() if not s.ready)
                    raise KubeTimeout(f"not ready after {timeout:.0f}s: {waiting}",
                                      hint="see the events (mme-rep env status) for why")
                try:
                    index, kind, item = changes.get(timeout=min(remaining, HEARTBEAT))
                except queue.Empty:  # nothing changed: progress still reports (warnings)
                    if on_progress and len(synced) == len(targets):
                        on_progress(statuses())
                    continue
                if isinstance(item, MmerepError):
                    raise item
                if kind == "SYNCED":
                    synced.add(index)
                else:
                    live[index] = None if kind == "DELETED" else item
                if len(synced) < len(targets) or not changes.empty():
                    continue  # every workload listed, and a burst taken whole, first
                now = statuses()
                if on_progress:
                    on_progress(now)
                if all(s.ready for s in now):
                    return now
        finally:
            stop.set()


def _resolve_kubeconfig(path: str | os.PathLike[str] | None, context: str | None,
                        ) -> tuple[Connection, dict[str, bytes], bool]:
    """Resolve a kubeconfig context with the official client (every auth form it knows).

    Returns the connection, the contents of the files it points at (the client writes
    inline certificates to temporary files that vanish with the process), and whether
    it may be cached: not when its token comes from a plugin without an expiry.
    """
    from kubernetes import client
    from kubernetes.config import kube_config
    from kubernetes.config.config_exception import ConfigException

    configuration = client.Configuration()
    where = str(path) if path else kube_config.KUBE_CONFIG_DEFAULT_LOCATION
    try:
        # What load_kube_config does, keeping the loader to learn the token's expiry.
        loader = kube_config._get_kube_config_loader(
            filename=where, active_context=context, persist_config=False)
        loader.load_and_set(configuration)
        chosen = loader.current_context
    except (ConfigException, FileNotFoundError, OSError, KeyError, TypeError) as exc:
        raise KubeError(f"cannot load kubeconfig {where}"
                        f"{f' context {context!r}' if context else ''}: {exc}",
                        hint="check the file and the context name (kubectl config "
                        "get-contexts)") from exc
    if getattr(configuration, "proxy", None):
        raise KubeError(f"kubeconfig {where}: proxy-url is not supported by mme-rep",
                        hint="reach the API server directly, e.g. through an SSH tunnel")
    user = loader._user
    plugin = bool(user) and ("exec" in user or "auth-provider" in user or "tokenFile" in user)
    expiry = loader.__dict__.get("expiry")
    expires = expiry.timestamp() if expiry is not None else None
    keep = {}
    for name in ("ca_file", "cert_file", "key_file"):
        source = {"ca_file": configuration.ssl_ca_cert, "cert_file": configuration.cert_file,
                  "key_file": configuration.key_file}[name]
        if source:
            keep[name] = Path(source).read_bytes()
    conn = Connection(
        host=configuration.host, ca_file=configuration.ssl_ca_cert,
        cert_file=configuration.cert_file, key_file=configuration.key_file,
        token=configuration.api_key.get("BearerToken"), verify=configuration.verify_ssl,
        tls_server_name=getattr(configuration, "tls_server_name", None), expires=expires,
        namespace=(chosen or {}).get("context", {}).get("namespace") or "default",
        context=(chosen or {}).get("name"))
    return conn, keep, not plugin or expires is not None


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
    started: int | None = None  # pods running and past their start-up probe, when known


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
