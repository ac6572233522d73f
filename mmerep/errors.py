"""The one error hierarchy. The CLI catches only these, prints one line and exits non-zero."""

from __future__ import annotations


class MmerepError(Exception):
    """Base class: ``message`` says what is wrong, ``hint`` says how to fix it."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(MmerepError):
    """The user's input is invalid; nothing was changed."""

    exit_code = 2


class ToolchainError(MmerepError):
    """A build tool (go, buildah, ...) is missing or too old."""


class BuildError(MmerepError):
    """Building a local binary failed."""


class ClusterError(MmerepError):
    """The local cluster could not be started, stopped or inspected."""


class KubeError(MmerepError):
    """An error reported by, or while reaching, the Kubernetes API server."""

    def __init__(self, message: str, hint: str | None = None, status: int | None = None,
                 reason: str | None = None) -> None:
        super().__init__(message, hint)
        self.status = status
        self.reason = reason


class KubeUnreachable(KubeError):
    """The API server could not be reached, even after retries."""


class KubeNotFound(KubeError):
    """The object does not exist."""


class KubeForbidden(KubeError):
    """RBAC or admission denied the request."""


class KubeConflict(KubeError):
    """Another field manager owns the fields, or the object changed under us."""


class KubeInvalid(KubeError):
    """The API server rejected the object as invalid (schema, admission, PSA)."""


class KubeTimeout(KubeError):
    """Waiting for a condition ran out of time."""


class RegistryError(MmerepError):
    """The OCI registry refused a request or could not be reached."""


class CondorError(MmerepError):
    """The HTCondor pool (collector or schedd) refused a request."""


class CondorUnreachable(CondorError):
    """The collector or schedd did not answer in time."""
