"""A page's bytes as text: the declared charset checked against what the bytes say, a guess when it is wrong or missing."""

import codecs
import functools
import itertools
import logging
import re
from collections.abc import Iterator

from charset_normalizer import from_bytes
from charset_normalizer.constant import IANA_SUPPORTED
from charset_normalizer.md import mess_ratio

logger = logging.getLogger(__name__)

_DOCUMENT_CHARSET = re.compile(
    rb"""<meta\b[^>]*?charset\s*=\s*["']?\s*([\w.:-]+)|\A\s*<\?xml\b[^>]*?encoding\s*=\s*["']([\w.:-]+)""",
    re.IGNORECASE,
)
_CHARSET_SCAN_BYTES = 16 * 1024
COMPRESSED_MAGIC = (b"\x1f\x8b", b"\x28\xb5\x2f\xfd")  # gzip, zstd: a body compressed twice
_BYTE_ORDER_MARKS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                     (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# Labels that pages use for a charset whose superset they really mean (the WHATWG Encoding
# Standard decodes them this way too): "iso-8859-1" pages carry windows-1252 quotes and euro signs.
_SUPERSETS = {"ascii": "cp1252", "iso8859-1": "cp1252", "iso8859-9": "cp1254", "tis-620": "cp874",
              "iso8859-11": "cp874", "gb2312": "gb18030", "gbk": "gb18030", "euc_kr": "cp949",
              "shift_jis": "cp932", "big5": "big5hkscs"}
_LABELS_PYTHON_LACKS = {"windows-874": "cp874", "windows-31j": "cp932", "x-sjis": "cp932", "x-gbk": "gb18030"}
# Text charsets only: Python also has codecs such as base64, rot13 or punycode, and utf-7 can hide markup.
_CHARSETS = frozenset(codecs.lookup(name).name for name in IANA_SUPPORTED if name != "utf_7")
_WIDE_CODECS = ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be")
# A decoding is taken to be garbled when the visible text's pieces that hold non-ASCII characters
# average this much "mess" (charset_normalizer's share of suspicious characters, capped at 1 per
# piece). Measured on 700 real pages (A2_trafilatura_eval/dev) in their right charset: at most 0.11;
# the Polish, Ukrainian, Arabic and Chinese ones among them, encoded in their legacy charsets and
# read as windows-1252: 0.52 to 1.
# (Swaps between two Latin charsets, such as windows-1252 for windows-1257, can look clean: the
# order of the candidates in `decode_html` settles those.)
_MAX_MESS = 0.2
_MESS_PIECE_CHARS = 512
_MESS_PIECES = 100
_MARKUP = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->|<[^>]*>", re.IGNORECASE | re.DOTALL)
_C1_CONTROL = re.compile("[\x80-\x9f]")
# Soft hyphens, zero-width and bidi marks, and icon-font characters (private use) are frequent in
# real pages and look suspicious to the measure.
_UNSCORED = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff\ue000-\uf8ff]")

# windows-1252 with its five unassigned bytes mapped to the C1 controls, as browsers decode it
# (Python's codec refuses them, and latin-1 would turn quotes and the euro sign into controls).
_WINDOWS_1252 = "".join(bytes([byte]).decode("cp1252", errors="replace").replace("\ufffd", chr(byte))
                        for byte in range(256))


def _windows_1252_for_bad_utf8(error: UnicodeError) -> tuple[str, int]:
    """A codec error handler: bytes that are not UTF-8 are read as windows-1252."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return codecs.charmap_decode(error.object[error.start:error.end], "strict", _WINDOWS_1252)[0], error.end


# Pages that mix UTF-8 with stray windows-1252 bytes (a template in one, an editor in the other)
# are common; this reads each part in its own encoding.
codecs.register_error("newswatch-windows-1252", _windows_1252_for_bad_utf8)


@functools.cache
def _codec_name(label: str) -> str | None:
    """The Python codec for a charset label, or None for an unknown or non-text one (utf-7, base64...)."""
    label = label.strip().strip("\"'").lower()
    try:
        name = codecs.lookup(_LABELS_PYTHON_LACKS.get(label, label)).name
    except (LookupError, ValueError):
        return None
    name = _SUPERSETS.get(name, name)
    return name if name in _CHARSETS else None


def _decode_strictly(body: bytes, codec: str) -> str | None:
    """The body in one charset, or None when some bytes are not valid in it."""
    try:
        if codec == "cp1252":
            return codecs.charmap_decode(body, "strict", _WINDOWS_1252)[0]
        return body.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def _reads_as_text(html: str) -> bool:
    """Whether the page's visible text looks like real writing rather than mis-decoded bytes."""
    text = _UNSCORED.sub("", " ".join(_MARKUP.sub(" ", html).split()))
    pieces = (text[start:start + _MESS_PIECE_CHARS] for start in range(0, len(text), _MESS_PIECE_CHARS))
    # A C1 control character is what bytes 0x80-0x9f become in the wrong charset; text never has one.
    scored = [1.0 if _C1_CONTROL.search(piece) else min(mess_ratio(piece, 10.0), 1.0)
              for piece in itertools.islice((piece for piece in pieces if not piece.isascii()), _MESS_PIECES)]
    return not scored or sum(scored) / len(scored) < _MAX_MESS


def declared_charsets(body: bytes, charset: str | None = None) -> list[str]:
    """The Python codecs a page is declared in: the HTTP charset first, then the page's own."""
    labels = [charset] if charset else []
    if match := _DOCUMENT_CHARSET.search(body[:_CHARSET_SCAN_BYTES]):
        labels.append((match[1] or match[2]).decode("ascii"))
    return list(dict.fromkeys(codec for label in labels if (codec := _codec_name(label))))


def _mostly_utf8(body: bytes) -> bool:
    """Whether a body that is not valid UTF-8 still holds more UTF-8 characters than invalid bytes.

    Pages that mix the two are common (a template in UTF-8, an editor in windows-1252); a page
    wholly in a legacy charset has only the odd accidental UTF-8 pair, such as "ß" + soft hyphen.
    """
    valid = body.decode("utf-8", errors="ignore")
    return len(valid) - sum(map(str.isascii, valid)) > len(body) - len(valid.encode("utf-8"))


def _decodings(body: bytes, declared: list[str]) -> Iterator[tuple[str, str | None]]:
    """Candidate (how, text) decodings of a body that is not valid UTF-8, best first."""
    mixed = _mostly_utf8(body)
    if mixed:
        yield "UTF-8 with windows-1252 bytes", body.decode("utf-8", errors="newswatch-windows-1252")
    for codec in declared:
        if codec != "utf-8" and codec not in _WIDE_CODECS:
            yield codec, _decode_strictly(body, codec)
    if not mixed:  # the browsers' default for a page without a usable declaration
        yield "cp1252", _decode_strictly(body, "cp1252")
    for guess in from_bytes(body):  # charset_normalizer samples the body itself
        yield guess.encoding, _decode_strictly(body, guess.encoding)


def decode_html(body: bytes, charset: str | None = None) -> str | None:
    """Decode a page's bytes, recovering from a charset declaration that does not match them.

    In order: a byte-order mark; a UTF-16/32 charset from the HTTP header; UTF-8 when every byte
    is valid in it (a page declared iso-8859-1 that is really UTF-8 would otherwise read "cafÃ©").
    Otherwise the first of these whose text reads as real writing: UTF-8 with stray
    windows-1252 bytes when UTF-8 dominates; the declared charsets; windows-1252 (a page declared
    utf-8 whose bytes are windows-1252); charset_normalizer's guesses.

    Args:
        body: The page as served (after any Content-Encoding was undone).
        charset: The charset of the HTTP Content-Type header, if any; the page's own <meta
            charset> or XML declaration is read from the body.

    Returns:
        The page as text, or None when no decoding gives sensible text.
    """
    for mark, codec in _BYTE_ORDER_MARKS:
        if body.startswith(mark) and (text := _decode_strictly(body, codec)) is not None:
            return text
    declared = declared_charsets(body, charset)
    if charset and declared and declared[0] in _WIDE_CODECS:  # only a header can say UTF-16 without a BOM
        if (text := _decode_strictly(body, declared[0])) is not None and _reads_as_text(text):
            return text
    if (text := _decode_strictly(body, "utf-8")) is not None:
        return text
    for how, text in _decodings(body, declared):
        if text is not None and _reads_as_text(text):
            if how not in declared:
                logger.debug("Page declared as %s read as %s", declared or "nothing", how)
            return text
    logger.debug("Page declared as %s gives no sensible text in any charset", declared or "nothing")
    return None
