"""Reading user-supplied text files (rosters, manifests) so that bad bytes and broken quoting are named, not imported.

:func:`read_text` decodes a file or refuses it in one line: a binary file is "not a CSV"; bytes that are not
the encoding name their line, column and byte offset in the file, and the ``--encoding`` that fixes it.
:func:`read_csv` splits the text into records carrying their line numbers and sets aside every line it cannot
trust (an unbalanced quote, a field longer than any name, more fields than the header), so the good rows can
still be imported.
"""

from __future__ import annotations

import codecs
import csv
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from logoid.core.errors import CatalogError

#: Longest field accepted. Band names, titles, genres and themes are at most a few hundred characters (Metal
#: Archives' longest band names run to about 100); a field of thousands is lines swallowed by a quote that was
#: never closed (issue 22 saw ~9,600-character "names" made of raw CSV rows). 1,000 leaves 5-10x headroom.
MAX_FIELD_CHARS = 1000

# BOM → codec; UTF-32 LE before UTF-16 LE, whose BOM is its prefix.
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# What a binary file given as a table most often is.
_SIGNATURES = {b"PK\x03\x04": "a ZIP archive: an .xlsx or .ods workbook?",
               b"\xd0\xcf\x11\xe0": "an old Office file (.xls?)", b"%PDF": "a PDF", b"\x89PNG": "a PNG image",
               b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image", b"SQLite format 3\x00": "an SQLite database"}
_TEXT_CONTROLS = frozenset("\t\n\r\f\v")
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def _binary_reason(data: bytes) -> str | None:
    for magic, what in _SIGNATURES.items():
        if data.startswith(magic):
            return what
    head = data[:65536]
    nul = head.find(b"\0")
    if nul >= 0:
        return f"a NUL byte at byte {nul}"
    controls = sum(head.count(bytes([b])) for b in range(32) if chr(b) not in _TEXT_CONTROLS)
    # Text has next to no C0 controls besides tab and line ends; random bytes have about 11%.
    if head and controls > 0.01 * len(head):
        return f"{controls} control bytes in the first {len(head):,}"
    return None


def _utf8_hint(data: bytes, start: int) -> str:
    """Name --encoding, and show what the bad spot reads as in Windows-1252 so the user can tell if that is it."""
    lo, hi = data.rfind(b"\n", 0, start) + 1, data.find(b"\n", start)
    line = data[lo:hi if hi >= 0 else len(data)].rstrip(b"\r")
    at = start - lo
    snippet = line[max(0, at - 20):at + 20].decode("cp1252", errors="replace")
    return (f"pass the file's encoding with --encoding, e.g. --encoding cp1252 (Windows / Latin-1, Western Europe) "
            f"reads it as {snippet!r}")


def read_text(path: str | Path, encoding: str | None = None, kind: str = "CSV") -> tuple[str, str]:
    """The text of ``path`` and the encoding used, or :class:`CatalogError` in one line.

    ``encoding`` None sniffs: a byte-order mark names UTF-8/16/32, otherwise the file must be UTF-8. No
    single-byte encoding is guessed: Windows-1252 and Windows-1251 (Cyrillic) bytes are the same letters
    to a detector, and a wrong guess would store mis-spelled names that no photo ever matches.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CatalogError(f"{path}: cannot read ({e.strerror or e})", "check the path and its permissions") from e
    codec, skip = "utf-8", 0
    if encoding:
        try:
            codec = codecs.lookup(encoding).name
        except LookupError as e:
            raise CatalogError(f"unknown encoding {encoding!r}",
                               "pass a Python codec name to --encoding, e.g. utf-8, cp1252, latin-1") from e
    else:
        for bom, name in _BOMS:
            if data.startswith(bom):
                codec = name
                break
        else:
            why = _binary_reason(data)
            if why:
                raise CatalogError(f"{path}: not a {kind} file ({why})", f"pass a {kind} text file")
    if codec in ("utf-8", "utf-8-sig") and data.startswith(codecs.BOM_UTF8):
        codec, skip = "utf-8", len(codecs.BOM_UTF8)  # decode past the BOM so offsets below are the file's
    try:
        text = data[skip:].decode(codec)
    except UnicodeDecodeError as e:
        at = skip + e.start
        before = data[skip:at].decode(codec, errors="replace")  # all good up to the first bad byte
        line, column = before.count("\n") + 1, len(before) - before.rfind("\n")  # column: 1-based, in characters
        hint = (_utf8_hint(data, at) if codec == "utf-8" and not encoding else
                "pass the file's real encoding with --encoding")
        raise CatalogError(f"{path}: line {line}, column {column} (byte offset {at} in the file): not valid {codec} "
                           f"(0x{data[at]:02x})", hint) from e
    text = text.removeprefix("\ufeff")  # a BOM left by utf-16/32 or by an explicit --encoding utf-8
    controls = sum(1 for c in text[:65536] if unicodedata.category(c) == "Cc" and c not in _TEXT_CONTROLS)
    if "\0" in text or controls > 0.01 * min(len(text), 65536):
        raise CatalogError(f"{path}: not a {kind} file (binary data when read as {codec})",
                           f"pass a {kind} text file, or its real encoding with --encoding")
    return text, codec


@dataclass
class Record:
    """One CSV record: its fields by header, and the lines (1-based, inclusive) it came from."""

    line: int
    end_line: int
    values: dict[str, str]


@dataclass
class CsvTable:
    """The trusted records of a CSV, and every line set aside with the reason."""

    headers: list[str]
    records: list[Record] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)
    lines: int = 0
    encoding: str = "utf-8"


def _looks_like_row(line: str, ncols: int, dialect) -> bool:
    """A physical line that parses on its own into as many fields as the header: a row, not a field's tail."""
    try:
        return len(next(csv.reader([line], dialect), [])) == ncols
    except csv.Error:
        return False


def _delimiter(header_line: str) -> str:
    # Excel writes ';' where ',' is the decimal comma, and tabs in "Unicode text"; a header names no such thing.
    counts = {d: header_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


class _Lines:
    """The lines from ``start`` on, fed to one csv.reader; stops a record that grows past ``cap`` characters."""

    def __init__(self, lines: list[str], start: int, cap: int):
        self.lines, self.pos, self.cap, self.record_chars = lines, start, cap, 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self.pos >= len(self.lines) or self.record_chars > self.cap:
            raise StopIteration
        line = self.lines[self.pos]
        self.pos += 1
        self.record_chars += len(line)
        return line


def _record_problem(fields: list[str], headers: list[str], lines: list[str], start: int, end: int,
                    single: set[str], dialect) -> tuple[str, int] | None:
    """Why the record on lines ``start..end`` (0-based) cannot be trusted, and the line to go on from; or None."""
    if sum(lines[k].count(dialect.quotechar) for k in range(start, end + 1)) % 2:
        return f"unbalanced quote: an odd number of {dialect.quotechar} on this line", start + 1
    swallowed = [k for k in range(start + 1, end + 1) if _looks_like_row(lines[k], len(headers), dialect)]
    if swallowed:  # the quote opened here closed on a later row: this line is the broken one, the rest are rows
        return (f"unbalanced quote: the quoted field opened on this line runs on to line {end + 1}, "
                f"swallowing line {swallowed[0] + 1}"), start + 1
    span = f"lines {start + 1}-{end + 1}: " if end > start else ""
    for h, v in zip(headers, fields, strict=False):
        if len(v) > MAX_FIELD_CHARS:
            return (f"{span}field {h!r} is {len(v):,} characters, over the limit of {MAX_FIELD_CHARS:,} "
                    "(lines swallowed by an unbalanced quote?)"), end + 1
        if h in single and ("\n" in v or "\r" in v):
            return f"{span}a line break inside {h!r}", end + 1
    if len(fields) > len(headers) or (end > start and len(fields) != len(headers)):
        return (f"{span}{len(fields)} fields but the header has {len(headers)}"
                + (" (an unquoted delimiter in a value?)" if len(fields) > len(headers) else "")), end + 1
    return None


def read_csv(path: str | Path, encoding: str | None = None,
             one_line_fields: Callable[[list[str]], set[str]] | None = None) -> CsvTable:
    """Parse a CSV into line-numbered records, setting aside every line that would import garbage.

    Every record's quotes must balance. A quoted field may span lines (a multi-line note) only if the record
    it makes is whole: as many fields as the header, each within :data:`MAX_FIELD_CHARS`, no line break under
    the headers ``one_line_fields(headers)`` names (names and ids), and none of the lines it took in parsing
    as a row by itself. When a quote opened on one line and closed on a later row, that first line alone is set
    aside and parsing starts again on the next line, so one stray quote costs one row, not the thousands after.
    The records, the problems and the blank lines account for every line of the file.
    """
    text, codec = read_text(path, encoding)
    lines = _LINE.findall(text)
    first = next((i for i, s in enumerate(lines) if s.strip()), None)
    if first is None:
        raise CatalogError(f"{path}: empty file, no header row", "pass a CSV whose first line names the columns")
    dialect = csv.excel()
    dialect.delimiter = _delimiter(lines[first])
    dialect.strict = True
    try:
        headers = [h.strip() for h in next(csv.reader([lines[first]], dialect))]
    except csv.Error as e:
        raise CatalogError(f"{path}: line {first + 1}: cannot read the header ({e})",
                           "the first line must name the columns, its quotes balanced") from e
    table = CsvTable(headers=headers, lines=len(lines), encoding=codec)
    single = one_line_fields(headers) if one_line_fields else set()
    i = first + 1
    while i < len(lines):
        feed = _Lines(lines, i, cap=(len(headers) + 1) * MAX_FIELD_CHARS)
        reader = csv.reader(feed, dialect)
        start, resume = i, None
        try:
            for fields in reader:
                end = i + reader.line_num - 1  # the record's last line
                bad = _record_problem(fields, headers, lines, start, end, single, dialect)
                if bad:
                    table.problems.append((start + 1, bad[0]))
                    resume = bad[1]
                    break
                if any(f.strip() for f in fields):  # blank lines and Excel's ",,," rows are no rows
                    table.records.append(Record(start + 1, end + 1, dict(zip(headers, fields, strict=False))))
                start, feed.record_chars = end + 1, 0
        except csv.Error as e:
            at = i + reader.line_num  # the line the parser stopped on
            if "end of data" in str(e):
                reason = "unbalanced quote: the quoted field opened on this line does not close"
            elif "expected after" in str(e) and at > start + 1:
                reason = f"unbalanced quote: the quoted field opened on this line closes on line {at}, mid-value"
            elif "expected after" in str(e):
                reason = 'text after a closing quote (a " inside a quoted value is written "")'
            else:
                reason = str(e)
            table.problems.append((start + 1, reason))
            resume = start + 1
        i = len(lines) if resume is None else resume
    return table
