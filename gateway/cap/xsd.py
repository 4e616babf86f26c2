"""Safe parsing of CAP documents and validation against the OASIS CAP 1.2 schema.

A CAP document comes from outside: it is parsed with no DTD, no entities, no network and no
huge-tree allowance, so entity expansion ("billion laughs"), external entities (XXE) and DTD
tricks are refused before anything reads the alert. Validation names the first problem with its
path in the document, which the API hands back to the sender.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from xml.parsers import expat

from lxml import etree

NAMESPACE = "urn:oasis:names:tc:emergency:cap:1.2"
NS = {"cap": NAMESPACE}
SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "CAP-v1.2.xsd"
# A CAP alert with every optional part filled is a few tens of KB; resources travel by URI.
MAX_DOCUMENT_BYTES = 512 * 1024


@dataclass(frozen=True)
class CapProblem(Exception):
    """Why a document is not a CAP 1.2 alert: a stable reason and, where there is one, the
    schema's path to the offending element."""

    reason: str
    detail: str
    path: str | None = None

    def __str__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return f"{self.reason}{where}: {self.detail}"


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


@cache
def _schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMA_PATH), _parser()))


def parse(document: bytes) -> etree._Element:
    """The root element of a CAP 1.2 document that passed the schema; `CapProblem` otherwise
    (reasons: `too_large`, `not_xml`, `dtd_forbidden`, `wrong_namespace`, `schema_invalid`)."""
    if len(document) > MAX_DOCUMENT_BYTES:
        raise CapProblem("too_large", f"the document is over {MAX_DOCUMENT_BYTES} bytes")
    # Before lxml reads a byte: its guard against entity amplification is a syntax error,
    # which would hide that the document declared a DTD at all.
    if _declares_dtd(document):
        raise CapProblem("dtd_forbidden", "a DOCTYPE or entity declaration is not allowed")
    try:
        tree = etree.ElementTree(etree.fromstring(document, _parser()))
    except etree.XMLSyntaxError as exc:
        raise CapProblem("not_xml", str(exc.msg or exc)) from None
    docinfo = tree.docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise CapProblem("dtd_forbidden", "a DOCTYPE or entity declaration is not allowed")
    root = tree.getroot()
    if etree.QName(root).namespace != NAMESPACE:
        found = etree.QName(root).namespace or "(none)"
        raise CapProblem("wrong_namespace", f"expected {NAMESPACE}, found {found}")
    validate(root)
    return root


class _Prolog(Exception):
    """Stops the prolog scan: a DOCTYPE was declared (True) or the root element began."""

    def __init__(self, declared: bool) -> None:
        self.declared = declared


def _declares_dtd(document: bytes) -> bool:
    """Whether the prolog declares a DOCTYPE, read by expat only up to the root element (so
    nothing declared is ever expanded); a document expat cannot read is lxml's to refuse."""
    scanner = expat.ParserCreate()

    def declared(*_args: object) -> None:
        raise _Prolog(True)

    def root(*_args: object) -> None:
        raise _Prolog(False)

    scanner.StartDoctypeDeclHandler = declared
    scanner.EntityDeclHandler = declared
    scanner.StartElementHandler = root
    try:
        scanner.Parse(document, True)
    except _Prolog as stop:
        return stop.declared
    except expat.ExpatError:
        return False
    return False


def validate(root: etree._Element) -> None:
    """Raise `CapProblem("schema_invalid", ...)` with the first error's path when `root` is not
    a valid CAP 1.2 alert."""
    schema = _schema()
    if schema.validate(root):
        return
    error = schema.error_log[0]
    raise CapProblem("schema_invalid", error.message, error.path)
