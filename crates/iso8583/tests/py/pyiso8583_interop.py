"""Interop driver for crates/iso8583/tests/pyiso8583.rs: encodes and decodes ISO 8583 messages
with pyiso8583 (PyPI `pyiso8583`, module `iso8583`), a third-party implementation, under a spec
dict built from one of this crate's TOML specs.

    python pyiso8583_interop.py SPEC.toml encode   < [{"t": "0200", "2": "...", ...}, ...]
        prints ["<hex of pyiso8583's encoding>", ...]
    python pyiso8583_interop.py SPEC.toml decode   < ["<hex>", ...]
        prints [{"t": "0200", "2": "...", ...}, ...]

Field values in the JSON are what the Rust side holds: text for n/an/ans/z (a track-2 separator
as "="), uppercase hex for b. Needs Python 3.11+ (tomllib) and pyiso8583 4.x.

The TOML spec maps to pyiso8583's spec dict like this:
  * MTI ascii -> data_enc "ascii"; bcd -> data_enc "b" (2 bytes).
  * bitmaps binary -> data_enc "b", max_len 8; hex -> data_enc "ascii", max_len 16.
  * n/z in ascii, an, ans -> data_enc "ascii", max_len in characters.
  * n/z in bcd -> data_enc "b", len_count "nibbles", left_pad "0" (n) or right_pad "F" (z) as
    the TOML's pad says; z's "=" is the nibble D, so "=" <-> "D" is translated here.
  * b in binary -> data_enc "b", max_len in bytes.
  * b in ascii (hex characters) -> data_enc "ascii", max_len 2 x bytes. The TOML's length
    prefix counts bytes (as jPOS's IFA_LLLBINARY does) while pyiso8583 counts characters, and
    pyiso8583 has no setting for that; an ASCII length prefix of such a field is therefore
    written and read through the text codec "mpos_hexlen" registered below, which states half
    the character count (the byte count) in the same number of digits.
  * length_encoding ascii -> len_enc "ascii", len_type 2/3/4; bcd -> len_enc "bcd", len_type 1
    for LL and 2 for LLL/LLLL; binary -> len_enc "b", same len_type as bcd.
"""

import codecs
import json
import sys
import tomllib

import iso8583


def _hexlen_encode(text, errors="strict"):
    count = int(text)
    if count % 2:
        raise ValueError("odd number of hex characters")
    return (f"{count // 2:0{len(text)}d}".encode("ascii"), len(text))


def _hexlen_decode(data, errors="strict"):
    text = bytes(data).decode("ascii")
    return (f"{int(text) * 2:0{len(text)}d}", len(data))


codecs.register(
    lambda name: codecs.CodecInfo(_hexlen_encode, _hexlen_decode, name="mpos_hexlen")
    if name == "mpos_hexlen"
    else None
)


def field_spec(number, field):
    (kind, size), = field["length"].items()
    content, encoding = field["content"], field["encoding"]
    out = {"desc": field["name"], "len_enc": "ascii", "len_type": 0}
    hex_text = content == "b" and encoding == "ascii"
    if kind != "fixed":
        digits = {"llvar": 2, "lllvar": 3, "llllvar": 4}[kind]
        length_encoding = field["length_encoding"]
        if length_encoding == "ascii":
            out["len_enc"] = "mpos_hexlen" if hex_text else "ascii"
            out["len_type"] = digits
        elif hex_text:
            raise SystemExit(f"field {number}: hex b with a {length_encoding} length prefix is not mapped")
        else:
            out["len_enc"] = {"bcd": "bcd", "binary": "b"}[length_encoding]
            out["len_type"] = 1 if digits == 2 else 2
    if encoding == "bcd":
        out["data_enc"] = "b"
        out["len_count"] = "nibbles"
        out["max_len"] = size
        pad = field.get("pad", "right" if content == "z" else "left")
        pad_char = "F" if content == "z" else "0"
        out["left_pad" if pad == "left" else "right_pad"] = pad_char
    elif encoding == "binary":
        out["data_enc"] = "b"
        out["max_len"] = size
    elif hex_text:
        out["data_enc"] = "ascii"
        out["max_len"] = 2 * size
    else:
        out["data_enc"] = "ascii"
        out["max_len"] = size
    return out


def load_spec(path):
    with open(path, "rb") as handle:
        toml = tomllib.load(handle)
    bitmap = (
        {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8}
        if toml["bitmap_encoding"] == "binary"
        else {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 16}
    )
    spec = {
        "h": {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 0},
        "t": {
            "data_enc": "ascii" if toml["mti_encoding"] == "ascii" else "b",
            "len_enc": "ascii",
            "len_type": 0,
            "max_len": 4 if toml["mti_encoding"] == "ascii" else 2,
        },
        "p": dict(bitmap, desc="Bitmap, primary"),
        "1": dict(bitmap, desc="Bitmap, secondary"),
    }
    bcd_z = set()
    for key, field in toml["fields"].items():
        spec[key] = field_spec(int(key), field)
        if field["content"] == "z" and field["encoding"] == "bcd":
            bcd_z.add(key)
    return spec, bcd_z


def main():
    spec, bcd_z = load_spec(sys.argv[1])
    mode = sys.argv[2]
    request = json.load(sys.stdin)
    if mode == "encode":
        out = []
        for message in request:
            doc = {key: (value.replace("=", "D") if key in bcd_z else value) for key, value in message.items()}
            raw, _ = iso8583.encode(doc, spec)
            out.append(bytes(raw).hex().upper())
    elif mode == "decode":
        out = []
        for hex_message in request:
            doc, _ = iso8583.decode(bytes.fromhex(hex_message), spec)
            out.append(
                {
                    key: (value.replace("D", "=") if key in bcd_z else value)
                    for key, value in doc.items()
                    if key not in ("h", "p", "1")
                }
            )
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
