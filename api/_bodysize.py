"""How large a request body the gateway takes in: small before a caller is known, bounded after.

Quart reads a request's body into memory as it arrives, whether or not a
route ever looks at it, up to the limit the request was made with. So the
limit is chosen when the request is made, from what is known then:

- the login and refresh bodies (a name, a password, a refresh token) and the
  body of any request without a bearer token that verifies get at most
  ``AUTH_MAX_BODY`` bytes (8 KiB): an unauthenticated client cannot make the
  gateway hold 100 MB per connection;
- a request of a logged-in user gets ``MAX_CONTENT_LENGTH`` (10 MiB, the
  largest JSON the API takes, e.g. a Kubernetes manifest);
- an image upload of a logged-in user (``PUT /api/v1/images/{name}/upload``)
  gets ``UPLOAD_MAX_BYTES`` instead, in a body that is passed on as it
  arrives and never held whole (:mod:`._uploads`).

Over the limit the answer is 413 INVALID_INPUT, before the rest of the body
is read: a Content-Length over it is refused at once, a chunked body when it
passes it.
"""

from __future__ import annotations

from typing import Any

from quart import Quart

from ._json import JSONRequest
from ._tokens import InvalidToken
from ._uploads import StreamedBody, is_upload

AUTH_PATHS = "/api/v1/auth/"


def _authenticated(app: Quart, authorization: str) -> bool:
    """Whether the Authorization header holds a bearer token of this gateway that is valid now."""
    scheme, _, token = authorization.partition(" ")
    state = app.extensions.get("vapor")
    signer = getattr(state, "signer", None)
    if scheme.lower() != "bearer" or not token.strip() or signer is None:
        return False
    try:
        signer.verify(token.strip())
    except InvalidToken:
        return False
    return True


def install(app: Quart) -> None:
    """Make the app's requests with the body limit of their caller."""
    small = int(app.config["AUTH_MAX_BODY"])
    upload = int(app.config["UPLOAD_MAX_BYTES"])

    class BoundedRequest(JSONRequest):
        """A JSON request whose body limit depends on its path and its bearer token."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            limit = self.max_content_length
            if limit is not None and limit <= small:
                return
            if self.path.startswith(AUTH_PATHS) or not _authenticated(app, self.headers.get("Authorization", "")):
                self.max_content_length = small
                # Nothing has been received yet: the body starts again with the smaller limit.
                self.body = self.body_class(self.content_length, small)
            elif is_upload(self.method, self.path):
                self.max_content_length = upload
                self.body = StreamedBody(self.content_length, upload)

    app.request_class = BoundedRequest
