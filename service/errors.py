"""Errors raised by the service layer; `problems.py` maps them to HTTP."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field of the caller's input, addressed by a path."""

    field: str
    message: str


class ServiceError(Exception):
    """Root of every service failure."""


class RecordInvalid(ServiceError):
    """A record (or query) does not satisfy the manifest or the API contract."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


class BodyMalformed(ServiceError):
    """The body is not JSON, or not a record nor a batch."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BodyTooLarge(ServiceError):
    """The body exceeds the configured byte limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes")
        self.limit = limit


class ModelUnknown(ServiceError):
    """No model of that name is published."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown model {name!r}")
        self.name = name


class VersionUnknown(ServiceError):
    """The model has no such version or alias."""

    def __init__(self, name: str, version: str) -> None:
        super().__init__(f"model {name!r} has no version or alias {version!r}")
        self.name = name
        self.version = version


class ModelUnavailable(ServiceError):
    """A published version cannot be loaded (digest, signature or format refused)."""

    def __init__(self, name: str, version: str, reason: str) -> None:
        super().__init__(f"model {name!r} version {version!r} cannot be loaded: {reason}")
        self.name = name
        self.version = version
        self.reason = reason


class TraceNotFound(ServiceError):
    """No trace for this request ID (never explained, or past retention)."""

    def __init__(self, request_id: str) -> None:
        super().__init__(f"no trace for request {request_id!r}")
        self.request_id = request_id


class RecordNotFound(ServiceError):
    """No logged record for this request ID (never sent, or past retention)."""

    def __init__(self, request_id: str) -> None:
        super().__init__(f"no logged record for request {request_id!r}")
        self.request_id = request_id


class AuthenticationMissing(ServiceError):
    """No API key, or one that matches no configured key."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RoleMissing(ServiceError):
    """The caller's key lacks the role the endpoint needs."""

    def __init__(self, caller: str, role: str) -> None:
        super().__init__(f"key {caller!r} lacks role {role!r}")
        self.caller = caller
        self.role = role


class StartupRefused(ServiceError):
    """The configuration is unsafe or incomplete; the service does not start."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InputsExpired(ServiceError):
    """The record's sealed raw inputs are past their retention (the log entry remains)."""

    def __init__(self, request_id: str) -> None:
        super().__init__(f"the raw inputs of request {request_id!r} are past retention")
        self.request_id = request_id


class HeadersTooLarge(ServiceError):
    """The request headers exceed the configured byte limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request headers exceed {limit} bytes")
        self.limit = limit


class KeyringChangeRefused(ServiceError):
    """A `whylens keys` change would lose access to data or break the keyring."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PolicyUnreadable(ServiceError):
    """A published sampling policy cannot be parsed (edited by hand in the bucket?)."""

    def __init__(self, model: str, key: str, reason: str) -> None:
        super().__init__(f"sampling policy of {model!r} at {key} is unreadable: {reason}")
        self.model = model
        self.key = key
        self.reason = reason


class IncidentNotFound(ServiceError):
    """No incident with this ID."""

    def __init__(self, incident_id: str) -> None:
        super().__init__(f"no incident {incident_id!r}")
        self.incident_id = incident_id


class IncidentExists(ServiceError):
    """An incident with this ID is already open or closed."""

    def __init__(self, incident_id: str) -> None:
        super().__init__(f"incident {incident_id!r} already exists")
        self.incident_id = incident_id


class ExportRetryable(ServiceError):
    """An export target failed in a way worth retrying (timeout, 5xx, 429)."""

    def __init__(self, target: str, reason: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(f"{target}: {reason}")
        self.target = target
        self.reason = reason
        self.retry_after_s = retry_after_s


class ExportRejected(ServiceError):
    """An export target refused the export for good (credentials, a 4xx, no target)."""

    def __init__(self, target: str, reason: str) -> None:
        super().__init__(f"{target}: {reason}")
        self.target = target
        self.reason = reason
