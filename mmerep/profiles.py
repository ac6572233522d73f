"""Deployment-target profiles (``-F NAME``): cluster, namespace, registry and defaults.

Profiles live in one YAML file: ``--profiles FILE``, else ``$MMEREP_PROFILES``, else
``config_dir()/profiles.yaml``. The local cluster's profile ``local`` is built in; a
file may define its own ``local`` to replace it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from mmerep.errors import MmerepError, UsageError
from mmerep.grammar import assignments, oci
from mmerep.grammar.names import DNS_LABEL, DNS_SUBDOMAIN, LABEL_NAME, LABEL_VALUE
from mmerep.paths import config_dir, state_dir
from mmerep.quantity import parse_cpu, parse_memory
from mmerep.workload_policy import profile_fields

ENV_VAR = "MMEREP_PROFILES"
LOCAL = "local"
LOCAL_CONTEXT = "mmerep-local"
# Stands for the local cluster's registry, whose port is known only while it runs.
LOCAL_REGISTRY = "local"
TIERS = ("local-ssd", "bulk", "datalake")
RESOURCES = ("cpu", "memory")
TOLERATION_KEYS = ("key", "operator", "value", "effect", "tolerationSeconds")
TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
FIELDS = ("context", "kubeconfig", "namespace", "registry", "project", "requests", "limits",
          "storage_classes", "node_selector", "tolerations", "ssh_domain", "ingress_domain",
          "max_executors", "max_cpu", "max_memory",
          # Workload policy (mmerep/workload_policy.py): identity, scratch, egress, priority.
          "uid", "gid", "scratch", "scratch_volume", "egress", "cluster_objects",
          "priority_classes",
          # How sibling pools reach this member's collectors (flocking): mmerep/campaign.
          "flocking",
          # Where the console reads its plots' history (Prometheus' HTTP API).
          "prometheus")
COLLECTOR_SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
REQUIRED = {"namespace": "s3", "registry": "harbor.example.org", "project": "mme-rep"}

@dataclass(frozen=True, kw_only=True)
class Profile:
    """One deployment target. ``registry`` is host[:port], or LOCAL_REGISTRY."""

    name: str
    context: str | None = None
    kubeconfig: str | None = None
    namespace: str
    registry: str
    project: str
    requests: dict[str, str] = field(default_factory=dict)
    limits: dict[str, str] = field(default_factory=dict)
    storage_classes: dict[str, str] = field(default_factory=dict)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    ssh_domain: str | None = None
    ingress_domain: str | None = None
    max_executors: int | None = None
    max_cpu: str | None = None
    max_memory: str | None = None
    uid: int | None = None
    gid: int | None = None
    scratch: str | None = None
    scratch_volume: bool | None = None
    egress: dict[str, Any] = field(default_factory=dict)
    cluster_objects: bool | None = None
    priority_classes: dict[str, str] = field(default_factory=dict)
    flocking: dict[str, str] = field(default_factory=dict)
    prometheus: str | None = None  # http(s)://host[:port][/prefix] of its HTTP API
    # The file it came from; None for the built-in ``local``. Not part of the profile.
    source: str | None = field(default=None, compare=False)

    def to_yaml_dict(self) -> dict[str, Any]:
        """The profile's body as written to the file: set fields only, in file order."""
        return {key: value for key in FIELDS
                if (value := getattr(self, key)) is not None and value not in ({}, [])}

    def to_dict(self) -> dict[str, Any]:
        """Every field, the name and the source: for ``profile show -o json``."""
        return dataclasses.asdict(self)


def local_profile() -> Profile:
    """The built-in profile of the local cluster (``mme-rep cluster up``)."""
    # mmerep.cluster.local's CONTEXT and kubeconfig_path(), without importing it: every
    # profile lookup builds this one, and that module costs a read command ~10 ms.
    return Profile(name=LOCAL, context=LOCAL_CONTEXT, kubeconfig=str(state_dir() / "kubeconfig"),
                   namespace="mmerep", registry=LOCAL_REGISTRY, project="mme-rep",
                   requests={"cpu": "1", "memory": "2Gi"},
                   storage_classes={"local-ssd": "mmerep-local-ssd"},
                   node_selector={"mme-rep/processing": "true"},
                   ssh_domain="mmerep-local", max_executors=500, cluster_objects=True,
                   # Scratch stays an emptyDir until the local cluster runs the provisioner.
                   scratch_volume=False)


def profiles_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--profiles FILE``, else ``$MMEREP_PROFILES``, else ``config_dir()/profiles.yaml``."""
    chosen = explicit or os.environ.get(ENV_VAR)
    return Path(chosen).expanduser() if chosen else config_dir() / "profiles.yaml"


def load_profiles(path: str | os.PathLike[str] | None = None) -> dict[str, Profile]:
    """Every profile by name, ``local`` first. A missing default file holds none."""
    file = profiles_path(path)
    if file.exists():
        raw = _read_document(file).get("profiles") or {}
    elif path or os.environ.get(ENV_VAR):
        raise UsageError(f"profiles file {file} does not exist",
                         hint="check the path, or create it with: mme-rep profile add NAME "
                         f"--namespace NS --registry HOST --project P --profiles {file}")
    else:
        raw = {}
    profiles = {} if LOCAL in raw else {LOCAL: local_profile()}
    for name, body in raw.items():
        try:
            profile = validate(str(name), body)
        except UsageError as exc:
            raise UsageError(f"{file}: {exc.message}", exc.hint) from None
        profiles[profile.name] = dataclasses.replace(profile, source=str(file))
    return profiles


def get_profile(name: str, path: str | os.PathLike[str] | None = None) -> Profile:
    """The profile ``name``; UsageError listing the known names when there is none."""
    profiles = load_profiles(path)
    if name in profiles:
        return profiles[name]
    groups = load_groups(path)
    if name in groups:
        raise UsageError(f"'{name}' is a group of profiles ({', '.join(groups[name])}); "
                         "this command needs one of them", hint="pick one with -F MEMBER")
    import difflib  # here: every command reads profiles, few misspell one

    close = difflib.get_close_matches(name, profiles, n=1)
    hint = (f"did you mean '{close[0]}'? " if close else "") + f"known: {', '.join(profiles)}"
    raise UsageError(f"unknown profile '{name}'", hint=hint + "; add one with: mme-rep profile add")


def load_groups(path: str | os.PathLike[str] | None = None) -> dict[str, list[str]]:
    """Profile groups by name: ``groups: {general: {members: [dev-a, dev-b]}}`` in the
    profiles file. Members are profiles of the same file (or ``local``)."""
    file = profiles_path(path)
    raw = (_read_document(file).get("groups") or {}) if file.exists() else {}
    if not isinstance(raw, dict):
        raise UsageError(f"{file}: 'groups' must be a mapping of name to group",
                         hint="groups: {general: {members: [dev-a, dev-b]}}")
    known = load_profiles(path) if raw else {}
    groups = {}
    for name, body in raw.items():
        where = f"{file}: group '{name}'"
        if not isinstance(name, str) or not DNS_LABEL.fullmatch(name) or name in known:
            raise UsageError(f"{where}: the name must be a DNS label that no profile has",
                             hint="e.g. general")
        members = body.get("members") if isinstance(body, dict) else None
        if not isinstance(members, list) or not members or set(body) != {"members"}:
            raise UsageError(f"{where} must be {{members: [PROFILE, ...]}}",
                             hint="groups: {general: {members: [dev-a, dev-b]}}")
        for member in members:
            if member not in known:
                raise UsageError(f"{where}: member '{member}' is not a profile",
                                 hint=_did_you_mean(str(member), list(known), "profiles"))
        groups[name] = [str(m) for m in dict.fromkeys(members)]
    return groups


def members_of(name: str, path: str | os.PathLike[str] | None = None) -> list[Profile]:
    """The profiles ``-F NAME`` stands for: a group's members in order, or the one profile."""
    groups = load_groups(path)
    if name in groups:
        profiles = load_profiles(path)
        return [profiles[m] for m in groups[name]]
    return [get_profile(name, path)]


def add_profile(profile_dict: Mapping[str, Any], path: str | os.PathLike[str] | None = None,
                replace: bool = False) -> Profile:
    """Validate ``{"name": ..., fields...}`` and write it into the file, keeping the others.

    The file is replaced atomically (temp file + rename): on any error it is untouched.
    Comments in the file are not kept.
    """
    body = dict(profile_dict)
    name = body.pop("name", None)
    if not isinstance(name, str) or not name:
        raise UsageError("the profile has no name", hint="give it one, e.g. dev-s3")
    profile = validate(name, body)
    file = profiles_path(path)
    document = _read_document(file) if file.exists() else {}
    existing = document.get("profiles") or {}
    if (name in existing or name == LOCAL) and not replace:
        where = str(file) if name in existing else "built in"
        raise UsageError(f"profile '{name}' already exists ({where})",
                         hint="use --replace to overwrite it")
    document["profiles"] = {**existing, name: profile.to_yaml_dict()}
    import yaml

    _write_atomically(file, yaml.safe_dump(document, sort_keys=False, default_flow_style=False))
    return dataclasses.replace(profile, source=str(file))


def resolved_registry(profile: Profile) -> str:
    """host[:port] of the profile's registry; the local one only while the cluster runs."""
    if profile.registry == LOCAL_REGISTRY:
        from mmerep.cluster.local import registry_address

        return registry_address()
    return profile.registry


def image_reference(profile: Profile, template: str, image: str) -> str:
    """``sentinel3:v0.1.0`` -> ``<registry>/<project>/<template>/sentinel3:v0.1.0``.

    A full reference (its first path part is a host: it has a "." or ":", or is
    "localhost") is taken as is. A tag or digest is required: "latest" is never assumed.
    """
    full = oci.has_host(image)
    pattern = oci.REFERENCE if full else oci.RELATIVE
    match = pattern.fullmatch(image) if len(image) <= 512 else None
    if match is None:
        lower = image.lower() != image and pattern.fullmatch(image.lower())
        raise UsageError(f"image '{image}' is not a valid image reference",
                         hint="repository names are lowercase" if lower else oci.IMAGE_FORMS)
    if not match["tag"] and not match["digest"]:
        raise UsageError(f"image '{image}' has no tag",
                         hint=f"give an explicit tag, e.g. {image}:v0.1.0; "
                         "'latest' is never assumed")
    if full:
        reference = image
    else:
        if not oci.PATH_PART.fullmatch(template):
            raise UsageError(f"environment template '{template}' is not valid in an image "
                             "name", hint="use lowercase letters, digits, '.', '_' and '-', "
                             "e.g. htcondor-batch")
        reference = f"{resolved_registry(profile)}/{profile.project}/{template}/{image}"
    name = oci.REFERENCE.fullmatch(reference)
    if name is None or len(name["name"]) > 255:
        raise UsageError(f"image reference '{reference}' is not valid (or longer than 255 "
                         "characters)", hint=oci.IMAGE_FORMS)
    return reference


def validate(name: str, raw: Any) -> Profile:
    """A Profile from a profile's YAML body; UsageError saying what is wrong and where."""
    return _Validator(name).profile(raw)


def parse_assignments(items: list[str], option: str) -> dict[str, str]:
    """``["a=b", "c=d"]`` from repeated ``--option KEY=VALUE`` into a mapping."""
    return assignments.parse_assignments(items, option, "mme-rep/processing=true")


def parse_toleration(text: str) -> dict[str, str]:
    """kubectl's taint syntax: ``KEY[=VALUE]:EFFECT`` (Equal) or ``KEY:EFFECT`` (Exists)."""
    spec, colon, effect = text.rpartition(":")
    key, eq, value = spec.partition("=")
    if not colon or not key or effect not in TOLERATION_EFFECTS:
        raise UsageError(f"toleration '{text}' is not KEY[=VALUE]:EFFECT",
                         hint="e.g. dedicated=processing:NoSchedule; effects: "
                         + ", ".join(TOLERATION_EFFECTS))
    if eq:
        return {"key": key, "operator": "Equal", "value": value, "effect": effect}
    return {"key": key, "operator": "Exists", "effect": effect}


def _did_you_mean(word: str, choices: tuple[str, ...] | list[str], noun: str = "keys") -> str:
    import difflib

    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else f"known {noun}: {', '.join(choices)}"


def _type_name(value: Any) -> str:
    return {dict: "mapping", list: "list", str: "string", bool: "boolean", int: "integer",
            float: "number", type(None): "empty"}.get(type(value), type(value).__name__)


class _Validator:
    """Checks one profile body; every message starts with ``profile 'NAME':``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def fail(self, message: str, hint: str | None = None) -> NoReturn:
        raise UsageError(f"profile '{self.name}': {message}", hint)

    def profile(self, raw: Any) -> Profile:
        if not DNS_LABEL.fullmatch(self.name):
            self.fail("the name must be a DNS label",
                      hint="lowercase letters, digits and '-', at most 63 characters, "
                      "e.g. dev-s3")
        raw = {} if raw is None else raw
        if not isinstance(raw, dict):
            self.fail(f"must be a mapping of fields, not a {_type_name(raw)}")
        for key in raw:
            if key not in FIELDS:
                self.fail(f"unknown key '{key}'", hint=_did_you_mean(str(key), FIELDS))
        if self.name == LOCAL and raw.get("registry") in (None, ""):
            raw = {**raw, "registry": LOCAL_REGISTRY}
        for key, example in REQUIRED.items():
            if raw.get(key) in (None, ""):
                self.fail(f"missing field '{key}'", hint=f"add e.g. {key}: {example}")
        requests = self.resources(raw, "requests")
        limits = self.resources(raw, "limits")
        for res, parse in (("cpu", parse_cpu), ("memory", parse_memory)):
            if res in requests and res in limits and parse(limits[res]) < parse(requests[res]):
                self.fail(f"limits.{res} '{limits[res]}' is below requests.{res} "
                          f"'{requests[res]}'", hint="raise the limit or lower the request")
        return Profile(
            name=self.name,
            context=self.text(raw, "context"),
            kubeconfig=self.text(raw, "kubeconfig"),
            namespace=self.matching(raw, "namespace", DNS_LABEL,
                                    "lowercase letters, digits and '-', at most 63 "
                                    "characters, e.g. s3"),
            registry=self.registry(raw),
            project=self.matching(raw, "project", oci.REPOSITORY,
                                  "lowercase letters, digits, '.', '_' and '-', e.g. mme-rep"),
            requests=requests,
            limits=limits,
            storage_classes=self.storage_classes(raw),
            node_selector=self.node_selector(raw),
            tolerations=self.tolerations(raw),
            ssh_domain=self.matching(raw, "ssh_domain", DNS_SUBDOMAIN,
                                     "a lowercase DNS name, e.g. mmerep-general-dev"),
            ingress_domain=self.matching(raw, "ingress_domain", DNS_SUBDOMAIN,
                                         "a lowercase DNS name, e.g. apps.example.org"),
            max_executors=self.max_executors(raw),
            max_cpu=self.quantity(raw.get("max_cpu"), "max_cpu", parse_cpu),
            max_memory=self.quantity(raw.get("max_memory"), "max_memory", parse_memory),
            **profile_fields(raw, self.fail),
            flocking=self.flocking(raw),
            prometheus=self.prometheus(raw),
        )

    def prometheus(self, raw: dict[str, Any]) -> str | None:
        """The Prometheus whose HTTP API serves the console's plots: an http(s) URL with a
        host and no query, user or password (no secret lives in the profiles file)."""
        value = self.text(raw, "prometheus")
        if value is None:
            return None
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError:
            parts = None
        example = "e.g. http://prometheus.monitoring:9090"
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            self.fail(f"prometheus '{value}' is not an http(s) address",
                      hint=f"give the address of its HTTP API, {example}")
        if parts.query or parts.fragment or parts.username or parts.password:
            self.fail(f"prometheus '{value}' has a query, fragment or credentials",
                      hint=f"give only scheme, host, port and path prefix, {example}")
        return value.rstrip("/")

    def flocking(self, raw: dict[str, Any]) -> dict[str, str]:
        """How sibling pools reach this member's collectors:
        ``{service_type: LoadBalancer, address: "{env}-pool.example.org:9618"}``."""
        value = self.mapping(raw, "flocking")
        for key, item in value.items():
            if key not in ("service_type", "address"):
                self.fail(f"flocking: unknown key '{key}'",
                          hint=_did_you_mean(str(key), ("service_type", "address")))
            if not isinstance(item, str) or not item:
                self.fail(f"flocking.{key} must be a string")
        kind = value.get("service_type", "ClusterIP")
        if kind not in COLLECTOR_SERVICE_TYPES:
            self.fail(f"flocking.service_type '{kind}' is not valid",
                      hint="use " + ", ".join(COLLECTOR_SERVICE_TYPES))
        return dict(value)

    def text(self, raw: dict[str, Any], key: str) -> str | None:
        value = raw.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            scalar = not isinstance(value, dict | list)
            self.fail(f"{key} must be a string, not a {_type_name(value)}",
                      hint=f'quote it: {key}: "{value}"' if scalar else None)
        return value

    def matching(self, raw: dict[str, Any], key: str, pattern: re.Pattern[str],
                 forms: str) -> Any:
        value = self.text(raw, key)
        if value is not None and not pattern.fullmatch(value):
            self.fail(f"{key} '{value}' is not valid", hint=f"use {forms}")
        return value

    def registry(self, raw: dict[str, Any]) -> str:
        value = self.text(raw, "registry")
        assert value is not None  # required, checked above
        if value == LOCAL_REGISTRY or oci.REGISTRY.fullmatch(value):
            return value
        host, _, rest = value.removeprefix("https://").removeprefix("http://").partition("/")
        if "://" in value:
            hint = f"drop the scheme: registry: {host}"
        elif rest:
            hint = f"give only host[:port] and put the path in project: registry: {host}, " \
                f"project: {rest}"
        else:
            hint = "use host[:port], e.g. harbor.example.org or 127.0.0.1:5000"
        self.fail(f"registry '{value}' is not a registry host", hint=hint)

    def quantity(self, value: Any, key: str, parse: Any) -> str | None:
        if value is None or value == "":
            return None
        try:
            parse(value, key)
        except UsageError as exc:
            self.fail(exc.message, exc.hint)
        return str(value)

    def mapping(self, raw: dict[str, Any], key: str) -> dict[Any, Any]:
        value = raw.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(f"{key} must be a mapping, not a {_type_name(value)}")
        return value

    def resources(self, raw: dict[str, Any], key: str) -> dict[str, str]:
        result = {}
        for res, value in self.mapping(raw, key).items():
            if res not in RESOURCES:
                self.fail(f"{key}: unknown key '{res}'", hint=_did_you_mean(str(res), RESOURCES))
            parse = parse_cpu if res == "cpu" else parse_memory
            text = self.quantity(value, f"{key}.{res}", parse)
            if text is not None:  # "" means unset, as the scaler prints it
                result[res] = text
        return result

    def storage_classes(self, raw: dict[str, Any]) -> dict[str, str]:
        result = {}
        for tier, value in self.mapping(raw, "storage_classes").items():
            if tier not in TIERS:
                self.fail(f"storage_classes: unknown tier '{tier}'",
                          hint=_did_you_mean(str(tier), TIERS, "tiers"))
            if not isinstance(value, str) or not DNS_SUBDOMAIN.fullmatch(value):
                self.fail(f"storage_classes.{tier} '{value}' is not a storage class name",
                          hint="use a lowercase DNS name, e.g. cephfs")
            result[tier] = value
        return result

    def node_selector(self, raw: dict[str, Any]) -> dict[str, str]:
        result = {}
        for key, value in self.mapping(raw, "node_selector").items():
            prefix, slash, label = str(key).rpartition("/")
            if not isinstance(key, str) or not LABEL_NAME.fullmatch(label) or (
                    slash and not DNS_SUBDOMAIN.fullmatch(prefix)):
                self.fail(f"node_selector key '{key}' is not a label name",
                          hint="use [prefix/]name, e.g. mme-rep/processing")
            if not isinstance(value, str):
                text = str(value).lower() if isinstance(value, bool) else value
                self.fail(f"node_selector value of '{key}' must be a string, not a "
                          f"{_type_name(value)}", hint=f'quote it: {key}: "{text}"')
            if not LABEL_VALUE.fullmatch(value):
                self.fail(f"node_selector value '{value}' of '{key}' is not a label value",
                          hint="letters, digits, '-', '_' and '.', at most 63 characters")
            result[key] = value
        return result

    def tolerations(self, raw: dict[str, Any]) -> list[dict[str, Any]]:
        value = raw.get("tolerations")
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(f"tolerations must be a list, not a {_type_name(value)}",
                      hint="e.g. tolerations: [{key: dedicated, operator: Equal, "
                      "value: processing, effect: NoSchedule}]")
        return [self.toleration(i, t) for i, t in enumerate(value)]

    def toleration(self, index: int, item: Any) -> dict[str, Any]:
        where = f"tolerations[{index}]"
        if not isinstance(item, dict):
            self.fail(f"{where} must be a mapping, not a {_type_name(item)}")
        for key in item:
            if key not in TOLERATION_KEYS:
                self.fail(f"{where}: unknown key '{key}'",
                          hint=_did_you_mean(str(key), TOLERATION_KEYS))
        for key in ("key", "operator", "value", "effect"):
            if key in item and not isinstance(item[key], str):
                self.fail(f"{where}.{key} must be a string, not a {_type_name(item[key])}",
                          hint=f'quote it: {key}: "{str(item[key]).lower()}"')
        operator = item.get("operator", "Equal")
        if operator not in ("Equal", "Exists"):
            self.fail(f"{where}.operator '{operator}' is not Equal or Exists")
        if operator == "Exists" and item.get("value"):
            self.fail(f"{where} has a value but operator Exists", hint="drop the value")
        if not item.get("key") and operator != "Exists":
            self.fail(f"{where} has no key", hint="give a key, or use operator: Exists")
        effect = item.get("effect", "")
        if effect and effect not in TOLERATION_EFFECTS:
            self.fail(f"{where}.effect '{effect}' is not valid",
                      hint="use " + ", ".join(TOLERATION_EFFECTS))
        if "tolerationSeconds" in item:
            seconds = item["tolerationSeconds"]
            if isinstance(seconds, bool) or not isinstance(seconds, int):
                self.fail(f"{where}.tolerationSeconds must be an integer")
            if effect != "NoExecute":
                self.fail(f"{where}.tolerationSeconds needs effect NoExecute")
        return dict(item)

    def max_executors(self, raw: dict[str, Any]) -> int | None:
        value = raw.get("max_executors")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self.fail(f"max_executors '{value}' is not a positive integer", hint="e.g. 400")
        return value


def _read_document(file: Path) -> dict[str, Any]:
    """The whole file as a mapping with a ``profiles`` mapping; UsageError when it is not."""
    document = _cached_document(file)
    if document is None:
        document = _parse_document(file)
        _keep_document(file, document)
    document = {} if document is None else document
    if not isinstance(document, dict):
        raise UsageError(f"{file}: must be a mapping with the key 'profiles'",
                         hint="profiles: {dev-s3: {namespace: s3, ...}}")
    return _checked_document(file, document)


def _parse_document(file: Path) -> Any:
    import yaml

    try:
        text = file.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read profiles file {file}: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise UsageError(f"{file}: not valid YAML{line}: {problem}",
                         hint="fix the syntax; see: mme-rep profile add --help") from None


def _document_key(file: Path) -> str | None:
    try:
        st = file.stat()
    except OSError:
        return None
    return f"{file.resolve()}:{st.st_mtime_ns}:{st.st_size}:{st.st_ino}:{st.st_mode}"


def _cache_file(file: Path) -> Path:
    import zlib

    from mmerep.paths import cache_dir

    return cache_dir() / "profiles" / f"{zlib.crc32(str(file.resolve()).encode()):08x}.json"


def _cached_document(file: Path) -> Any:
    """The file's document as parsed before, while the file is unchanged (path, mtime,
    size, inode, mode): read commands then skip PyYAML (~10 ms of a ~100 ms command)."""
    import json

    key = _document_key(file)
    try:
        kept = json.loads(_cache_file(file).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(kept, dict) or key is None or kept.get("key") != key:
        return None
    return kept.get("document")


def _keep_document(file: Path, document: Any) -> None:
    """Keep a document JSON says exactly (not one with dates or non-string keys);
    readable by the user only, as the file may be."""
    import json

    key = _document_key(file)
    try:
        text = json.dumps({"key": key, "document": document})
        if key is None or json.loads(text)["document"] != document:
            return
        target = _cache_file(file)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except (OSError, TypeError, ValueError):
        pass  # a cache only


def _checked_document(file: Path, document: dict[str, Any]) -> dict[str, Any]:
    for key in document:
        if key not in ("profiles", "groups"):
            raise UsageError(f"{file}: unknown top-level key '{key}'",
                             hint=_did_you_mean(str(key), ["profiles", "groups"]))
    if not isinstance(document.get("profiles") or {}, dict):
        raise UsageError(f"{file}: 'profiles' must be a mapping of name to profile",
                         hint="profiles: {dev-s3: {namespace: s3, ...}}")
    return document


def _write_atomically(file: Path, text: str) -> None:
    target = Path(os.path.realpath(file))  # replace a symlink's target, not the link
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        import tempfile  # here: only writing the file needs it

        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise MmerepError(f"cannot write profiles file {file}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if target.exists():
            os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise MmerepError(f"cannot write profiles file {file}: {exc.strerror}") from None
        raise
