#!/usr/bin/python3
"""Checks a `report --html` page and its Chromium screenshot (tests/it/report_html.rs).

usage: check_report_page.py PAGE.html SHOT.png
Prints one JSON object: html5lib's parse errors (strict HTML5 parser), and of
the PNG (decoded here with zlib; no imaging library): width, height, the
share of pixels that differ from the background (the top-left pixel), and
how many of the rightmost 40 columns hold anything but background.
"""
import json
import struct
import sys
import zlib

import html5lib


def parse_errors(path):
    with open(path, "rb") as f:
        data = f.read()
    parser = html5lib.HTMLParser(strict=False)
    parser.parse(data)
    return [f"line {pos[0]} col {pos[1]}: {err} {vars_}" for pos, err, vars_ in parser.errors]


def decode_png(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif f == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 255
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pr) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, bpp, rows


def main():
    page, shot = sys.argv[1], sys.argv[2]
    w, h, bpp, rows = decode_png(shot)
    bg = rows[0][:3]
    busy = 0
    right_busy = set()
    for row in rows:
        for x in range(w):
            if row[x * bpp:x * bpp + 3] != bg:
                busy += 1
                if x >= w - 40:
                    right_busy.add(x)
    print(json.dumps({
        "parse_errors": parse_errors(page),
        "width": w,
        "height": h,
        "background": list(bg),
        "busy_fraction": busy / (w * h),
        "right_columns_busy": len(right_busy),
    }))


main()
