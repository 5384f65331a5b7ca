"""Colours of the tuner's plots, readable on napari's dark and light themes."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass


@dataclass(frozen=True)
class Palette:
    background: str
    foreground: str
    dark: bool

    @property
    def background_rgb(self) -> tuple[int, int, int]:
        return hex_to_rgb(self.background)

    @property
    def raw(self) -> tuple[int, int, int, int]:
        """The raw trace: a neutral grey that recedes behind the coloured fit."""
        return (150, 150, 150, 255) if self.dark else (120, 120, 120, 255)

    @property
    def muted(self) -> tuple[int, int, int, int]:
        return (110, 110, 110, 255) if self.dark else (170, 170, 170, 255)

    @property
    def muted_hex(self) -> str:
        return "#a0a4ab" if self.dark else "#5a5e66"

    @property
    def truth(self) -> tuple[int, int, int, int]:
        return (255, 255, 255, 230) if self.dark else (0, 0, 0, 230)


def _luma(rgb) -> float:
    r, g, b = (float(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def palette_of(viewer) -> Palette:
    """The palette of the viewer's current theme (a dark one if unknown)."""
    try:
        from napari.utils.theme import get_theme

        theme = get_theme(viewer.theme)
        bg, fg = str(theme.background.as_hex()), str(theme.text.as_hex())
    except Exception:  # noqa: BLE001 - fall back to napari's dark theme
        bg, fg = "#262930", "#f0f1f2"
    rgb = tuple(int(bg.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4))
    return Palette(bg, fg, _luma(rgb) < 0.5)


# Hues (degrees) of the selected ROIs' colours, in the order they are handed
# out: each new one far from those before it, so that the first four are
# pairwise > 75 and the first eight > 35 apart in CIELAB once made readable on
# either theme (napari's own label colours are random and can nearly match).
_SELECTION_HUES = (30, 200, 110, 320, 55, 250, 170, 0, 285, 140)
# The next ten (rows 11-20, MAX_ROIS): the hues turned by 15 degrees, less
# saturated, lighter on a dark theme and darker on a light one.  All 20 are
# > 13 apart in CIELAB on either theme (min dE 15.4 dark, 13.6 light).
_TIER_L = {True: (0.65, 0.72), False: (0.40, 0.27)}
_TIER_S = (0.8, 0.5)
_TIER_DH = 15


def selection_colors(n: int, pal: Palette) -> list:
    """``n`` distinct colours for the selected ROIs' rows and outlines,
    readable on the theme of ``pal``: ten hues, then the ten again lighter (dark
    theme) or darker (light theme); they repeat only after the twentieth.
    Colours alone cannot tell 20 rows apart for every reader (colour-blind ones
    least): the ROI id in the row header and beside the outline is the key."""
    out = []
    m = len(_SELECTION_HUES)
    for k in range(n):
        tier = (k // m) % 2
        h = ((_SELECTION_HUES[k % m] + tier * _TIER_DH) % 360) / 360.0
        rgb = colorsys.hls_to_rgb(h, _TIER_L[pal.dark][tier], _TIER_S[tier])
        out.append(readable((*rgb, 1.0), pal.dark, pal.background_rgb))
    return out


def readable(rgba, dark: bool, background=None, min_contrast: float = 3.5) -> tuple:
    """An ROI colour moved into a lightness band that stands out from the
    background (light on dark themes, dark on light ones), hue kept; then
    darkened or lightened until its contrast with ``background`` (0-255 rgb)
    reaches ``min_contrast``."""
    r, g, b = (float(c) for c in tuple(rgba)[:3])
    h, l, s = colorsys.rgb_to_hls(r, g, b)
    s = max(s, 0.55)
    l = min(max(l, 0.58), 0.78) if dark else min(max(l, 0.28), 0.45)
    bg = background if background is not None else ((38, 41, 48) if dark else (240, 240, 240))
    while True:
        rgb = tuple(int(round(v * 255)) for v in colorsys.hls_to_rgb(h, l, s))
        if contrast(rgb, bg) >= min_contrast or not 0.02 < l < 0.98:
            return (*rgb, 255)
        l += 0.02 if dark else -0.02


def contrast(c1, c2) -> float:
    """WCAG contrast ratio of two colours given as 0-255 (r, g, b[, a])."""
    def lum(c):
        out = []
        for v in c[:3]:
            v = v / 255.0
            out.append(v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4)
        return 0.2126 * out[0] + 0.7152 * out[1] + 0.0722 * out[2]

    a, b = sorted((lum(c1), lum(c2)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def hex_to_rgb(h: str) -> tuple[int, int, int]:
    h = h.lstrip("#")
    return tuple(int(h[i:i + 2], 16) for i in (0, 2, 4))
