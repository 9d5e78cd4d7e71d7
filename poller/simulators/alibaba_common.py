"""The RPC-style Alibaba Cloud server both Alibaba simulators share.

It accepts what the official SDKs send: ``POST /`` with the API parameters in the query string and
an empty body, signed either with V3 (``Authorization: ACS3-HMAC-SHA256 …`` and ``x-acs-action``)
or with V1 (``Action``, ``Signature`` and the other common parameters in the query). A form body
(older clients) is accepted too and its parameters count as API parameters. Errors are the vendor's
``{RequestId, HostId, Code, Message, Recommend}`` bodies with the vendor's HTTP statuses.

``stringly=True`` answers the way the documentation's own JSON examples look: every number and
boolean as a string and ``CallingNumbers`` as a JSON-encoded string.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Self

import msgspec
from aiohttp import web
from multidict import MultiDict

from poller.simulators.base import Fault, Simulator, json_response
from poller.vendors.alibaba_signing import detect_signature_version, verify_v1, verify_v3
from schemas.vendors.alibaba import enc_hook

#: what the real gateway answers with (the SDK only special-cases text/xml)
CONTENT_TYPE = "application/json;charset=utf-8"

#: HTTP status per error code, as the vendor's error tables give them
STATUS_OF: dict[str, int] = {
    "Throttling.User": 400,
    "Throttling.Api": 400,
    "Throttling": 400,
    "SignatureDoesNotMatch": 400,
    "IncompleteSignature": 400,
    "IllegalTimestamp": 400,
    "SignatureNonceUsed": 400,
    "InvalidTimeStamp.Expired": 400,
    "MissingParameter": 400,
    "InvalidParameter": 400,
    "ParameterError": 400,
    "PermissionInsufficient": 400,
    "InvalidVersion": 400,
    "InvalidAccessKeyId.NotFound": 404,
    "InvalidAccessKeyId.Inactive": 400,
    "InvalidAction.NotFound": 404,
    "NotExist.Instance": 404,
    "InternalError": 500,
    "ServiceUnavailable": 503,
}

MESSAGES: dict[str, str] = {
    "Throttling.User": "Request was denied due to user flow control.",
    "Throttling": "Request was denied due to request throttling.",
    "SignatureDoesNotMatch": "Specified signature does not match our calculation.",
    "InvalidAccessKeyId.NotFound": "Specified access key is not found.",
    "InternalError": (
        "An error occurred while processing your request. Please try again later. "
        "Submit a ticket if the error still exists."
    ),
    "NotExist.Instance": "The specified Instance does not exist.",
    "PermissionInsufficient": (
        "Insufficient permissions. Please contact the Alibaba Cloud account administrator."
    ),
    "ParameterError": "The parameter is invalid.",
    "InvalidAction.NotFound": "Specified api is not found, please check your url and method.",
}

Params = MultiDict[str]
ActionHandler = Callable[[str, Params], Awaitable[web.StreamResponse]]


class ErrorAnswer(msgspec.Struct, frozen=True, kw_only=True):
    RequestId: str
    HostId: str
    Code: str
    Message: str
    Recommend: str


class AlibabaSimulator(Simulator):
    """Verifies V1 and V3 signatures and dispatches ``Action`` to the subclass's handlers."""

    #: product code (troubleshoot links), API version, public host (``HostId`` of error bodies)
    product: str = ""
    version: str = ""
    host_id: str = ""
    #: fields sent as strings even when ``stringly`` is off
    string_fields: frozenset[str] = frozenset()

    def __init__(
        self,
        *,
        credentials: Mapping[str, str],
        seed: int = 0,
        rate_limits: dict[str, int] | None = None,
        stringly: bool = False,
    ) -> None:
        super().__init__(seed=seed, rate_limits=rate_limits)
        self.credentials = dict(credentials)
        self.stringly = stringly
        self.actions: dict[str, ActionHandler] = {}
        self.app.router.add_post("/", self._handle)
        self.app.router.add_get("/", self._handle)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    # -- answers ----------------------------------------------------------------------------------
    def error(self, code: str, message: str | None = None, status: int | None = None) -> web.Response:
        body = ErrorAnswer(
            RequestId=str(uuid.uuid4()).upper(),
            HostId=self.host_id,
            Code=code,
            Message=message if message is not None else MESSAGES.get(code, code),
            Recommend=f"https://api.aliyun.com/troubleshoot?q={code}&product={self.product}",
        )
        return json_response(msgspec.json.encode(body), status or STATUS_OF.get(code, 400), CONTENT_TYPE)

    def ok(self, payload: msgspec.Struct) -> web.Response:
        if not (self.stringly or self.string_fields):
            # the common case straight to JSON: a 100-job page costs the vendor 3 ms less
            return json_response(msgspec.json.encode(payload, enc_hook=enc_hook), 200, CONTENT_TYPE)
        data = msgspec.to_builtins(payload, enc_hook=enc_hook)
        if self.stringly:
            data = stringify(data)
        elif self.string_fields:
            data = stringify_fields(data, self.string_fields)
        return json_response(msgspec.json.encode(data), 200, CONTENT_TYPE)

    def error_answer(self, kind: Fault, api: str) -> web.StreamResponse:
        if kind is Fault.THROTTLE:
            return self.error("Throttling.User")
        if kind is Fault.AUTH:
            return self.error("InvalidAccessKeyId.NotFound")
        return self.error("InternalError")

    # -- protocol ---------------------------------------------------------------------------------
    def api_of(self, request: web.Request) -> str:
        return request.headers.get("x-acs-action") or request.query.get("Action") or "?"

    async def _params(self, request: web.Request, body: bytes) -> Params:
        params: Params = MultiDict(request.query)
        if body and request.content_type == "application/x-www-form-urlencoded":
            params.extend(await request.post())  # type: ignore[arg-type]
        return params

    async def authenticate(self, request: web.Request, body: bytes) -> str | web.StreamResponse:
        query = {k: v for k, v in request.query.items()}
        headers = {k.lower(): v for k, v in request.headers.items()}
        version = detect_signature_version(query, headers)
        if version == "v3":
            result = verify_v3(request.method, request.path, query, headers, body, self.credentials.get)
            api_version = headers.get("x-acs-version", "")
        elif version == "v1":
            signed = dict(query)
            if body and request.content_type == "application/x-www-form-urlencoded":
                signed.update({k: str(v) for k, v in (await request.post()).items()})
            result = verify_v1(signed, request.method, self.credentials.get)
            api_version = query.get("Version", "")
        else:
            return self.error(
                "IncompleteSignature", "The request signature does not conform to Aliyun standards."
            )
        if not result.ok or not result.access_key_id:
            return self.error(result.code or "SignatureDoesNotMatch", result.message)
        if api_version != self.version:
            return self.error("InvalidVersion", "Specified parameter Version is not valid.")
        return result.access_key_id

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        action = self.api_of(request)
        handler = self.actions.get(action)
        if handler is None:
            return self.error("InvalidAction.NotFound")
        params = await self._params(request, await request.read())
        return await handler(_credential_of(request), params)


def _credential_of(request: web.Request) -> str:
    """The access key id of a request that :meth:`AlibabaSimulator.authenticate` already verified."""
    auth = request.headers.get("Authorization", "")
    if "Credential=" in auth:
        return auth.split("Credential=", 1)[1].split(",", 1)[0].strip()
    return request.query.get("AccessKeyId", "")


def stringify(value: Any, key: str = "") -> Any:
    """Numbers and booleans as strings, CallingNumbers as a JSON string: the doc examples' spelling."""
    if key == "CallingNumbers" and isinstance(value, list):
        return msgspec.json.encode(value).decode()
    if isinstance(value, dict):
        return {k: stringify(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [stringify(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def stringify_fields(value: Any, names: frozenset[str]) -> Any:
    """Only the named fields' numbers as strings."""
    if isinstance(value, dict):
        return {
            k: (str(v) if k in names and isinstance(v, int) else stringify_fields(v, names))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [stringify_fields(v, names) for v in value]
    return value


def int_param(params: Params, name: str, default: int | None = None) -> int | None:
    """An integer API parameter; None when absent (and no default), ValueError when malformed."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    return int(raw)
