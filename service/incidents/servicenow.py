"""ServiceNow export: the bundle as an attachment, the summary as a work note.

Steps (each saved once done, so a retry resumes after the last one):

1. `GET /api/now/table/{table}?sysparm_query=number=<id>` finds the incident's sys_id.
2. `GET /api/now/attachment?sysparm_query=table_sys_id=<sys_id>^file_name=<name>`; when
   nothing is there, `POST /api/now/attachment/file?table_name=...&table_sys_id=...&
   file_name=<name>` with the JSON bundle. The file name carries the bundle's sha256, so
   the lookup makes the upload idempotent even when a crash lost the saved step.
3. `PATCH /api/now/table/{table}/{sys_id}` with `work_notes`.
"""

from __future__ import annotations

from typing import Any

import httpx

from service.errors import ExportRetryable
from service.incidents.delivery import Checkpoint, Delivery, call, result_of
from service.incidents.jobs import now_ms
from service.incidents.note import work_note
from service.settings import ServiceNowSettings
from service.trace_builder import iso_ms

NAME = "servicenow"


class ServiceNowTarget:
    """Table and Attachment API client for one instance."""

    name = NAME

    def __init__(self, client: httpx.AsyncClient, settings: ServiceNowSettings) -> None:
        if settings.instance_url is None:
            raise ValueError("servicenow.instance_url is not set")
        self._client = client
        self._base = settings.instance_url.rstrip("/")
        self._table = settings.table
        self._headers = {"Accept": "application/json"}
        self._auth: httpx.Auth | None = None
        if settings.oauth_token is not None:
            self._headers["Authorization"] = (
                "Bearer " + settings.oauth_token.get_secret_value())
        elif settings.username is not None and settings.password is not None:
            self._auth = httpx.BasicAuth(settings.username,
                                         settings.password.get_secret_value())

    async def deliver(self, delivery: Delivery, checkpoint: Checkpoint) -> dict[str, Any]:
        """Find the incident, attach the bundle once, add the work note."""
        state = dict(delivery.state)
        if not state.get("sys_id"):
            state["sys_id"] = await self._find_incident(delivery.incident.incident_id)
            await checkpoint(state)
        if not state.get("attachment_sys_id"):
            state["attachment_sys_id"] = await self._attach(state["sys_id"], delivery)
            await checkpoint(state)
        if not state.get("work_note_at"):
            await self._request("PATCH", f"/api/now/table/{self._table}/{state['sys_id']}",
                                json={"work_notes": work_note(delivery)})
            state["work_note_at"] = iso_ms(now_ms())
            await checkpoint(state)
        return state

    async def _find_incident(self, number: str) -> str:
        response = await self._request(
            "GET", f"/api/now/table/{self._table}",
            params={"sysparm_query": f"number={number}", "sysparm_fields": "sys_id,number",
                    "sysparm_limit": "1"})
        found = result_of(NAME, response)
        if not isinstance(found, list) or not found or not found[0].get("sys_id"):
            # Other tooling may create the ServiceNow record later: worth retrying.
            raise ExportRetryable(NAME, f"no {self._table} record numbered {number!r} yet")
        return str(found[0]["sys_id"])

    async def _attach(self, sys_id: str, delivery: Delivery) -> str:
        response = await self._request(
            "GET", "/api/now/attachment",
            params={"sysparm_query": f"table_sys_id={sys_id}^file_name={delivery.file_name}",
                    "sysparm_limit": "1"})
        existing = result_of(NAME, response)
        if isinstance(existing, list) and existing and existing[0].get("sys_id"):
            return str(existing[0]["sys_id"])
        response = await self._request(
            "POST", "/api/now/attachment/file",
            params={"table_name": self._table, "table_sys_id": sys_id,
                    "file_name": delivery.file_name},
            content=delivery.bundle, headers={"Content-Type": "application/json"})
        created = result_of(NAME, response)
        if not isinstance(created, dict) or not created.get("sys_id"):
            raise ExportRetryable(NAME, "attachment upload answered without a sys_id")
        return str(created["sys_id"])

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self._headers, **kwargs.pop("headers", {})}
        return await call(self._client, NAME, method, self._base + path, headers=headers,
                          auth=self._auth or httpx.USE_CLIENT_DEFAULT, **kwargs)
