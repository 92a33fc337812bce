"""Liveness and readiness probes for Kubernetes and load balancers."""

from __future__ import annotations

from flask import Response
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel

from minishop import extensions
from minishop.domain import readiness
from minishop.envelope import Envelope, envelope_response, ok
from minishop.errors import ErrorCode

bp = APIBlueprint("health", __name__, abp_tags=[Tag(name="health")])


class Liveness(BaseModel):
    status: str


class Readiness(BaseModel):
    database: str
    cache: str


@bp.get("/healthz", responses={200: Envelope[Liveness]})
def healthz() -> Response:
    """The process answers; says nothing about its dependencies."""
    return ok(Liveness(status="alive"))


@bp.get("/readyz", responses={200: Envelope[Readiness]})
def readyz() -> Response:
    """Database and cache answer; 503 naming the failing ones otherwise."""
    checks = readiness.check_dependencies(extensions.session(), extensions.kv_store.get())
    failing = [name for name, state in checks.items() if state != readiness.OK]
    if failing:
        code = ErrorCode.DEPENDENCY_UNAVAILABLE
        return envelope_response(
            checks, code=code, message=f"not ready: {', '.join(failing)}", status=code.http_status
        )
    return ok(Readiness(**checks))
