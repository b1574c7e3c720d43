"""Reading a report back in tests: the HTML parsed with the standard library (every
non-void element closed in order), its SVGs parsed as XML, and the facts the
report promises pulled out: nodes per drawing, colours per kernel, URLs."""
from __future__ import annotations

import re
import struct
import xml.etree.ElementTree as ET
import zlib
from html.parser import HTMLParser

import numpy as np

VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "source", "wbr"}
SVG_CHILD_VOID = {"path", "rect", "line", "circle", "polyline"}
SVG_NS = "http://www.w3.org/2000/svg"


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.attrs = [], [], []

    def handle_starttag(self, tag, attrs):
        self.attrs.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.attrs.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag in SVG_CHILD_VOID and (not self.stack or self.stack[-1] != tag):
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()


def parse(html: str) -> list:
    """(tag, attrs) of every element; raises AssertionError when tags do not nest."""
    p = _Tags()
    p.feed(html)
    p.close()
    assert not p.errors, p.errors[:5]
    assert not p.stack, f"unclosed: {p.stack[:5]}"
    return p.attrs


def svgs(html: str) -> dict:
    """svg id -> its XML element tree (each drawing must be well-formed XML)."""
    out = {}
    for m in re.finditer(r"<svg\b.*?</svg>", html, re.S):
        root = ET.fromstring(m.group(0))
        out[root.get("id") or f"anon{len(out)}"] = root
    return out


def nodes_of(svg) -> list:
    return [g for g in svg.iter(f"{{{SVG_NS}}}g") if "node" in (g.get("class") or "").split()]


def kernel_fills(svg) -> dict:
    """kernel class ("k3") -> the set of fills of the nodes it computes first."""
    out: dict = {}
    for g in nodes_of(svg):
        ks = [c for c in g.get("class").split() if re.fullmatch(r"k\d+", c)]
        if ks:
            out.setdefault(ks[0], set()).add(g.find(f"{{{SVG_NS}}}rect").get("fill"))
    return out


def external_urls(html: str) -> list:
    """Every URL the page could fetch or link (the SVG namespace name is not one)."""
    urls = [u for u in re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"'<>)]*", html) if SVG_NS not in u]
    attrs = [(t, a) for t, a in parse(html) if any(k in a for k in ("src", "href")) or t == "link"]
    return urls + [f"<{t} {a}>" for t, a in attrs]


def read_png(path) -> np.ndarray:
    """An 8-bit RGB or RGBA PNG (what Chromium writes) as an (h, w, channels) array."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, head = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            head = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = head
    assert depth == 8 and ctype in (2, 6) and interlace == 0, head
    ch = 3 if ctype == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + w * ch)
    out = np.zeros((h, w * ch), np.int32)
    for y in range(h):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        prev = out[y - 1] if y else np.zeros(w * ch, np.int32)
        if f == 0:
            out[y] = line
        elif f == 2:
            out[y] = (line + prev) & 255
        else:
            row = np.zeros(w * ch, np.int32)
            for x in range(w * ch):
                a = row[x - ch] if x >= ch else 0
                c = prev[x - ch] if x >= ch else 0
                if f == 1:
                    pred = a
                elif f == 3:
                    pred = (a + prev[x]) // 2
                else:
                    p = a + prev[x] - c
                    pa, pb, pc = abs(p - a), abs(p - prev[x]), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else prev[x] if pb <= pc else c
                row[x] = (line[x] + pred) & 255
            out[y] = row
    return out.reshape(h, w, ch).astype(np.uint8)
