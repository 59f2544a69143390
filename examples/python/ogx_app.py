"""An OGX / Llama Stack style API whose authentication is its run.yaml's ``server.auth``,
decided in-process by tokengate (no ``tokengate serve``, no proxy).

    pip install tokengate starlette uvicorn
    RUN_YAML=config/llama-stack-run.yaml uvicorn examples.python.ogx_app:app --port 8321

OGX reads the same ``server.auth``: the provider (``oauth2_token`` with Llama Stack's defaults:
audience ``llama-stack``, its claims mapping), ``route_policy``, ``server.quota``, the public
routes ``/v1/health`` and ``/v1/version``. Refusals are OGX-shaped: ``{"error": {"code",
"message"}}`` with tokengate's status and ``WWW-Authenticate``.
"""

from __future__ import annotations

import os
from typing import Optional

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tokengate import Gate, Principal
from tokengate.asgi import TokengateMiddleware


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "OK"})


async def version(request: Request) -> JSONResponse:
    return JSONResponse({"version": "0.0.0-example"})


async def models(request: Request) -> JSONResponse:
    who: Principal = request.state.principal
    # As OGX records the owner of what a user creates: the principal and its attributes.
    return JSONResponse(
        {
            "data": [{"identifier": "llama-3", "provider_id": "example", "owner": who.principal}],
            "user": {"principal": who.principal, "attributes": who.attributes},
        }
    )


def create_app(run_yaml: Optional[str] = None) -> Starlette:
    gate = Gate.from_file(run_yaml or os.environ["RUN_YAML"])
    app = Starlette(
        routes=[
            Route("/v1/health", health),
            Route("/v1/version", version),
            Route("/v1/models", models),
        ]
    )
    app.add_middleware(TokengateMiddleware, gate=gate)
    return app


if "RUN_YAML" in os.environ:
    app = create_app()
