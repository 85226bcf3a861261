"""The FastAPI app: the decision API (`/v1/...`), health and readiness, the campaign page (`/ui`)
and the OpenAPI document (`/openapi.json`, browsable at `/docs`).

Authentication: an API key in ``X-API-Key`` (or ``Authorization: Bearer``); a missing or
unknown key is 401, a key without the route's scope 403. Keys are never logged: they travel in
headers only, and uvicorn's access log shows the method, path and status.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Path, Query
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as AsgiScope

from feedback.campaign_summary import talking_points
from stream_app.api.campaign import CampaignView
from stream_app.api.errors import ApiError, error_body, install_handlers
from stream_app.api.gateway import Decided, DecisionGateway
from stream_app.api.keys import ApiKey, KeyStore, Scope

__all__ = ["DecisionRequest", "create_app"]

CUSTOMER_ID = r"^[A-Za-z0-9_.:-]{1,64}$"  # stream_app.messages.CustomerId
IDEMPOTENCY_KEY = r"^[A-Za-z0-9_.:-]{1,128}$"
ContextValue = str | int | float | bool


class DecisionRequest(BaseModel):
    """`POST /v1/decisions`."""

    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(pattern=CUSTOMER_ID, description="the customer to decide for")
    context: dict[str, ContextValue] = Field(
        default_factory=dict,
        max_length=20,
        description="free context (e.g. the CRM's case id), kept on the request's event",
    )
    cold_start: bool = Field(
        default=False,
        description="decide even for a customer the feature store does not know, on the base's "
        "typical features (the 404 of an unknown customer offers this)",
    )


class _BodyLimit:
    """A body over the limit is refused before it is read (413); a body without a length
    (chunked) is refused too (411), as it could not be checked first. Plain ASGI: Starlette's
    BaseHTTPMiddleware costs every request a task and a stream (measured in
    benchmarks/api_latency.py)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self._app = app
        self._limit = limit

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            refusal = self._refusal(dict(scope["headers"]).get(b"content-length"))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self._app(scope, receive, send)

    def _refusal(self, length: bytes | None) -> JSONResponse | None:
        if length is None:
            body = error_body("length_required", "send the body with a Content-Length")
            return JSONResponse(body, 411)
        if not length.isdigit() or int(length) > self._limit:
            message = f"the body is larger than {self._limit:,} bytes"
            return JSONResponse(error_body("too_large", message), 413)
        return None


async def _key_header(
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> str | None:
    if x_api_key:
        return x_api_key
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def _requires(keys: KeyStore, scope: Scope) -> Callable[..., Awaitable[ApiKey]]:
    async def check(token: Annotated[str | None, Depends(_key_header)]) -> ApiKey:
        key = keys.authenticate(token)
        if key is None:
            raise ApiError(
                401,
                "unauthorized",
                "a valid API key is required (X-API-Key header; `nba api key create`)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not key.allows(scope):
            raise ApiError(403, "forbidden", f"this API key lacks the {scope.value!r} scope")
        return key

    return check


def _decision_body(decision: dict[str, Any], delivered: bool, status: str) -> dict[str, Any]:
    return {
        "status": status,
        "action_id": decision["action_id"],
        "delivered": delivered,
        "decision": decision,
        "talking_points": talking_points(decision),
    }


def _answer(found: Decided, customer_id: str) -> JSONResponse:
    location = {"Location": f"/v1/decisions/{found.action_id}"}
    if found.status == "unknown_customer":
        raise ApiError(
            404,
            "unknown_customer",
            f"customer {customer_id!r} is not in the feature store",
            details={
                "cold_start_offer": {
                    "request": {"customer_id": customer_id, "cold_start": True},
                    "meaning": "decide on the base's typical features (medians), no consent "
                    "assumed on any channel",
                }
            },
        )
    if found.status == "key_reused":
        raise ApiError(
            409,
            "idempotency_key_reused",
            "this Idempotency-Key was used for another customer; use a new key per request",
        )
    if found.status == "too_soon":
        retry = max(int(found.retry_after_s or 0), 1)
        raise ApiError(
            409,
            "decided_recently",
            "this customer was decided for recently; the contact rules allow the next "
            f"decision in {retry:,} s",
            details={"latest": found.decision, "retry_after_s": retry},
            headers={"Retry-After": str(retry)},
        )
    if found.status == "pending" or found.decision is None:
        body = {"status": "pending", "action_id": found.action_id, "delivered": False}
        return JSONResponse(body, 202, headers=location)
    code = 201 if found.status == "created" else 200
    headers = location | ({"Idempotent-Replayed": "true"} if found.status == "replayed" else {})
    return JSONResponse(_decision_body(found.decision, True, found.status), code, headers=headers)


def create_app(
    *,
    keys: KeyStore,
    gateway: DecisionGateway,
    campaign: CampaignView | None,
    max_body_bytes: int,
) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await gateway.stop_waiting()

    app = FastAPI(
        lifespan=lifespan,
        title="NBA engine decision API",
        version="1",
        description="Next-best-action decisions for a CRM, and the campaign page. Errors: "
        '{"error": {"code", "message", "details"?}}.',
    )
    install_handlers(app)
    app.add_middleware(_BodyLimit, limit=max_body_bytes)
    read = Depends(_requires(keys, Scope.READ))
    decide = Depends(_requires(keys, Scope.DECIDE))
    customer = Path(pattern=CUSTOMER_ID)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        checks = await gateway.answers()
        ready = bool(checks) and all(checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, 200 if ready else 503)

    @app.post("/v1/decisions", tags=["decisions"], status_code=201)
    async def post_decision(
        request: DecisionRequest,
        key: ApiKey = decide,
        idempotency_key: Annotated[str | None, Header(pattern=IDEMPOTENCY_KEY)] = None,
    ) -> JSONResponse:
        """Decide for one customer now, with the stream's features, model, policy, ledger,
        contact rules and arms; the decision is also published on `nba-actions`. The same
        Idempotency-Key always answers with the same decision (201 first, 200 after)."""
        found = await gateway.decide(
            key.key_id,
            request.customer_id,
            idempotency_key,
            dict(request.context),
            request.cold_start,
        )
        return _answer(found, request.customer_id)

    @app.get("/v1/decisions/{action_id}", tags=["decisions"])
    async def get_decision(
        action_id: Annotated[str, Path(max_length=64)], _: ApiKey = read
    ) -> JSONResponse:
        decision, delivered = await gateway.decision(action_id)
        if decision is None:
            raise ApiError(404, "unknown_decision", f"no decision {action_id!r} (yet)")
        return JSONResponse(_decision_body(decision, delivered, "found"))

    @app.get("/v1/customers/{customer_id}/decision", tags=["customers"])
    async def latest_decision(customer_id: str = customer, _: ApiKey = read) -> JSONResponse:
        """The customer's latest decision, with its reasons and talking points."""
        decision, delivered = await gateway.latest(customer_id)
        if decision is None:
            raise ApiError(404, "no_decision", f"no decision for customer {customer_id!r} yet")
        return JSONResponse(_decision_body(decision, delivered, "found"))

    @app.get("/v1/customers/{customer_id}/features", tags=["customers"])
    async def features(customer_id: str = customer, _: ApiKey = read) -> JSONResponse:
        """The features the engine reads for this customer (the Feast online store)."""
        row = await gateway.features(customer_id)
        if row.get("cold_start"):
            raise ApiError(
                404,
                "unknown_customer",
                f"customer {customer_id!r} is not in the feature store",
                details={"cold_start_offer": {"customer_id": customer_id, "cold_start": True}},
            )
        return JSONResponse({"customer_id": customer_id, "features": row})

    @app.get("/v1/campaign/summary", tags=["campaign"])
    def summary(_: ApiKey = read) -> dict[str, Any]:
        return _campaign(campaign).summary()

    @app.get("/v1/campaign/budget-curve", tags=["campaign"])
    async def budget_curve(_: ApiKey = read) -> dict[str, Any]:
        version, curve = await asyncio.to_thread(_campaign(campaign).curve)
        return {"model_version": version, **curve.points()}

    @app.get("/v1/campaign/budget", tags=["campaign"])
    async def at_budget(
        amount: Annotated[float, Query(allow_inf_nan=False)], _: ApiKey = read
    ) -> dict[str, Any]:
        """What a budget of ``amount`` buys with the current model on the current base."""
        version, curve = await asyncio.to_thread(_campaign(campaign).curve)
        if not 0 <= amount <= max(curve.max_useful_budget, 1.0) * 10:
            raise ApiError(
                422,
                "budget_out_of_range",
                f"the budget must lie between $0 and ${max(curve.max_useful_budget, 1) * 10:,.0f}"
                f" (past ${curve.max_useful_budget:,.0f} no customer is worth the cost)",
            )
        return {"model_version": version, **curve.at(amount)}

    @app.get("/ui", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(resources.files("stream_app.api").joinpath("page.html").read_text())

    return app


def _campaign(campaign: CampaignView | None) -> CampaignView:
    if campaign is None:
        raise ApiError(503, "no_campaign", "this API serves no campaign page (started without it)")
    return campaign
