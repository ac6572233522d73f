"""Environments: render a template for a profile, deploy it with revisions, inspect, delete.

An environment is every object labelled ``app.kubernetes.io/instance=<env>`` and
``app.kubernetes.io/managed-by=mme-rep`` in a namespace. Each deploy that changes
something is recorded as a revision (a ConfigMap holding the inputs and the rendered
objects, never the pool secret), which ``history`` lists and ``rollback`` re-applies.

One module per job:

- ``model``: what an environment is (``Rendered``, kinds, labels, callbacks' types)
- ``render``: template + profile -> objects, the image pinned to its digest
- ``records``: revision records and ``history``
- ``deploy_flow``: the deploy flow, top to bottom, and ``rollback_to``
- ``parts``: finding, pruning and deleting live parts
- ``diffing``: what a deploy would change
- ``status``: ``list_environments`` and ``environment_status``
- ``events``: warning events of waiting workloads
- ``hints``: what the user is told to do next (``web_hint``)
- ``synclocal_nodes``: the one reach into synclocal
- ``replicas``: who owns a workload's replica count (the HPA pattern)
- ``change``: one workload changed outside a deploy (vscale), recorded as a revision

Callers use the names re-exported here (``environments.deploy(...)``). Each is imported
from its module on first use, so a read command (``env list``) does not load the deploy
flow, templates and keys it never calls.
"""

from typing import TYPE_CHECKING

from mmerep.lazy import lazy_attributes

if TYPE_CHECKING:
    from mmerep.environments.change import record_workload_change
    from mmerep.environments.deploy_flow import (
        check_pods_admitted,
        deploy,
        generated_secrets,
        namespace_object,
        rollback_to,
    )
    from mmerep.environments.diffing import diff
    from mmerep.environments.events import warning_events
    from mmerep.environments.hints import web_hint
    from mmerep.environments.model import (
        CLUSTER_KINDS,
        MANAGED_KINDS,
        PSA_LABELS,
        RECORD_LABEL,
        WORKLOAD_KINDS,
        DeployResult,
        Obj,
        OnPlan,
        OnWorkloadStatuses,
        Rendered,
        kind_and_name,
    )
    from mmerep.environments.parts import delete_environment, live_parts
    from mmerep.environments.records import (
        build_record,
        history,
        read_records,
        record_name,
        rendered_from_record,
    )
    from mmerep.environments.render import env_name_from_image, pin_digest, render_environment
    from mmerep.environments.replicas import (
        REPLICAS_PARAM,
        replicas_owned_elsewhere,
        settle_replicas,
    )
    from mmerep.environments.status import (
        environment_rows,
        environment_status,
        list_environments,
        scaler_line,
    )
    from mmerep.environments.synclocal_nodes import synclocal_line

# name -> the module that defines it
_WHERE = {
    "record_workload_change": "change",
    "check_pods_admitted": "deploy_flow",
    "deploy": "deploy_flow",
    "generated_secrets": "deploy_flow",
    "namespace_object": "deploy_flow",
    "rollback_to": "deploy_flow",
    "diff": "diffing",
    "warning_events": "events",
    "web_hint": "hints",
    "CLUSTER_KINDS": "model",
    "MANAGED_KINDS": "model",
    "PSA_LABELS": "model",
    "RECORD_LABEL": "model",
    "WORKLOAD_KINDS": "model",
    "DeployResult": "model",
    "Obj": "model",
    "OnPlan": "model",
    "OnWorkloadStatuses": "model",
    "Rendered": "model",
    "kind_and_name": "model",
    "delete_environment": "parts",
    "live_parts": "parts",
    "build_record": "records",
    "history": "records",
    "read_records": "records",
    "record_name": "records",
    "rendered_from_record": "records",
    "env_name_from_image": "render",
    "pin_digest": "render",
    "render_environment": "render",
    "REPLICAS_PARAM": "replicas",
    "replicas_owned_elsewhere": "replicas",
    "settle_replicas": "replicas",
    "environment_rows": "status",
    "environment_status": "status",
    "list_environments": "status",
    "scaler_line": "status",
    "synclocal_line": "synclocal_nodes",
}


__getattr__ = lazy_attributes(__name__, _WHERE)


__all__ = [
    "CLUSTER_KINDS",
    "MANAGED_KINDS",
    "PSA_LABELS",
    "RECORD_LABEL",
    "REPLICAS_PARAM",
    "WORKLOAD_KINDS",
    "DeployResult",
    "Obj",
    "OnPlan",
    "OnWorkloadStatuses",
    "Rendered",
    "build_record",
    "check_pods_admitted",
    "delete_environment",
    "deploy",
    "diff",
    "env_name_from_image",
    "environment_rows",
    "environment_status",
    "generated_secrets",
    "history",
    "kind_and_name",
    "list_environments",
    "live_parts",
    "namespace_object",
    "pin_digest",
    "read_records",
    "record_name",
    "record_workload_change",
    "render_environment",
    "rendered_from_record",
    "replicas_owned_elsewhere",
    "rollback_to",
    "scaler_line",
    "settle_replicas",
    "synclocal_line",
    "warning_events",
    "web_hint",
]
