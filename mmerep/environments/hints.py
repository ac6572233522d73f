"""What the user is told to do next (text, with kubectl commands)."""

from __future__ import annotations

from mmerep.environments.model import Rendered
from mmerep.profiles import Profile


def web_hint(profile: Profile, rendered: Rendered) -> str:
    """How to reach a web environment: its address, or the port-forward that gets there."""
    service = f"{rendered.env_name}-{rendered.web.get('service', 'web')}"
    port = rendered.params.get("port") or rendered.web.get("port", 80)
    path = rendered.web.get("path", "/")
    secret = next(iter(rendered.secrets), None)
    token = (f"\nToken: kubectl -n {rendered.namespace} get secret "
             f"{rendered.env_name}-{secret} -o jsonpath='{{.data.{rendered.secrets[secret][0]}}}'"
             " | base64 -d") if secret else ""
    if profile.ingress_domain:
        return f"Web address: https://{rendered.env_name}.{profile.ingress_domain}{path}{token}"
    return (f"Web address (no ingress domain in profile {profile.name}): run\n"
            f"  kubectl -n {rendered.namespace} port-forward svc/{service} {port}:{port}\n"
            f"then open http://127.0.0.1:{port}{path}{token}")
