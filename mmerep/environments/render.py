"""Rendering an environment for a profile, with the image pinned to its digest."""

from __future__ import annotations

from typing import Any

from mmerep import templates
from mmerep.environments.model import WORKLOAD_KINDS, Obj, Rendered
from mmerep.errors import UsageError
from mmerep.grammar import oci
from mmerep.profiles import Profile, image_reference, resolved_registry
from mmerep.quantity import format_cpu, format_memory, parse_cpu, parse_memory
from mmerep.workload_policy import policy_context


def env_name_from_image(image: str) -> str:
    """``sentinel3:v0.1.0`` -> ``sentinel3``; "_" and "." become "-"."""
    name = oci.image_name(image)
    if not name:
        raise UsageError(f"cannot take an environment name from image {image!r}",
                         hint="give one with --name")
    return name.replace("__", "-").replace("_", "-").replace(".", "-")


def _cores(quantity: str) -> int:
    return max(1, int(parse_cpu(str(quantity), "cpu") + 0.999))


def _mebibytes(quantity: str) -> int:
    return max(1, int(parse_memory(str(quantity), "memory")) // (1024 * 1024))


def render_environment(profile: Profile, template_name: str, image: str, *,
                       name: str | None = None, params: dict[str, Any] | None = None,
                       resolve: bool = True, revision: int = 1) -> Rendered:
    """Validate every input and render; raises UsageError/RegistryError before any change."""
    template = templates.load_template(template_name)
    env_name = templates.validate_env_name(name or env_name_from_image(image))
    values = templates.coerce_parameters(template, params or {})
    reference = image_reference(profile, template.name, image)
    if resolve:
        reference = pin_digest(reference)
    requests = dict(profile.requests or {})
    limits = dict(profile.limits or {})
    context = {
        **values,
        "name": env_name,
        "namespace": profile.namespace,
        "image": reference,
        "node_selector": dict(profile.node_selector or {}),
        "tolerations": list(profile.tolerations or []),
        "storage_classes": dict(profile.storage_classes or {}),
        "ssh_domain": profile.ssh_domain,
        "ingress_domain": profile.ingress_domain,
        "profile_limits": {"max_executors": profile.max_executors,
                           "max_cpu": profile.max_cpu, "max_memory": profile.max_memory},
        "registry": resolved_registry(profile) if resolve else profile.registry,
        "defaults": {"cpu": requests.get("cpu") or "1", "memory": requests.get("memory") or "2Gi",
                     "cpu_limit": limits.get("cpu") or None,
                     "memory_limit": limits.get("memory") or None},
        **policy_context(profile, env_name, values),
    }
    objects = templates.render_manifests(template, context, filters={
        "cores": _cores, "mebibytes": _mebibytes})
    _check_limits(profile, values)
    _check_pod_maxima(profile, template.name, objects)
    templates.label_objects(objects, env_name, profile.namespace, template.name, revision)
    return Rendered(env_name, profile.namespace, template.name, reference, values, objects,
                    template.workloads, dict(template.secrets), dict(template.web),
                    tuple(sorted(params or {})))


def _check_limits(profile: Profile, values: dict[str, Any]) -> None:
    executors = values.get("executors")
    if profile.max_executors is not None and isinstance(executors, int) \
            and executors > profile.max_executors:
        raise UsageError(f"{executors} executors exceed profile {profile.name}'s limit of "
                         f"{profile.max_executors}", hint="deploy fewer, or raise the limit "
                         "in the profile")


def _pod_total(obj: Obj, kind: str, resource: str) -> float:
    """What one pod of a workload asks for: its containers' ``kind`` (requests or limits)
    of ``resource`` (cpu in cores, memory in bytes), together."""
    parse = parse_cpu if resource == "cpu" else parse_memory
    containers = obj["spec"]["template"]["spec"].get("containers", [])
    asked = [c.get("resources", {}).get(kind, {}).get(resource) for c in containers]
    return sum((parse(str(a), resource) for a in asked if a is not None), 0.0)


def _check_pod_maxima(profile: Profile, template: str, objects: list[Obj]) -> None:
    """No pod may request, or be limited to, more than the profile's max_cpu/max_memory."""
    for key, resource, maximum in (("max_cpu", "cpu", profile.max_cpu),
                                   ("max_memory", "memory", profile.max_memory)):
        if maximum is None:
            continue
        most = parse_cpu(maximum, key) if resource == "cpu" else parse_memory(maximum, key)
        for obj in objects:
            if obj["kind"] not in WORKLOAD_KINDS:
                continue
            for kind in ("requests", "limits"):
                total = _pod_total(obj, kind, resource)
                if total > most:
                    shown = (format_cpu(total) if resource == "cpu"
                             else format_memory(int(total)))
                    raise UsageError(
                        f"{obj['kind']}/{obj['metadata']['name']} {kind} {shown} {resource} "
                        f"per pod, above profile {profile.name}'s {key} of {maximum}",
                        hint=f"ask for less (mme-rep template show {template} lists the "
                        f"parameters), or raise {key} in the profile")


def pin_digest(reference: str) -> str:
    """``host/repo:tag`` -> ``host/repo:tag@sha256:...`` from the registry; as is if pinned."""
    from mmerep.registry import RegistryClient

    if "@sha256:" in reference:
        return reference
    # image_reference() put the profile's registry first, even one without a "." or ":".
    host, _, rest = reference.partition("/")
    repo, _, tag = rest.rpartition(":")
    digest = RegistryClient(host).resolve(repo, tag)
    return f"{reference}@{digest}"
