"""A minimal XMP packet: write simple properties, read them back by namespace and name.

Parsing refuses DTDs and entity declarations, so an image cannot expand entities at us.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from xml.sax.saxutils import escape

NS_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
NS_IPTC_EXT = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
NS_PLUS = "http://ns.useplus.org/ldf/xmp/1.0/"
NS_TC260 = "http://www.tc260.org.cn/ns/AIGC/1.0/"
NS_CHOPMARK = "http://ns.chopmark.org/xmp/1.0/"

PREFIXES = {
    NS_IPTC_EXT: "Iptc4xmpExt",
    NS_PLUS: "plus",
    NS_TC260: "TC260",
    NS_CHOPMARK: "chopmark",
}

_PACKET_START = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
_PACKET_END = '<?xpacket end="w"?>'


class XmpError(ValueError):
    """The XMP packet cannot be parsed safely."""


def build_xmp(properties: Mapping[tuple[str, str], str]) -> bytes:
    """An XMP packet with one ``rdf:Description`` holding simple ``(namespace, name) → value``."""
    used = sorted({ns for ns, _ in properties})
    for ns in used:
        if ns not in PREFIXES:
            raise ValueError(f"no prefix known for namespace {ns}")
    declarations = "".join(f'\n    xmlns:{PREFIXES[ns]}="{ns}"' for ns in used)
    body = "".join(
        f"\n   <{PREFIXES[ns]}:{name}>{escape(value)}</{PREFIXES[ns]}:{name}>"
        for (ns, name), value in properties.items()
    )
    text = (
        f"{_PACKET_START}\n"
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        f' <rdf:RDF xmlns:rdf="{NS_RDF}">\n'
        f'  <rdf:Description rdf:about=""{declarations}>{body}\n'
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        f"{_PACKET_END}"
    )
    return text.encode("utf-8")


def parse_xmp(packet: bytes) -> dict[tuple[str, str], str]:
    """Simple properties of every ``rdf:Description``, as ``(namespace, name) → value``.

    Properties written as attributes, as element text, as ``rdf:resource``, or as the first item
    of an ``rdf:Alt``/``rdf:Seq``/``rdf:Bag`` are all found.
    """
    lowered = packet.lower()
    if b"<!doctype" in lowered or b"<!entity" in lowered:
        raise XmpError("XMP with a DTD or entity declarations is refused")
    text = packet.decode("utf-8", errors="replace").lstrip("\ufeff")
    start = text.find("<x:xmpmeta")
    if start < 0:
        start = text.find("<rdf:RDF")
    end_tag = "</x:xmpmeta>" if text.startswith("<x:xmpmeta", start) else "</rdf:RDF>"
    end = text.find(end_tag, start)
    if start < 0 or end < 0:
        raise XmpError("no xmpmeta or rdf:RDF element")
    try:
        root = ET.fromstring(text[start : end + len(end_tag)])
    except ET.ParseError as exc:
        raise XmpError(f"malformed XMP: {exc}") from exc
    found: dict[tuple[str, str], str] = {}
    for desc in root.iter(f"{{{NS_RDF}}}Description"):
        for attr, value in desc.attrib.items():
            key = _split(attr)
            if key and key[0] != NS_RDF:
                found.setdefault(key, value)
        for child in desc:
            key = _split(child.tag)
            if key is None:
                continue
            value = _element_value(child)
            if value is not None:
                found.setdefault(key, value)
    return found


def _split(tag: str) -> tuple[str, str] | None:
    if not tag.startswith("{"):
        return None
    ns, _, name = tag[1:].partition("}")
    return ns, name


def _element_value(element: ET.Element) -> str | None:
    resource = element.get(f"{{{NS_RDF}}}resource")
    if resource is not None:
        return resource
    for container in ("Alt", "Seq", "Bag"):
        holder = element.find(f"{{{NS_RDF}}}{container}")
        if holder is not None:
            item = holder.find(f"{{{NS_RDF}}}li")
            return None if item is None else (item.text or "").strip()
    if len(element):
        return None
    return (element.text or "").strip()
