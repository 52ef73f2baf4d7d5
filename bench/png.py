"""A tiny PNG bar chart without dependencies: an RGB canvas, a 5×7 pixel font, zlib and struct.

    chart = BarChart("TITLE")
    chart.panel("ROUND TRIP (MS)", [Group("REF !PING", GREY, [("P50", 68.0), ("P95", 79.0)])])
    chart.save(Path("out.png"))

Each panel has its own linear scale starting at zero; every bar is labelled with its value.
Text is drawn in capitals (the font has no lower case).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

Color = tuple[int, int, int]

WHITE: Color = (255, 255, 255)
BLACK: Color = (30, 30, 30)
AXIS: Color = (150, 150, 150)
GREY: Color = (120, 120, 120)
BLUE: Color = (40, 100, 190)

# 5×7 glyphs, one int per row, bit 4 the leftmost pixel (the classic HD44780 shapes).
FONT: dict[str, tuple[int, ...]] = {
    "0": (0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E),
    "1": (0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E),
    "2": (0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F),
    "3": (0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E),
    "4": (0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02),
    "5": (0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E),
    "6": (0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E),
    "7": (0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08),
    "8": (0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E),
    "9": (0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C),
    "A": (0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11),
    "B": (0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E),
    "C": (0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E),
    "D": (0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C),
    "E": (0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F),
    "F": (0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10),
    "G": (0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F),
    "H": (0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11),
    "I": (0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E),
    "J": (0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C),
    "K": (0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11),
    "L": (0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F),
    "M": (0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11),
    "N": (0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11),
    "O": (0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E),
    "P": (0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10),
    "Q": (0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D),
    "R": (0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11),
    "S": (0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E),
    "T": (0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04),
    "U": (0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E),
    "V": (0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04),
    "W": (0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A),
    "X": (0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11),
    "Y": (0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04),
    "Z": (0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F),
    " ": (0, 0, 0, 0, 0, 0, 0),
    ".": (0, 0, 0, 0, 0, 0x0C, 0x0C),
    ",": (0, 0, 0, 0, 0x0C, 0x04, 0x08),
    "-": (0, 0, 0, 0x1F, 0, 0, 0),
    "_": (0, 0, 0, 0, 0, 0, 0x1F),
    "/": (0, 0x01, 0x02, 0x04, 0x08, 0x10, 0),
    ":": (0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0),
    "(": (0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02),
    ")": (0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08),
    "%": (0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03),
    "=": (0, 0, 0x1F, 0, 0x1F, 0, 0),
    "<": (0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02),
    ">": (0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08),
    "!": (0x04, 0x04, 0x04, 0x04, 0x04, 0, 0x04),
    "?": (0x0E, 0x11, 0x01, 0x02, 0x04, 0, 0x04),
}
GLYPH_W, GLYPH_H = 5, 7


class Canvas:
    def __init__(self, width: int, height: int, background: Color = WHITE) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(background) * (width * height))

    def rect(self, x: int, y: int, w: int, h: int, color: Color) -> None:
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(self.width, x + w), min(self.height, y + h)
        if x1 <= x0 or y1 <= y0:
            return
        row = bytes(color) * (x1 - x0)
        for yy in range(y0, y1):
            start = (yy * self.width + x0) * 3
            self.pixels[start:start + len(row)] = row

    def text_width(self, text: str, scale: int = 1) -> int:
        return max(0, len(text) * (GLYPH_W + 1) * scale - scale)

    def text(self, x: int, y: int, text: str, color: Color = BLACK, scale: int = 1) -> None:
        for index, char in enumerate(text.upper()):
            glyph = FONT.get(char, FONT["?"])
            left = x + index * (GLYPH_W + 1) * scale
            for row, bits in enumerate(glyph):
                for col in range(GLYPH_W):
                    if bits & (1 << (GLYPH_W - 1 - col)):
                        self.rect(left + col * scale, y + row * scale, scale, scale, color)

    def centered_text(self, cx: int, y: int, text: str, color: Color = BLACK,
                      scale: int = 1) -> None:
        self.text(cx - self.text_width(text, scale) // 2, y, text, color, scale)

    def png(self) -> bytes:
        raw = b"".join(
            b"\x00" + bytes(self.pixels[y * self.width * 3:(y + 1) * self.width * 3])
            for y in range(self.height)
        )

        def chunk(kind: bytes, data: bytes) -> bytes:
            body = kind + data
            return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def lighter(color: Color, amount: float = 0.55) -> Color:
    r, g, b = (int(c + (255 - c) * amount) for c in color)
    return (r, g, b)


@dataclass
class Group:
    """Bars side by side under one label, e.g. a bot's p50 and p95; None draws 'N/A'."""

    label: str
    color: Color
    bars: list[tuple[str, float | None]]


@dataclass
class Panel:
    title: str
    groups: list[Group]
    decimals: int = 0


class BarChart:
    def __init__(self, title: str, panel_width: int = 400, height: int = 380) -> None:
        self.title = title
        self.panel_width = panel_width
        self.height = height
        self.panels: list[Panel] = []

    def panel(self, title: str, groups: list[Group], decimals: int = 0) -> None:
        self.panels.append(Panel(title, groups, decimals))

    def render(self) -> Canvas:
        width = max(1, len(self.panels)) * self.panel_width
        canvas = Canvas(width, self.height)
        canvas.centered_text(width // 2, 12, self.title, scale=2)
        for index, panel in enumerate(self.panels):
            self._draw_panel(canvas, panel, index * self.panel_width)
        return canvas

    def _draw_panel(self, canvas: Canvas, panel: Panel, left: int) -> None:
        top, bottom = 70, self.height - 60
        inner_left, inner_right = left + 30, left + self.panel_width - 20
        canvas.centered_text((inner_left + inner_right) // 2, 44, panel.title, scale=1)
        canvas.rect(inner_left, bottom, inner_right - inner_left, 1, AXIS)
        values = [v for g in panel.groups for _, v in g.bars if v is not None]
        peak = max(values, default=0.0) or 1.0
        slot = (inner_right - inner_left) / max(1, len(panel.groups))
        for g_index, group in enumerate(panel.groups):
            g_left = inner_left + g_index * slot
            bar_w = int(min(44, (slot - 16) / max(1, len(group.bars))))
            bars_w = bar_w * len(group.bars)
            x = int(g_left + (slot - bars_w) / 2)
            for b_index, (label, value) in enumerate(group.bars):
                color = group.color if b_index == 0 else lighter(group.color)
                bx = x + b_index * bar_w
                if value is None:
                    canvas.centered_text(bx + bar_w // 2, bottom - 12, "N/A", AXIS)
                else:
                    h = max(1, int((bottom - top - 14) * value / peak))
                    canvas.rect(bx + 2, bottom - h, bar_w - 4, h, color)
                    canvas.centered_text(bx + bar_w // 2, bottom - h - 11,
                                         f"{value:.{panel.decimals}f}")
                canvas.centered_text(bx + bar_w // 2, bottom + 6, label, AXIS)
            canvas.centered_text(int(g_left + slot / 2), bottom + 22, group.label, group.color)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.render().png())
