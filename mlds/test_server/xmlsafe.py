"""Parsing XML that a client (or a hand-edited file) sent: bounded, no DTD, no entities, no network.

Why not plain ``etree.fromstring``: a scheduler request is hostile input. A DOCTYPE could declare
entities that expand into gigabytes or read local files, and an unbounded body could exhaust memory.
So the bytes are size-checked first, any DOCTYPE/ENTITY declaration is refused outright, and lxml
runs with entity resolution, DTD loading and network access switched off.

The BOINC client copies the app's stderr into its request verbatim (inside CDATA), so a request may
hold bytes that are not UTF-8 or control characters that XML forbids. Those are replaced, not
rejected: refusing them would make the client resend the same report forever.
"""

import re

from lxml import etree

from mlds.test_server.errors import ProtocolError

DEFAULT_LIMIT = 16 << 20
_FORBIDDEN_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_DECLARATIONS = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def _parser():
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False, remove_comments=True
    )


def clean_text(data):
    """``data`` as text XML can hold: undecodable bytes and forbidden control characters become U+FFFD."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    return _FORBIDDEN_CHARACTERS.sub("\ufffd", text)


def parse_xml(data, what, limit=DEFAULT_LIMIT, error=ProtocolError):
    """The root element of ``data`` (bytes); raises ``error`` with the reason."""
    if len(data) > limit:
        raise error(f"{what}: {len(data)} bytes, more than the limit of {limit}")
    if _DECLARATIONS.search(data):
        raise error(f"{what}: DOCTYPE and ENTITY declarations are not accepted")
    text = clean_text(data)
    if text.lstrip().startswith("<?xml"):
        text = text.split("?>", 1)[1] if "?>" in text else text  # lxml refuses an encoding declaration in str input
    try:
        return etree.fromstring(text.encode("utf-8"), _parser())
    except etree.XMLSyntaxError as exc:
        raise error(f"{what}: not well-formed XML: {exc}") from None
