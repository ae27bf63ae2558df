"""orjson for every body the gateway reads and writes."""

from __future__ import annotations

from typing import Any, cast

import orjson
from pydantic import BaseModel
from pydantic_core import to_jsonable_python
from quart import Request, Response
from quart.json.provider import JSONProvider

from vapor.agentapi.errors import INVALID_INPUT

from ._errors import INVALID_INPUT_STATUS, APIError


def _default(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    return to_jsonable_python(obj)


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` (pydantic models included) as JSON bytes."""
    return orjson.dumps(obj, default=_default, option=orjson.OPT_NON_STR_KEYS)


class OrjsonProvider(JSONProvider):
    """Quart's JSON provider, on orjson."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        """Encode as text (Quart's API); responses skip this and use bytes directly."""
        option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_INDENT_2 if kwargs.get("indent") else 0)
        return orjson.dumps(obj, default=_default, option=option).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Decode JSON text."""
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        """A JSON response of one object."""
        obj = self._prepare_response_obj(args, kwargs)
        response: Response = cast(Any, self._app).response_class(dumps(obj), mimetype="application/json")
        return response


class JSONRequest(Request):
    """A request whose body is read as JSON whatever its Content-Type, with a clear error when it is not JSON."""

    async def get_json(self, force: bool = True, silent: bool = False, cache: bool = True) -> Any:
        """The body as JSON (``force`` defaults to True: curl -d sends form encoding by default)."""
        try:
            return await super().get_json(force=force, silent=silent, cache=cache)
        except UnicodeDecodeError as exc:  # Quart decodes the body as UTF-8 before parsing, outside its own check
            return None if silent else self.on_json_loading_failed(exc)

    def on_json_loading_failed(self, error: Exception) -> Any:
        """Refuse a body that is not JSON with INVALID_INPUT."""
        raise APIError(
            INVALID_INPUT_STATUS,
            INVALID_INPUT,
            "the request body is not valid JSON",
            str(error).split("\n")[0][:200],
        )
