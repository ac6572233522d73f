"""The one error hierarchy. The CLI catches only these, prints one line and exits non-zero.

Every class is defined here, so the whole tree is readable in one place; feature modules
re-export theirs (``mmerep.gitlab_ci.CiError``, ``mmerep.synclocal.errors.SyncError``).
New features add their subclasses here too.

    MmerepError
    ├── UsageError (exit 2)            bad input; nothing was changed
    ├── ToolchainError, BuildError, ClusterError
    ├── KubeError                      the API server, with its own message
    │   ├── KubeUnreachable, KubeNotFound, KubeConflict, KubeInvalid, KubeTimeout
    │   ├── KubeUnauthenticated        401: no valid credentials
    │   └── KubeForbidden              403: RBAC
    │       └── KubeAdmissionDenied    403 from admission (Pod Security, webhooks, ...)
    ├── RegistryError
    ├── CiError                        GitLab: CiConfigError, CiAuthError, CiNotFound,
    │                                  CiUnreachable, CiTimeout
    └── SyncError                      synclocal: SourceMissing, SourceUnreadable,
                                       SourceChanged, LocalWriteError > DestinationFull,
                                       ManifestError (exit 2), Busy
"""

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


class KubeUnauthenticated(KubeError):
    """The API server did not accept the credentials (401): none, expired or wrong."""


class KubeForbidden(KubeError):
    """RBAC denied the request (or, as the subclass says, admission did)."""


class KubeAdmissionDenied(KubeForbidden):
    """An admission controller (Pod Security, a webhook, a quota) refused the object."""


class KubeConflict(KubeError):
    """Another field manager owns the fields, or the object changed under us."""


class KubeInvalid(KubeError):
    """The API server rejected the object as invalid (schema, admission, PSA)."""


class KubeDisruptionRefused(KubeError):
    """An eviction the API server refused: it would break a PodDisruptionBudget."""


class KubeTimeout(KubeError):
    """Waiting for a condition ran out of time."""


class RegistryError(MmerepError):
    """The OCI registry refused a request or could not be reached."""


class EnvironmentBusy(MmerepError):
    """Another command is changing the environment (it holds the environment's lease).

    Exit code 75 (EX_TEMPFAIL): trying again later can succeed.
    """

    exit_code = 75


# -- GitLab (mmerep.gitlab_ci) --------------------------------------------------------------

class CiError(MmerepError):
    """GitLab refused a request, could not be reached, or is not configured."""


class CiConfigError(CiError):
    """No GitLab server (or project, or ref) could be determined."""


class CiAuthError(CiError):
    """GitLab refused the token (401) or its rights are not enough (403)."""


class CiNotFound(CiError):
    """The project, pipeline or job does not exist (or the token cannot see it)."""


class CiUnreachable(CiError):
    """The GitLab server did not answer."""


class CiTimeout(CiError):
    """A pipeline or job did not finish in time."""


# -- synclocal (mmerep.synclocal) -----------------------------------------------------------

class SyncError(MmerepError):
    """Staging, indexing or evicting local data failed."""


class SourceMissing(SyncError):
    """A source path or glob matched nothing on the bulk tier."""


class SourceUnreadable(SyncError):
    """A source exists but cannot be read (permissions, not a regular file, I/O error)."""


class SourceChanged(SyncError):
    """A source file kept changing while it was being copied."""


class LocalWriteError(SyncError):
    """Writing to the local disk failed; every further file would fail too."""


class DestinationFull(LocalWriteError):
    """The local file system has no room for the data."""


class ManifestError(SyncError):
    """The daemon's dataset manifest is invalid."""

    exit_code = 2


class Busy(SyncError):
    """Another synclocal process holds the root's lock."""


# -- HTCondor (mmerep.condor) ---------------------------------------------------------------

class CondorError(MmerepError):
    """The HTCondor pool (collector or schedd) refused a request."""


class CondorUnreachable(CondorError):
    """The collector or schedd did not answer in time."""


class Terminated(KeyboardInterrupt):
    """The command was asked to stop by SIGTERM (a CI job cancelled, a pod stopped,
    ``kill``). Raised where the signal arrives, like Ctrl-C's KeyboardInterrupt, so
    every ``finally`` runs: locks are released and records say what happened.
    Exit code 143 (128 + SIGTERM)."""

    how = "SIGTERM"
    raised = False  # set when it is raised: typer turns any KeyboardInterrupt into exit 130


def stop_on_sigterm() -> None:
    """From now on SIGTERM raises :class:`Terminated` in the main thread."""
    import signal

    def terminate(signum: int, frame: object) -> None:
        Terminated.raised = True
        raise Terminated()

    signal.signal(signal.SIGTERM, terminate)


def exit_interrupted(stop: KeyboardInterrupt) -> None:
    """Say how the command was stopped and exit 130 (Ctrl-C) or 143 (SIGTERM)."""
    import sys

    how = getattr(stop, "how", None)
    print(f"interrupted by {how}" if how else "interrupted", file=sys.stderr)
    sys.exit(143 if how else 130)
