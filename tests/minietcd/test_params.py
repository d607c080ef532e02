"""minietcd's request parsing: Go's ParseForm, ParseBool, ParseUint, etcd's checks."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from minietcd.errors import EtcdError
from minietcd.params import (
    MAX_FORM_BYTES,
    EscapeError,
    KeyRequest,
    clean_path,
    escape_path,
    go_quote,
    media_type,
    parse_bool,
    parse_form,
    parse_key_request,
    parse_media_type,
    parse_query,
    parse_uint,
    unescape,
)

FORM = b"application/x-www-form-urlencoded"


class ScalarTests(SynchronousTestCase):
    """Go's strconv rules for booleans and unsigned integers."""

    def test_parse_bool(self) -> None:
        """Exactly Go's twelve spellings are booleans."""
        for text in ("1", "t", "T", "TRUE", "true", "True"):
            self.assertIs(parse_bool(text), True)
        for text in ("0", "f", "F", "FALSE", "false", "False"):
            self.assertIs(parse_bool(text), False)
        for text in ("", "yes", "tRUE", " true", "2", "on"):
            self.assertIsNone(parse_bool(text))

    def test_parse_uint(self) -> None:
        """Unsigned decimal up to 2**64-1; no sign, space, point, underscore."""
        self.assertEqual(parse_uint("0"), 0)
        self.assertEqual(parse_uint("007"), 7)
        self.assertEqual(parse_uint(str(2**64 - 1)), 2**64 - 1)
        for text in ("", "-1", "+1", " 1", "1 ", "1.5", "1_0", "abc", "٣", str(2**64)):
            self.assertIsNone(parse_uint(text), text)


class UnescapeTests(SynchronousTestCase):
    """Percent-decoding as Go's QueryUnescape and PathUnescape."""

    def test_query_and_path_modes(self) -> None:
        """+ is a space in queries only; %XX decodes in both."""
        self.assertEqual(unescape(b"a+b%20c%2F", True), "a b c/")
        self.assertEqual(unescape(b"a+b%20c%2F", False), "a+b c/")

    def test_bad_escapes(self) -> None:
        """A bad escape is Go's error text, quoting at most three bytes."""
        for raw, text in (
            (b"%zz", 'invalid URL escape "%zz"'),
            (b"a%", 'invalid URL escape "%"'),
            (b"%e", 'invalid URL escape "%e"'),
            (b"%g12", 'invalid URL escape "%g1"'),
        ):
            with self.assertRaises(EscapeError) as caught:
                unescape(raw, True)
            self.assertEqual(str(caught.exception), text)

    def test_invalid_utf8_is_kept_byte_for_byte(self) -> None:
        """Bytes that are not UTF-8 survive decoding and re-encoding unchanged."""
        text = unescape(b"%ff%e2%82x", True)
        self.assertEqual(text.encode("utf-8", "surrogateescape"), b"\xff\xe2\x82x")

    def test_go_quote(self) -> None:
        """Causes are quoted as strconv.Quote does: raw UTF-8, \\x for bad bytes."""
        self.assertEqual(go_quote('a"b\\c\n\x01é'), '"a\\"b\\\\c\\n\\x01é"')
        self.assertEqual(
            go_quote(b"%\xff".decode("utf-8", "surrogateescape")), '"%\\xff"'
        )


class QueryTests(SynchronousTestCase):
    """url.ParseQuery: pairs, repeats, semicolons, errors that do not stop parsing."""

    def test_pairs(self) -> None:
        """Pairs split on &, values keep their order, a bare name has value ""."""
        form: dict[str, list[str]] = {}
        self.assertIsNone(parse_query(b"a=1&b&&a=2&c=x%3Dy", form))
        self.assertEqual(form, {"a": ["1", "2"], "b": [""], "c": ["x=y"]})

    def test_semicolon_error_wins(self) -> None:
        """A pair with ; is an error that overrides an earlier escape error."""
        form: dict[str, list[str]] = {}
        error = parse_query(b"x=%zz&y;=1&z=1", form)
        self.assertEqual(error, "invalid semicolon separator in query")
        self.assertEqual(form, {"z": ["1"]})

    def test_first_escape_error(self) -> None:
        """With several bad escapes the first one is reported."""
        error = parse_query(b"x=%zz&y=%", {})
        self.assertEqual(error, 'invalid URL escape "%zz"')


class FormTests(SynchronousTestCase):
    """ParseForm: which bodies are read and who wins."""

    def test_body_wins_over_query(self) -> None:
        """Body values come first, so they win; query values follow."""
        form = parse_form("PUT", b"value=q&ttl=5", FORM, b"value=b")
        self.assertEqual(form, {"value": ["b", "q"], "ttl": ["5"]})

    def test_bodies_read_only_for_forms_on_put_post_patch(self) -> None:
        """Other methods and content types leave the body unread."""
        self.assertEqual(parse_form("DELETE", b"", FORM, b"prevValue=x"), {})
        self.assertEqual(parse_form("PUT", b"", b"text/plain", b"value=x"), {})
        self.assertEqual(parse_form("PUT", b"", None, b"value=x"), {})
        self.assertEqual(
            parse_form("POST", b"", FORM + b"; charset=UTF-8", b"value=x"),
            {"value": ["x"]},
        )

    def test_parse_media_type(self) -> None:
        """Content-Type is parsed as Go's mime.ParseMediaType, errors and all."""
        cases = [
            (None, "application/octet-stream", None),
            (b"", "application/octet-stream", None),
            (b"foo", "foo", None),
            (b"Text/Plain ; q = 1", "text/plain", None),
            (FORM + b";", FORM.decode(), None),
            (FORM + b'; a="b\\"c"', FORM.decode(), None),
            (FORM + b"; charset", FORM.decode(), "mime: invalid media parameter"),
            (b"a/b;;", "a/b", "mime: invalid media parameter"),
            (b"foo bar", "", "mime: expected slash after first token"),
            (b"a/", "", "mime: expected token after slash"),
            (b"a/b c", "", "mime: unexpected content after media subtype"),
            (b"a/b; x=1; X=2", "", "mime: duplicate parameter name"),
            (b" ", "", "mime: no media type"),
        ]
        for header, media, error in cases:
            self.assertEqual(parse_media_type(header), (media, error), header)

    def test_malformed_content_type_is_210(self) -> None:
        """A malformed Content-Type on PUT/POST fails the form; GET ignores it."""
        with self.assertRaises(EtcdError) as caught:
            parse_form("PUT", b"", b"foo bar", b"value=x")
        self.assertEqual(
            caught.exception.cause, "mime: expected slash after first token"
        )
        self.assertEqual(parse_form("GET", b"a=1", b"foo bar", None), {"a": ["1"]})

    def test_media_type(self) -> None:
        """The media type is the lower-cased part before any parameter."""
        self.assertEqual(
            media_type(b" Application/X-WWW-Form-Urlencoded ; q=1"), FORM.decode()
        )
        self.assertEqual(media_type(None), "application/octet-stream")

    def test_errors_are_210(self) -> None:
        """A malformed body or query is 210 with Go's text; the body's error first."""
        with self.assertRaises(EtcdError) as caught:
            parse_form("PUT", b"x=%zz", FORM, b"value=%")
        self.assertEqual(
            (caught.exception.code, caught.exception.cause),
            (210, 'invalid URL escape "%"'),
        )
        self.assertEqual(caught.exception.index, 0)

    def test_form_body_limit(self) -> None:
        """A form body over 10 MiB is Go's "http: POST too large"."""
        with self.assertRaises(EtcdError) as caught:
            parse_form("PUT", b"", FORM, b"v" * (MAX_FORM_BYTES + 1))
        self.assertEqual(caught.exception.cause, "http: POST too large")
        self.assertEqual(
            parse_form("PUT", b"", FORM, b"v" * MAX_FORM_BYTES),
            {"v" * MAX_FORM_BYTES: [""]},
        )


class KeyRequestTests(SynchronousTestCase):
    """parseKeyRequest's checks, in etcd's order."""

    def check(self, method: str, query: bytes, code: int, cause: str) -> None:
        with self.assertRaises(EtcdError) as caught:
            parse_key_request(method, parse_form(method, query, None, None))
        error = caught.exception
        self.assertEqual(
            (error.code, error.cause, error.index), (code, cause, 0), query
        )

    def test_errors(self) -> None:
        """Each invalid parameter gives etcd's code and cause."""
        self.check("GET", b"prevIndex=x", 203, 'invalid value for "prevIndex"')
        self.check("GET", b"prevIndex=", 203, 'invalid value for "prevIndex"')
        self.check("GET", b"waitIndex=-1", 203, 'invalid value for "waitIndex"')
        for name in ("recursive", "sorted", "wait", "dir", "quorum", "stream"):
            self.check(
                "GET", name.encode() + b"=maybe", 209, f'invalid value for "{name}"'
            )
        self.check(
            "PUT", b"wait=true", 209, '"wait" can only be used with GET requests'
        )
        self.check(
            "HEAD", b"wait=true", 209, '"wait" can only be used with GET requests'
        )
        self.check("PUT", b"prevValue=", 201, '"prevValue" cannot be empty')
        self.check(
            "PUT", b"noValueOnSuccess=2", 209, 'invalid value for "noValueOnSuccess"'
        )
        self.check("PUT", b"ttl=abc", 202, 'invalid value for "ttl"')
        self.check("PUT", b"ttl=-1", 202, 'invalid value for "ttl"')
        self.check("PUT", b"prevExist=maybe", 209, "invalid value for prevExist")
        self.check("PUT", b"refresh=maybe", 209, "invalid value for refresh")
        self.check(
            "PUT",
            b"refresh=true&ttl=5&value=v",
            211,
            "A value was provided on a refresh",
        )
        self.check("PUT", b"refresh=true", 212, "No TTL value set")
        self.check("PUT", b"refresh=true&ttl=", 212, "No TTL value set")

    def test_order(self) -> None:
        """When several parameters are bad, the first check in etcd's order wins."""
        self.check(
            "PUT",
            b"ttl=x&recursive=x&waitIndex=x&prevIndex=x",
            203,
            'invalid value for "prevIndex"',
        )
        self.check(
            "PUT", b"ttl=x&stream=x&wait=true", 209, 'invalid value for "stream"'
        )
        self.check("PUT", b"ttl=x&prevValue=", 201, '"prevValue" cannot be empty')
        self.check("PUT", b"prevExist=x&ttl=x", 202, 'invalid value for "ttl"')

    def test_values(self) -> None:
        """Valid parameters fill the request; empty ttl, prevIndex=0 mean none."""
        form = parse_form(
            "PUT",
            b"value=v&dir=false&prevValue=p&prevIndex=0&prevExist=true&ttl=&refresh=false"
            b"&noValueOnSuccess=1&unknown=x",
            None,
            None,
        )
        self.assertEqual(
            parse_key_request("PUT", form),
            KeyRequest(
                "PUT",
                value="v",
                prev_value="p",
                prev_exist=True,
                no_value_on_success=True,
            ),
        )
        watch = parse_key_request(
            "GET",
            parse_form("GET", b"wait=1&waitIndex=7&recursive=T&stream=t", None, None),
        )
        self.assertEqual(
            (watch.wait, watch.wait_index, watch.recursive, watch.stream),
            (True, 7, True, True),
        )
        self.assertEqual(parse_key_request("GET", {}), KeyRequest("GET"))

    def test_first_value_wins(self) -> None:
        """Repeated parameters use their first value."""
        form = parse_form("PUT", b"value=1&value=2&ttl=3&ttl=x", None, None)
        request = parse_key_request("PUT", form)
        self.assertEqual((request.value, request.ttl), ("1", 3))


class PathTests(SynchronousTestCase):
    """Go's ServeMux path cleaning and URL path escaping."""

    def test_clean_path(self) -> None:
        """Dots and doubled slashes are cleaned; a trailing slash is kept."""
        self.assertEqual(clean_path("/v2/keys/a"), "/v2/keys/a")
        self.assertEqual(clean_path("/v2/keys/"), "/v2/keys/")
        self.assertEqual(clean_path("/v2/keys//a"), "/v2/keys/a")
        self.assertEqual(clean_path("/v2/keys/a/../b/"), "/v2/keys/b/")
        self.assertEqual(clean_path("/v2/keys/./a/."), "/v2/keys/a")
        self.assertEqual(clean_path("/v2/keys/.hidden"), "/v2/keys/.hidden")
        self.assertEqual(clean_path(""), "/")

    def test_escape_path(self) -> None:
        """Only unreserved characters and $&+,/:;=@ stay unescaped."""
        self.assertEqual(
            escape_path("/a b/?/é/$&+,:;=@~"), b"/a%20b/%3F/%C3%A9/$&+,:;=@~"
        )
        self.assertEqual(escape_path("/%!*"), b"/%25%21%2A")
