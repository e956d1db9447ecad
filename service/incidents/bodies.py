"""Request bodies of the incident endpoints (validated into field errors)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from service.errors import FieldError, RecordInvalid
from service.validation_errors import field_errors

INCIDENT_ID = r"^[A-Za-z0-9._:-]{1,128}$"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

Body = TypeVar("Body", bound=BaseModel)


class IncidentCreate(BaseModel):
    """`POST /v1/incidents`."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, pattern=INCIDENT_ID)
    """e.g. the ServiceNow number; generated when absent."""
    model: str = Field(min_length=1, max_length=128)
    title: str = Field(min_length=1, max_length=500)
    severity: int = Field(ge=1, le=5)
    explain_all: bool = True

    @field_validator("severity", mode="before")
    @classmethod
    def _severity(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError("expected 1-5 or the same as a string")
        if isinstance(value, str) and value.strip().isdigit():
            return int(value.strip())
        return value


class AttachBody(BaseModel):
    """`POST /v1/incidents/{id}/traces`."""

    model_config = ConfigDict(extra="forbid")

    request_ids: list[str] = Field(min_length=1)

    @field_validator("request_ids")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        bad = [i for i, rid in enumerate(value) if not _REQUEST_ID.match(rid)]
        if bad:
            raise ValueError(f"items {bad[:5]} are not request IDs "
                             "(1-128 letters, digits and ._:-)")
        return list(dict.fromkeys(value))


class BackfillBody(BaseModel):
    """`POST /v1/incidents/{id}/backfill`: a window of event time and an optional filter."""

    model_config = ConfigDict(extra="forbid")

    since: datetime
    until: datetime | None = None
    where: str | None = Field(default=None, min_length=1, max_length=2000)

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class ExportBody(BaseModel):
    """`POST /v1/incidents/{id}/export`."""

    model_config = ConfigDict(extra="forbid")

    target: Literal["servicenow", "webhook"]


def parse_body(cls: type[Body], raw: Any) -> Body:
    """Validate a JSON body; raise RecordInvalid naming each bad field."""
    if not isinstance(raw, dict):
        raise RecordInvalid([FieldError("body", "expected a JSON object")])
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        raise RecordInvalid(field_errors(exc)) from None
