"""A small client for the OCI distribution API (what Harbor and the CNCF registry speak).

Enough to push an image assembled in Python (the demo and tests build their own, since
no base image can be pulled here), resolve a tag to its digest, and list repositories.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import io
import json
import logging
import os
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import requests.auth

from mmerep.errors import RegistryError
from mmerep.retry import RetryPolicy

log = logging.getLogger(__name__)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}


def layer_from_files(files: dict[str, bytes], mode: int = 0o755) -> tuple[Blob, str]:
    """A gzipped tar layer holding ``files``; returns the blob and its diff ID."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, content in sorted(files.items()):
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(content), mode, 0
            tar.addfile(info, io.BytesIO(content))
    diff_id = sha256_digest(raw.getvalue())
    return Blob(OCI_LAYER, gzip.compress(raw.getvalue(), mtime=0)), diff_id


def image_config(diff_ids: list[str], *, user: str = "1000:1000",
                 entrypoint: list[str] | None = None,
                 labels: dict[str, str] | None = None) -> Blob:
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"User": user, "Entrypoint": entrypoint or ["/bin/sh"],
                   "Labels": labels or {}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    return Blob(OCI_CONFIG, json.dumps(config, sort_keys=True).encode())


def image_manifest(config: Blob, layers: list[Blob]) -> Blob:
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": config.descriptor(), "layers": [b.descriptor() for b in layers]}
    return Blob(OCI_MANIFEST, json.dumps(manifest, sort_keys=True).encode())


LOGIN_HINT = ("log in with podman/buildah/docker login (their auth file is read), or set "
              "MMEREP_REGISTRY_USER and MMEREP_REGISTRY_PASSWORD")


def _auth_files() -> list[Path]:
    """Where podman, buildah, skopeo and docker keep registry logins, in that order."""
    files = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    if os.environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    docker = os.environ.get("DOCKER_CONFIG")
    files.append(Path(docker) / "config.json" if docker else
                 Path.home() / ".docker" / "config.json")
    return files


def registry_credentials(host: str) -> tuple[str, str] | None:
    """(user, password) for ``host`` from the environment or the usual auth files."""
    user, password = (os.environ.get("MMEREP_REGISTRY_USER"),
                      os.environ.get("MMEREP_REGISTRY_PASSWORD"))
    if user and password:
        return user, password
    for file in _auth_files():
        try:
            auths = json.loads(file.read_text()).get("auths") or {}
        except (OSError, ValueError, AttributeError):
            continue
        for key in (host, f"https://{host}", f"http://{host}", f"https://{host}/v1/"):
            entry = auths.get(key)
            if not entry:
                continue
            if entry.get("auth"):
                try:
                    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    continue
            else:
                user, password = entry.get("username"), entry.get("password")
            if user and password:
                return user, password
    return None


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', rest))


class RegistryAuth(requests.auth.AuthBase):
    """Answers a registry's 401 challenge once per request: Basic, or Bearer (token
    service, as Harbor and Docker Hub use), with the credentials found for the host."""

    def __init__(self, credentials: tuple[str, str] | None, timeout: float = 15.0) -> None:
        self.credentials = credentials
        self.timeout = timeout
        self._header: str | None = None  # the last accepted answer, tried first next time

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self._header and "Authorization" not in request.headers:
            request.headers["Authorization"] = self._header
        request.register_hook("response", self._on_response)
        return request

    def _answer(self, challenge: str) -> str | None:
        scheme, params = _challenge(challenge)
        if scheme == "basic" and self.credentials:
            user, password = self.credentials
            return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if scheme == "bearer" and params.get("realm"):
            query = {k: v for k, v in params.items() if k in ("service", "scope")}
            try:
                resp = requests.get(params["realm"], params=query, auth=self.credentials,
                                    timeout=self.timeout)
            except requests.RequestException:
                return None
            if resp.status_code != 200:
                return None
            body = resp.json()
            token = body.get("token") or body.get("access_token")
            return f"Bearer {token}" if token else None
        return None

    def _on_response(self, resp: requests.Response, **kw: Any) -> requests.Response:
        if resp.status_code != 401 or resp.request.headers.get("X-Mmerep-Auth-Retry"):
            return resp
        answer = self._answer(resp.headers.get("WWW-Authenticate", ""))
        if answer is None:
            return resp
        self._header = answer
        resp.content  # noqa: B018 (read the body so the connection can be reused)
        resp.close()
        retry = resp.request.copy()
        retry.headers["Authorization"] = answer
        retry.headers["X-Mmerep-Auth-Retry"] = "1"
        assert resp.connection is not None
        again: requests.Response = resp.connection.send(retry, **kw)
        again.history.append(resp)
        again.request = retry
        return again


# The registry's back-off is the API server's (Retry-After on 429 honoured by the caller).
RegistryRetry = RetryPolicy


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


class RegistryClient:
    """One registry, by host[:port]; plain HTTP for loopback, HTTPS otherwise.

    Credentials come from ``registry_credentials`` (environment, then the auth files of
    podman/buildah/docker) unless given.
    """

    def __init__(self, host: str, *, session: requests.Session | None = None,
                 timeout: float = 15.0, credentials: tuple[str, str] | None = None,
                 retry: RegistryRetry | None = None) -> None:
        self.host = host
        self.retry = retry or RegistryRetry()
        scheme = "http" if host.startswith(("127.", "localhost", "[::1]")) else "https"
        self.base = f"{scheme}://{host}"
        self.session = session or requests.Session()
        self.session.auth = RegistryAuth(credentials or registry_credentials(host), timeout)
        self.timeout = timeout

    def _call(self, method: str, path: str, what: str, ok: tuple[int, ...] = (200,),
              **kw: Any) -> requests.Response:
        """One request; connection errors, 429 and 5xx are retried with back-off."""
        delays = self.retry.delays()
        tries = 0
        while True:
            tries += 1
            try:
                resp = self.session.request(method, self.base + path, timeout=self.timeout,
                                            **kw)
            except requests.RequestException as exc:
                delay = next(delays, None)
                if delay is None:
                    raise RegistryError(
                        f"registry {self.host} unreachable ({what}) after {tries} attempts: "
                        f"{type(exc).__name__}",
                        hint="check the registry address and that it is running") from None
                log.warning("registry %s: %s (%s), retrying in %.1fs", self.host,
                            type(exc).__name__, what, delay)
                self.retry.sleep(delay)
                continue
            if resp.status_code in ok:
                return resp
            transient = resp.status_code == 429 or resp.status_code >= 500
            delay = next(delays, None) if transient else None
            if delay is None:
                break
            delay = max(delay, _retry_after(resp) or 0.0) if resp.status_code == 429 else delay
            log.warning("registry %s: HTTP %s (%s), retrying in %.1fs", self.host,
                        resp.status_code, what, delay)
            self.retry.sleep(delay)
        said = _error_text(resp)
        if not said and method == "HEAD":  # a HEAD answer has no body: ask for the message
            with contextlib.suppress(requests.RequestException):
                said = _error_text(self.session.get(self.base + path, timeout=self.timeout,
                                                    **kw))
        attempts = f" (after {tries} attempts)" if tries > 1 else ""
        hint = LOGIN_HINT if resp.status_code in (401, 403) else (
            "the registry is failing or overloaded; try again later, or ask its operators"
            if transient else None)
        raise RegistryError(f"registry {self.host} refused {what}: HTTP {resp.status_code} "
                            f"{resp.reason or ''}{': ' + said if said else ''}{attempts}",
                            hint=hint)

    def has_blob(self, repo: str, digest: str) -> bool:
        resp = self._call("HEAD", f"/v2/{repo}/blobs/{digest}", "blob check", ok=(200, 404))
        return resp.status_code == 200

    def push_blob(self, repo: str, blob: Blob) -> None:
        if self.has_blob(repo, blob.digest):
            return
        start = self._call("POST", f"/v2/{repo}/blobs/uploads/", "upload start", ok=(202,))
        location = start.headers["Location"]
        if location.startswith("/"):
            location = self.base + location
        sep = "&" if "?" in location else "?"
        try:
            resp = self.session.put(f"{location}{sep}digest={blob.digest}", data=blob.data,
                                    headers={"Content-Type": "application/octet-stream"},
                                    timeout=self.timeout)
        except requests.RequestException as exc:
            raise RegistryError(f"registry {self.host} unreachable (blob upload): {exc}") from None
        if resp.status_code != 201:
            raise RegistryError(f"blob upload refused: HTTP {resp.status_code} "
                                f"{_error_text(resp)}")

    def push_manifest(self, repo: str, reference: str, manifest: Blob) -> str:
        self._call("PUT", f"/v2/{repo}/manifests/{reference}", "manifest upload", ok=(201,),
                   data=manifest.data, headers={"Content-Type": manifest.media_type})
        return manifest.digest

    def push_image(self, repo: str, tag: str, layers: list[Blob], config: Blob) -> str:
        """Push layers, config and manifest; returns the manifest digest."""
        for blob in [*layers, config]:
            self.push_blob(repo, blob)
        return self.push_manifest(repo, tag, image_manifest(config, layers))

    def resolve(self, repo: str, tag: str) -> str:
        """The digest that ``repo:tag`` points to now."""
        resp = self._call("HEAD", f"/v2/{repo}/manifests/{tag}", f"resolving {repo}:{tag}",
                          ok=(200, 404), headers={"Accept": ", ".join(MANIFEST_TYPES)})
        if resp.status_code == 404:
            raise RegistryError(f"{self.host}/{repo}:{tag} not found in the registry",
                                hint="check the image name and tag (mme-rep images list)")
        digest = resp.headers.get("Docker-Content-Digest")
        if not digest:
            raise RegistryError(f"registry {self.host} gave no digest for {repo}:{tag}")
        return digest

    def tags(self, repo: str) -> list[str]:
        resp = self._call("GET", f"/v2/{repo}/tags/list", f"listing tags of {repo}",
                          ok=(200, 404))
        if resp.status_code == 404:
            return []
        return sorted(resp.json().get("tags") or [])

    def catalog(self) -> list[str]:
        resp = self._call("GET", "/v2/_catalog", "listing repositories")
        return sorted(resp.json().get("repositories") or [])

    def _paged(self, path: str, key: str, what: str,
               ok: tuple[int, ...] = (200,)) -> list[str] | None:
        """Every entry of a paginated list (``Link: <...>; rel="next"``); None on 404."""
        items: list[str] = []
        next_path: str | None = path
        while next_path:
            resp = self._call("GET", next_path, what, ok=ok)
            if resp.status_code == 404:
                return None
            items.extend(resp.json().get(key) or [])
            next_path = _next_link(resp.headers.get("Link", ""))
        return items

    def repositories(self, prefix: str = "") -> list[str]:
        """Every repository whose name starts with ``prefix``, across catalog pages."""
        names = self._paged("/v2/_catalog?n=1000", "repositories", "listing repositories")
        return sorted(n for n in names or [] if n.startswith(prefix))

    def all_tags(self, repo: str) -> list[str]:
        """Every tag of ``repo``, across pages; [] when the repository does not exist."""
        tags = self._paged(f"/v2/{repo}/tags/list?n=1000", "tags", f"listing tags of {repo}",
                           ok=(200, 404))
        return sorted(tags or [])

    def manifest(self, repo: str, reference: str) -> tuple[str, dict[str, Any]]:
        """The digest and body of the manifest (or index) ``repo:reference`` names."""
        resp = self._call("GET", f"/v2/{repo}/manifests/{reference}",
                          f"reading {repo}:{reference}", ok=(200, 404),
                          headers={"Accept": ", ".join(MANIFEST_TYPES)})
        if resp.status_code == 404:
            raise RegistryError(f"{self.host}/{repo}:{reference} not found in the registry",
                                hint="check the image name and tag (mme-rep images list)")
        try:
            body = resp.json()
        except ValueError:
            raise RegistryError(f"registry {self.host} sent a manifest for {repo}:{reference} "
                                "that is not JSON") from None
        return resp.headers.get("Docker-Content-Digest") or sha256_digest(resp.content), body

    def blob_json(self, repo: str, digest: str) -> dict[str, Any]:
        """A JSON blob (an image config) by digest."""
        resp = self._call("GET", f"/v2/{repo}/blobs/{digest}", f"reading blob {digest[:19]}")
        try:
            body = resp.json()
        except ValueError:
            raise RegistryError(f"blob {digest} of {repo} is not JSON") from None
        return body if isinstance(body, dict) else {}

    def created(self, repo: str, manifest: dict[str, Any]) -> str | None:
        """When the image was built: the ``org.opencontainers.image.created`` annotation,
        else the config's ``created``; for an index, its first linux/amd64 image's."""
        annotated = (manifest.get("annotations") or {}).get("org.opencontainers.image.created")
        if annotated:
            return str(annotated)
        if manifest.get("mediaType") in (OCI_INDEX, DOCKER_LIST) or "manifests" in manifest:
            entries = manifest.get("manifests") or []
            amd64 = [m for m in entries if (m.get("platform") or {}).get("architecture")
                     == "amd64"]
            chosen = (amd64 or entries)[:1]
            if not chosen:
                return None
            _, inner = self.manifest(repo, chosen[0]["digest"])
            return None if "manifests" in inner else self.created(repo, inner)
        config = manifest.get("config") or {}
        if not config.get("digest"):
            return None
        created = self.blob_json(repo, config["digest"]).get("created")
        return str(created) if created else None

    def images(self, prefix: str = "", workers: int = 8,
               skip: Callable[[str, str], bool] | None = None) -> list[dict[str, Any]]:
        """Every tag of every repository under ``prefix`` (but the (repository, tag) pairs
        ``skip`` picks),
        with its digest and build time. Tags are read in parallel: a Harbor project easily
        holds hundreds."""
        from concurrent.futures import ThreadPoolExecutor

        def describe(item: tuple[str, str]) -> dict[str, Any]:
            repo, tag = item
            digest, manifest = self.manifest(repo, tag)
            return {"repository": repo, "tag": tag, "digest": digest,
                    "created": self.created(repo, manifest)}

        repos = self.repositories(prefix)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pairs = [(r, t) for r, tags in zip(repos, pool.map(self.all_tags, repos),
                                               strict=True) for t in tags
                     if skip is None or not skip(r, t)]
            return list(pool.map(describe, pairs))


def _error_text(resp: requests.Response) -> str:
    try:
        errors = resp.json().get("errors") or []
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
    except ValueError:
        return resp.text[:200]


def _next_link(header: str) -> str | None:
    """The path of the ``rel="next"`` entry of a Link header (distribution and Harbor)."""
    for part in header.split(","):
        target, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", "") and target.strip().startswith("<"):
            url = target.strip()[1:-1]
            return url[url.index("/v2/"):] if "/v2/" in url else None
    return None
