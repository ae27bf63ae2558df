"""Bodiless writes: the contract sends no body to some POST and PUT endpoints; ``{}`` is accepted too.

``optional_body(NoBody)`` validates a body when one is sent (so ``{"force": true}``
is refused as an unknown field rather than ignored) and documents it in OpenAPI.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict
from quart import request
from quart_schema import DataSource
from quart_schema.validation import QUART_SCHEMA_REQUEST_ATTRIBUTE, RequestSchemaValidationError

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


class NoBody(BaseModel):
    """Nothing: the body may be left out, or be ``{}``."""

    model_config = ConfigDict(extra="forbid")


def optional_body(model: type[BaseModel]) -> Callable[[F], F]:
    """Validate the JSON body with ``model`` when there is one (the contract sends none); documented as usual."""

    def decorator(func: F) -> F:
        @wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            raw = (await request.get_data()).strip()
            if raw and raw != b"null":  # no body, or JSON null, is no body
                try:
                    model.model_validate(await request.get_json())
                except ValueError as exc:  # pydantic's ValidationError is a ValueError
                    raise RequestSchemaValidationError(exc) from None
            return await func(*args, **kwargs)

        setattr(wrapper, QUART_SCHEMA_REQUEST_ATTRIBUTE, (model, DataSource.JSON))
        return wrapper  # type: ignore[return-value]

    return decorator
