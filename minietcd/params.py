# -*- test-case-name: tests.minietcd.test_params -*-
"""Request parameters as etcd reads them: Go's C{ParseForm}, C{ParseBool},
C{ParseUint}, and C{parseKeyRequest}'s checks in its order.

Decoded text keeps bytes that are not UTF-8 as surrogate escapes, so values compare
byte for byte as in Go and render as Go renders them.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from attrs import frozen

from minietcd.errors import (
    INDEX_NAN,
    INVALID_FIELD,
    INVALID_FORM,
    PREV_VALUE_REQUIRED,
    REFRESH_TTL_REQUIRED,
    REFRESH_VALUE,
    TTL_NAN,
    EtcdError,
)
from minietcd.store import clean_key

#: Go's C{http.Request.ParseForm} reads at most this much of a form body (10 MiB).
MAX_FORM_BYTES = 10 << 20
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_UINT = re.compile(r"[0-9]+\Z")
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_UINT64_MAX = (1 << 64) - 1

Form = dict[str, list[str]]


class EscapeError(ValueError):
    """A malformed percent-escape; C{str()} is Go's C{url.EscapeError} text."""


def go_quote(text: str) -> str:
    """Go's C{strconv.Quote} (close enough for error causes)."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in _QUOTE_ESCAPES:
            out.append(_QUOTE_ESCAPES[char])
        elif 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x80 or char.isprintable():
            out.append(char)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_QUOTE_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}
#: Bytes Go's C{url.URL.EscapedPath} leaves alone.
_PATH_SAFE = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~$&+,/:;=@"
)


def clean_path(path: str) -> str:
    """Go's C{ServeMux} C{cleanPath}: C{path.Clean}, keeping a trailing slash."""
    if "//" not in path and "/." not in path and path.startswith("/"):
        return path
    cleaned = clean_key(path)
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned


def escape_path(path: str) -> bytes:
    """Percent-encode C{path} as Go's C{url.URL.EscapedPath} does."""
    raw = path.encode("utf-8", "surrogateescape")
    return b"".join(
        bytes((byte,)) if byte in _PATH_SAFE else b"%%%02X" % byte for byte in raw
    )


def unescape(raw: bytes, plus_is_space: bool) -> str:
    """Percent-decode C{raw} like Go's C{url.QueryUnescape} (C{plus_is_space}) or
    C{PathUnescape}; raise L{EscapeError} on a bad escape."""
    if b"%" in raw:
        bad = _BAD_ESCAPE.search(raw)
        if bad is not None:
            start = bad.start()
            raise EscapeError(
                "invalid URL escape "
                + go_quote(raw[start : start + 3].decode("utf-8", "surrogateescape"))
            )
        if plus_is_space:
            raw = raw.replace(b"+", b" ")
        raw = unquote_to_bytes(raw)
    elif plus_is_space and b"+" in raw:
        raw = raw.replace(b"+", b" ")
    return raw.decode("utf-8", "surrogateescape")


def parse_query(raw: bytes, into: Form) -> str | None:
    """Add the pairs of C{raw} to C{into}; return Go's error text, if any.

    As Go's C{url.ParseQuery}: C{&} separates pairs, a pair with C{;} is an error,
    bad escapes are errors, and parsing goes on after an error.
    """
    error: str | None = None
    for pair in raw.split(b"&"):
        if b";" in pair:
            error = "invalid semicolon separator in query"
            continue
        if not pair:
            continue
        name, _, value = pair.partition(b"=")
        try:
            key = unescape(name, True)
            text = unescape(value, True)
        except EscapeError as bad:
            if error is None:
                error = str(bad)
            continue
        values = into.get(key)
        if values is None:
            into[key] = [text]
        else:
            values.append(text)
    return error


_TSPECIALS = frozenset('()<>@,;:\\"/[]?=')
_SPACE = " \t\n\v\f\r"


def _token(text: str) -> tuple[str, str]:
    """Go's mime C{consumeToken}: the leading token of C{text} and the rest."""
    for index, char in enumerate(text):
        if not (" " < char < "\x7f") or char in _TSPECIALS:
            return text[:index], text[index:]
    return text, ""


def _value(text: str) -> tuple[str, str]:
    """Go's mime C{consumeValue}: a token or a quoted string."""
    if not text.startswith('"'):
        return _token(text)
    out: list[str] = []
    index = 1
    while index < len(text):
        char = text[index]
        if char == '"':
            return "".join(out), text[index + 1 :]
        if char == "\\" and index + 1 < len(text) and text[index + 1] in '\\"':
            index += 1
            char = text[index]
        elif char in "\r\n":
            break
        out.append(char)
        index += 1
    return "", text


_MEDIA_CACHE: dict[bytes | None, tuple[str, str | None]] = {}


def parse_media_type(content_type: bytes | None) -> tuple[str, str | None]:
    """Go's C{mime.ParseMediaType} as C{ParseForm} uses it: the lower-cased media
    type and the error text, if any (an absent header is octet-stream)."""
    known = _MEDIA_CACHE.get(content_type)
    if known is None:
        known = _parse_media_type(content_type)
        if len(_MEDIA_CACHE) < 256:
            _MEDIA_CACHE[content_type] = known
    return known


def _parse_media_type(content_type: bytes | None) -> tuple[str, str | None]:
    text = (content_type or b"application/octet-stream").decode("latin-1")
    base, _, params = text.partition(";")
    media = base.strip(_SPACE).lower()
    kind, rest = _token(media)
    if not kind:
        return "", "mime: no media type"
    if rest:
        if not rest.startswith("/"):
            return "", "mime: expected slash after first token"
        subtype, rest = _token(rest[1:])
        if not subtype:
            return "", "mime: expected token after slash"
        if rest:
            return "", "mime: unexpected content after media subtype"
    rest = text[len(base) :]
    seen: set[str] = set()
    while rest.lstrip(_SPACE):
        rest = rest.lstrip(_SPACE)
        name, value, after = _media_param(rest)
        if not name:
            if rest.strip(_SPACE) == ";":
                break
            return media, "mime: invalid media parameter"
        if name in seen:
            return "", "mime: duplicate parameter name"
        seen.add(name)
        rest = after
    return media, None


def _media_param(text: str) -> tuple[str, str, str]:
    rest = text.lstrip(_SPACE)
    if not rest.startswith(";"):
        return "", "", text
    name, rest = _token(rest[1:].lstrip(_SPACE))
    if not name:
        return "", "", text
    rest = rest.lstrip(_SPACE)
    if not rest.startswith("="):
        return "", "", text
    rest = rest[1:].lstrip(_SPACE)
    value, after = _value(rest)
    if not value and after == rest:
        return "", "", text
    return name.lower(), value, after


def media_type(content_type: bytes | None) -> str:
    """The lower-cased media type of a Content-Type header value."""
    return parse_media_type(content_type)[0]


def parse_form(
    method: str, raw_query: bytes, content_type: bytes | None, body: bytes | None
) -> Form:
    """Go's C{ParseForm}: for PUT/POST/PATCH the Content-Type is parsed and an
    urlencoded body read first, then the query. Raise 210 with Go's error text
    when any of them is malformed."""
    form: Form = {}
    error: str | None = None
    if method in ("POST", "PUT", "PATCH"):
        media, error = parse_media_type(content_type)
        if media == "application/x-www-form-urlencoded":
            body = body or b""
            if len(body) > MAX_FORM_BYTES:
                raise EtcdError(INVALID_FORM, "http: POST too large")
            body_error = parse_query(body, form)
            if error is None:
                error = body_error
    if raw_query:
        query_error = parse_query(raw_query, form)
        if error is None:
            error = query_error
    if error is not None:
        raise EtcdError(INVALID_FORM, error)
    return form


def parse_bool(text: str) -> bool | None:
    """Go's C{strconv.ParseBool}: L{None} when C{text} is not a boolean."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def parse_uint(text: str) -> int | None:
    """Go's C{strconv.ParseUint(text, 10, 64)}: L{None} when invalid or too big."""
    if not text.isascii() or _UINT.match(text) is None:
        return None
    number = int(text)
    return number if number <= _UINT64_MAX else None


def parse_hex_id(text: str) -> int | None:
    """Go's C{strconv.ParseUint(text, 16, 64)}, as etcd reads member IDs."""
    if not text or not text.isascii() or text.strip("0123456789abcdefABCDEF"):
        return None
    value = int(text, 16)
    return value if value < 1 << 64 else None


@frozen
class KeyRequest:
    """A validated keys-API request (etcd's C{etcdserverpb.Request} fields)."""

    method: str
    value: str = ""
    dir: bool = False
    prev_value: str = ""
    prev_index: int = 0
    prev_exist: bool | None = None
    wait: bool = False
    wait_index: int = 0
    recursive: bool = False
    sorted: bool = False
    quorum: bool = False
    stream: bool = False
    ttl: int | None = None
    refresh: bool = False
    no_value_on_success: bool = False


def _uint(form: Form, name: str, code: int, cause: str) -> int:
    values = form.get(name)
    if values is None:
        return 0
    number = parse_uint(values[0])
    if number is None:
        raise EtcdError(code, cause)
    return number


def _bool(form: Form, name: str, cause: str | None = None) -> bool:
    values = form.get(name)
    if values is None:
        return False
    flag = parse_bool(values[0])
    if flag is None:
        raise EtcdError(INVALID_FIELD, cause or f'invalid value for "{name}"')
    return flag


def _first(form: Form, name: str) -> str:
    values = form.get(name)
    return values[0] if values else ""


def parse_key_request(method: str, form: Form) -> KeyRequest:
    """Validate C{form} in etcd's order; the first failure raises its L{EtcdError}."""
    if not form:
        return KeyRequest(method)
    prev_index = _uint(form, "prevIndex", INDEX_NAN, 'invalid value for "prevIndex"')
    wait_index = _uint(form, "waitIndex", INDEX_NAN, 'invalid value for "waitIndex"')
    recursive = _bool(form, "recursive")
    sort = _bool(form, "sorted")
    wait = _bool(form, "wait")
    dir = _bool(form, "dir")
    quorum = _bool(form, "quorum")
    stream = _bool(form, "stream")
    if wait and method != "GET":
        raise EtcdError(INVALID_FIELD, '"wait" can only be used with GET requests')
    prev_value = _first(form, "prevValue")
    if "prevValue" in form and prev_value == "":
        raise EtcdError(PREV_VALUE_REQUIRED, '"prevValue" cannot be empty')
    no_value = _bool(form, "noValueOnSuccess")
    ttl: int | None = None
    ttl_text = _first(form, "ttl")
    if ttl_text:
        ttl = parse_uint(ttl_text)
        if ttl is None:
            raise EtcdError(TTL_NAN, 'invalid value for "ttl"')
    prev_exist: bool | None = None
    if "prevExist" in form:
        prev_exist = _bool(form, "prevExist", "invalid value for prevExist")
    refresh = False
    if "refresh" in form:
        refresh = _bool(form, "refresh", "invalid value for refresh")
        if refresh:
            if _first(form, "value") != "":
                raise EtcdError(REFRESH_VALUE, "A value was provided on a refresh")
            if ttl is None:
                raise EtcdError(REFRESH_TTL_REQUIRED, "No TTL value set")
    return KeyRequest(
        method,
        _first(form, "value"),
        dir,
        prev_value,
        prev_index,
        prev_exist,
        wait,
        wait_index,
        recursive,
        sort,
        quorum,
        stream,
        ttl,
        refresh,
        no_value,
    )
