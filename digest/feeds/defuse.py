"""Strip a feed's DOCTYPE of everything that could expand or reach out, before any XML parser.

Only short literal entities survive (`<!ENTITY id "tag:example.org,">`): at most MAX_ENTITIES,
each at most MAX_ENTITY_VALUE bytes, and only while their uses in the document add at most
MAX_EXPANSION bytes in all. Entities that refer to other entities, external (SYSTEM/PUBLIC)
and parameter entities, and parameter entity references are dropped, however large the
internal subset and however its parts are spread over lines; once anything is dropped, the
subset keeps only the safe entities. A document that ends inside its DOCTYPE keeps nothing
from the DOCTYPE on. The search runs on the bytes, or on the text for UTF-16/32 and EBCDIC.
"""

from __future__ import annotations

import re

MAX_ENTITIES = 64
MAX_ENTITY_VALUE = 200
MAX_EXPANSION = 1_000_000

_PROLOG_ITEM = re.compile(rb"\s++|<\?.*?\?>|<!--.*?-->", re.DOTALL)
_DOCTYPE_OPEN = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_DOCTYPE_HEAD = re.compile(rb"""<!DOCTYPE(?:[^\[>"']++|"[^"]*+"|'[^']*+')*+""", re.IGNORECASE)
_ELEMENT = re.compile(rb"<[A-Za-z_:\x80-\xff]")
_DECLARATION = rb"""<!--.*?-->|<\?.*?\?>|<!(?:[^>"']++|"[^"]*+"|'[^']*+')*+>|%[^;\s]*+;"""
_DECLARATIONS = re.compile(_DECLARATION, re.DOTALL)
_SUBSET = re.compile(rb"(?:\s++|" + _DECLARATION + rb")*+", re.DOTALL)
_SAFE_ENTITY = re.compile(
    rb"""<!ENTITY\s+([\w.:-]+)\s+(?:"((?:[^"&%<]|&\#\w+;)*)"|'((?:[^'&%<]|&\#\w+;)*)')\s*>"""
)
_EBCDIC = b"\x4c\x6f\xa7\x94"  # "<?xm" in code page 037


def defuse(data: bytes) -> tuple[bytes, bool]:
    """The bytes to parse, and whether any entity declaration was dropped from them."""
    codec = _codec(data[:4])
    if codec == "latin-1":
        return _defuse_bytes(data)
    # Search a one-byte-per-character copy of the text, then re-encode what is kept.
    text = data.decode(codec, "replace")
    probe = text.encode("latin-1", "replace")
    cut = _cut(probe)
    if cut is None:
        return data, False
    start, end, kept, dropped = cut
    return (text[:start] + kept.decode("latin-1") + text[end:]).encode(codec), dropped


def _defuse_bytes(data: bytes) -> tuple[bytes, bool]:
    cut = _cut(data)
    if cut is None:
        return data, False
    start, end, kept, dropped = cut
    return data[:start] + kept + data[end:], dropped


def _cut(probe: bytes) -> tuple[int, int, bytes, bool] | None:
    """What to replace (start, end) with what (the kept declarations), or None to keep all."""
    doctype = _doctype_start(probe)
    if doctype is None:
        return None
    head = _DOCTYPE_HEAD.match(probe, doctype)
    assert head is not None
    opening = head.end()
    if probe[opening : opening + 1] == b">":
        return None  # no internal subset
    if probe[opening : opening + 1] != b"[":
        return doctype, len(probe), b"", True  # the document ends inside the DOCTYPE
    start, end, kept, dropped = _subset(probe, opening + 1)
    if end >= len(probe):
        return doctype, len(probe), b"", True
    # One declaration a line, as feedparser's own DOCTYPE handling expects.
    return (start, end, b"\n" + kept + b"\n", True) if dropped else None


def _doctype_start(probe: bytes) -> int | None:
    """Where the prolog's DOCTYPE starts, past any BOM, spaces, comments and instructions."""
    position = 3 if probe.startswith(b"\xef\xbb\xbf") else 0
    while (item := _PROLOG_ITEM.match(probe, position)) and item.end() > position:
        position = item.end()
    if _DOCTYPE_OPEN.match(probe, position):
        return position
    # Stray text before the DOCTYPE is not well-formed, but is no reason to trust the subset.
    found = _DOCTYPE_OPEN.search(probe, position)
    if found is None or _ELEMENT.search(probe, position, found.start()):
        return None
    return found.start()


def _subset(probe: bytes, start: int) -> tuple[int, int, bytes, bool]:
    """The internal subset from `start`: where it ends and its safe entity declarations."""
    extent = _SUBSET.match(probe, start)
    assert extent is not None
    end = extent.end()
    if probe[end : end + 1] != b"]":
        # Not a subset we understand: keep none of it, up to the next "]" if there is one.
        close = probe.find(b"]", end)
        return start, close if close >= 0 else len(probe), b"", True
    kept: list[bytes] = []
    names: set[bytes] = set()
    dropped = False
    for declaration in _DECLARATIONS.finditer(probe, start, end):
        text = declaration.group()
        if not text.startswith((b"<!ENTITY", b"%")):
            continue
        safe = _SAFE_ENTITY.fullmatch(text)
        if (
            safe is None
            or len(kept) >= MAX_ENTITIES
            or safe.group(1) in names
            or len(_value(safe)) > MAX_ENTITY_VALUE
        ):
            dropped = True
            continue
        kept.append(text)
        names.add(safe.group(1))
    if kept and _expansion(probe, kept, end) > MAX_EXPANSION:
        kept, dropped = [], True
    return start, end, b"\n".join(kept), dropped


def _value(entity: re.Match[bytes]) -> bytes:
    return entity.group(2) if entity.group(2) is not None else entity.group(3)


def _expansion(probe: bytes, kept: list[bytes], subset_end: int) -> int:
    """How many bytes the kept entities would add where the document uses them."""
    total = 0
    for declaration in kept:
        safe = _SAFE_ENTITY.fullmatch(declaration)
        assert safe is not None
        total += len(_value(safe)) * probe.count(b"&" + safe.group(1) + b";", subset_end)
    return total


def _codec(head: bytes) -> str:
    """The codec to search a prolog with: UTF-16/32 by BOM or pattern, EBCDIC, else bytes."""
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "utf-32"
    if head == b"\x00\x00\x00<":
        return "utf-32-be"
    if head == b"<\x00\x00\x00":
        return "utf-32-le"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if head.startswith(b"<\x00"):
        return "utf-16-le"
    if head.startswith(b"\x00<"):
        return "utf-16-be"
    if head == _EBCDIC:
        return "cp037"
    return "latin-1"
