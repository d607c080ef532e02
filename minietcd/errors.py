"""etcd v2 error codes: messages, HTTP statuses, and the error the store raises."""

from __future__ import annotations

from attrs import define

KEY_NOT_FOUND = 100
TEST_FAILED = 101
NOT_FILE = 102
NOT_DIR = 104
NODE_EXIST = 105
ROOT_READ_ONLY = 107
DIR_NOT_EMPTY = 108
UNAUTHORIZED = 110
PREV_VALUE_REQUIRED = 201
TTL_NAN = 202
INDEX_NAN = 203
INVALID_FIELD = 209
INVALID_FORM = 210
REFRESH_VALUE = 211
REFRESH_TTL_REQUIRED = 212
RAFT_INTERNAL = 300
EVENT_INDEX_CLEARED = 401

#: errorCode -> message, exactly as etcd's v2error package words them.
MESSAGES: dict[int, str] = {
    100: "Key not found",
    101: "Compare failed",
    102: "Not a file",
    103: "Reached the max number of peers in the cluster",
    104: "Not a directory",
    105: "Key already exists",
    106: "The prefix of given key is a keyword in etcd",
    107: "Root is read only",
    108: "Directory not empty",
    109: "Peer address has existed",
    110: "The request requires user authentication",
    200: "Value is Required in POST form",
    201: "PrevValue is Required in POST form",
    202: "The given TTL in POST form is not a number",
    203: "The given index in POST form is not a number",
    204: "Value or TTL is required in POST form",
    205: "The given timeout in POST form is not a number",
    206: "Name is required in POST form",
    207: "Index or value is required",
    208: "Index and value cannot both be specified",
    209: "Invalid field",
    210: "Invalid POST form",
    211: "Value provided on refresh",
    212: "A TTL must be provided on refresh",
    300: "Raft Internal Error",
    301: "During Leader Election",
    400: "watcher is cleared due to etcd recovery",
    401: "The event in requested index is outdated and cleared",
    402: "Standby Internal Error",
    403: "Invalid active size",
    404: "Standby remove delay",
    500: "Client Internal Error",
}

#: errorCode -> HTTP status; every code not listed here answers 400.
STATUSES: dict[int, int] = {
    100: 404,
    101: 412,
    102: 403,
    105: 412,
    108: 403,
    110: 401,
    300: 500,
    301: 500,
}


@define
class EtcdError(Exception):
    """An etcd v2 error: C{code} selects the message and HTTP status.

    C{cause} is the detail etcd puts in the JSON ``cause`` field (omitted when empty);
    C{index} is the store index reported in the body and the ``X-Etcd-Index`` header.
    """

    code: int
    cause: str = ""
    index: int = 0

    @property
    def message(self) -> str:
        """The fixed etcd message for this error code."""
        return MESSAGES.get(self.code, "")

    @property
    def status(self) -> int:
        """The HTTP status etcd answers this error with."""
        return STATUSES.get(self.code, 400)

    def __str__(self) -> str:
        return f"{self.code}: {self.message} ({self.cause}) [{self.index}]"
