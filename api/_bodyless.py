"""Optional bodies: the contract sends no body to some POST and PUT endpoints; when one is sent, it is checked.

``optional_body(Model)`` passes the route ``data``: the body validated with
``Model`` (so ``{"force": true}`` to an endpoint that takes nothing is
refused as an unknown field rather than ignored), or ``Model()`` when there
is no body or it is JSON ``null`` (``curl -X POST``). Every field of
``Model`` therefore has a default. The body is documented in OpenAPI as
``validate_request`` documents one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from quart import request
from quart_schema import DataSource
from quart_schema.validation import QUART_SCHEMA_REQUEST_ATTRIBUTE, RequestSchemaValidationError

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


class NoBody(BaseModel):
    """Nothing: the body may be left out, or be ``{}``."""

    model_config = ConfigDict(extra="forbid")


def optional_body(model: type[BaseModel]) -> Callable[[F], F]:
    """Pass ``data``: the JSON body validated with ``model``, or ``model()`` without one; documented as usual."""

    def decorator(func: F) -> F:
        @wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            raw = (await request.get_data()).strip()
            data = model()
            if raw and raw != b"null":  # no body, or JSON null, is no body
                body = await request.get_json()  # not JSON: INVALID_INPUT (see _json)
                try:
                    data = model.model_validate(body)
                except ValidationError as exc:
                    raise RequestSchemaValidationError(exc) from None
            return await func(*args, data=data, **kwargs)

        setattr(wrapper, QUART_SCHEMA_REQUEST_ATTRIBUTE, (model, DataSource.JSON))
        return wrapper  # type: ignore[return-value]

    return decorator
