"""
The JSON form of the room's events, audiences and member records, for the
Redis stream every node reads.

Each event type has one name, given beside it in L{EVENT_NAMES} (as
Synapse's replication commands each have one); a field is written as JSON
and read back by its declared type, so a new event needs only its entry
here.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from enum import Enum
from typing import Any

import orjson

from chatroom.bans import Ban
from chatroom.core import events as ev
from chatroom.core.events import Admins, Audience, Event, Everyone, Members
from chatroom.core.ports import MemberRecord

EVENT_NAMES: dict[type[Event], str] = {
    ev.Said: "said",
    ev.Acted: "acted",
    ev.Whispered: "whispered",
    ev.Welcome: "welcome",
    ev.Joined: "joined",
    ev.Left: "left",
    ev.Renamed: "renamed",
    ev.Listed: "listed",
    ev.WhoisReply: "whois",
    ev.TextReply: "text",
    ev.FilterReply: "filter",
    ev.HelpReply: "help",
    ev.Notice: "notice",
    ev.ErrorReply: "error",
    ev.Ping: "ping",
    ev.AdminChanged: "admin",
    ev.Kicked: "kicked",
    ev.BanSet: "ban_set",
    ev.BanLifted: "ban_lifted",
    ev.BanCount: "ban_count",
    ev.BanEntry: "ban_entry",
    ev.BannedNotice: "banned",
    ev.Challenge: "challenge",
    ev.KeyAnnounced: "key",
    ev.KeyCount: "key_count",
    ev.KeyDropped: "key_dropped",
    ev.Sealed: "sealed",
    ev.GroupSealed: "group_sealed",
    ev.Arrivals: "arrivals",
    ev.TopicChanged: "topic_changed",
    ev.TopicReply: "topic",
    ev.Replayed: "replayed",
    ev.HistoryPurged: "purged",
    ev.ReplayEnd: "replay_end",
}
EVENT_TYPES: dict[str, type[Event]] = {name: kind for kind, name in EVENT_NAMES.items()}


class CodecError(ValueError):
    """
    A stream entry is not what this codec writes.
    """


# Each event type's fields and their types, read once.
_FIELDS: dict[type[Event], dict[str, Any]] = {
    kind: typing.get_type_hints(kind, vars(ev)) for kind in EVENT_NAMES
}


def _to_json(value: Any) -> Any:
    if isinstance(value, Ban):
        return value.to_json()
    if isinstance(value, ev.HistoryEntry):
        return [value.id, value.at, value.kind.value, value.sender, value.text, value.target]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    return value


Converter = Callable[[Any], Any]


def _converter(hint: Any) -> Converter:
    """
    A function that checks a JSON value against the field type C{hint}
    and returns it as that type (made once per field: decoding is on every
    node's path for every event).
    """
    if hint is Ban:
        return Ban.from_json
    if hint is ev.HistoryEntry:
        return _history_entry
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            item = _converter(args[0])
            return lambda value: tuple(item(v) for v in _list(value))
        items = [_converter(a) for a in args]
        return lambda value: tuple(c(v) for c, v in zip(items, _list(value), strict=True))
    if hint is float:
        return _float
    if hint is str:
        # The type of most fields, on every chat line's path.
        return _str
    optional = type(None) in typing.get_args(hint)
    types = tuple(h for h in (typing.get_args(hint) or (hint,)) if h is not type(None))

    def check(value: Any) -> Any:
        if value is None and optional:
            return None
        if not isinstance(value, types):
            raise CodecError(f"expected {hint}, not {value!r}")
        return value

    return check


def _str(value: Any) -> str:
    if type(value) is not str:
        raise CodecError(f"expected a string, not {value!r}")
    return value


def _history_entry(value: Any) -> ev.HistoryEntry:
    try:
        entry_id, at, kind, sender, text, target = _list(value)
        if not all(isinstance(v, str) for v in (sender, text, target)) or not isinstance(entry_id, int):
            raise CodecError(f"expected a history entry, not {value!r}")
        return ev.HistoryEntry(entry_id, _float(at), ev.HistoryKind(kind), sender, text, target)
    except ValueError as e:
        raise CodecError(f"expected a history entry, not {value!r}") from e


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise CodecError(f"expected a list, not {value!r}")
    return value


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CodecError(f"expected a number, not {value!r}")
    return float(value)


_DECODERS: dict[type[Event], list[tuple[str, Converter]]] = {
    kind: [(name, _converter(hint)) for name, hint in fields.items()] for kind, fields in _FIELDS.items()
}
# The fields written as they are (strings, numbers, flags): no _to_json.
_PLAIN: dict[type[Event], list[str]] = {
    kind: [name for name, hint in fields.items() if hint in (str, float, int, bool)]
    for kind, fields in _FIELDS.items()
}
_CONVERTED: dict[type[Event], list[str]] = {
    kind: [name for name in fields if name not in _PLAIN[kind]] for kind, fields in _FIELDS.items()
}


def encode_event(event: Event) -> dict[str, Any]:
    """
    C{event} as a JSON object: its type's name under C{t}, then its fields.
    """
    kind = type(event)
    data: dict[str, Any] = {"t": EVENT_NAMES[kind]}
    for name in _PLAIN[kind]:
        data[name] = getattr(event, name)
    for name in _CONVERTED[kind]:
        data[name] = _to_json(getattr(event, name))
    return data


def decode_event(data: Any) -> Event:
    """
    The event L{encode_event} wrote as C{data}.

    @raise CodecError: If C{data} is not one.
    """
    if not isinstance(data, dict) or data.get("t") not in EVENT_TYPES:
        raise CodecError(f"not an event: {data!r}")
    kind = EVENT_TYPES[data["t"]]
    try:
        values = [convert(data[name]) for name, convert in _DECODERS[kind]]
    except KeyError as e:
        raise CodecError(f"{data['t']} without {e}") from e
    except (TypeError, ValueError) as e:
        raise CodecError(f"bad {data['t']}: {e}") from e
    # Positional, in the order of the type's fields (as _FIELDS reads them).
    return kind(*values)


def encode_audience(audience: Audience) -> Any:
    """
    C{"*"} for everyone, C{"@"} for the admins, else the list of ids.
    """
    if isinstance(audience, Everyone):
        return "*"
    if isinstance(audience, Admins):
        return "@"
    return list(audience.ids)


def decode_audience(data: Any) -> Audience:
    if data == "*":
        return ev.EVERYONE
    if data == "@":
        return ev.ADMINS
    if isinstance(data, list) and all(isinstance(i, str) for i in data):
        return Members(tuple(data))
    raise CodecError(f"not an audience: {data!r}")


def encode_record(record: MemberRecord) -> dict[str, Any]:
    """
    What other nodes keep of C{record} (not its filters: they act only on
    the member's own node).
    """
    return {
        "id": record.id,
        "name": record.name,
        "host": record.host,
        "port": record.port,
        "connected_at": record.connected_at,
        "last_active": record.last_active,
        "is_admin": record.is_admin,
        "cloak": record.cloak,
    }


def decode_record(data: Any) -> MemberRecord:
    """
    @raise CodecError: If C{data} is not what L{encode_record} writes.
    """
    try:
        record = MemberRecord(
            str(data["id"]),
            str(data["name"]),
            str(data["host"]),
            int(data["port"]),
            float(data["connected_at"]),
            float(data["last_active"]),
            bool(data["is_admin"]),
            cloak=None if data.get("cloak") is None else str(data["cloak"]),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CodecError(f"not a member record: {data!r}") from e
    return record


def dumps(data: Any) -> str:
    # orjson: the stream's JSON is on every chat line's path, and it takes
    # a tenth of the standard library's time to write, half to read.
    return orjson.dumps(data).decode()


def loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise CodecError(f"not JSON: {text[:80]!r}") from e
