"""One direction's evaluation as table cells, for the terminal table of `gantrans eval`, its
`--html` page and the run report (which reads saved evaluations back as JSON: no torch here)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def direction_rows(report: Mapping[str, Any]) -> dict[str, str]:
    """Metric -> text of one direction (a `DirectionReport`'s fields, or their JSON), '-' where a
    metric does not apply (None) or a saved one is not a number (a damaged file)."""

    def number(name: str, pattern: str) -> str:
        value = report.get(name)
        return pattern.format(value) if _is_number(value) else "-"

    kid, kid_std = report.get("kid"), report.get("kid_std")
    rows = {
        "images": str(report.get("images", "?")),
        "FID ↓": number("fid", "{:.2f}"),
        "KID × 1000 ↓": f"{1000 * kid:.2f} ± {1000 * (kid_std if _is_number(kid_std) else 0):.2f}" if _is_number(kid) else "-",
        "LPIPS input → output": number("content_lpips", "{:.3f}"),
        "diversity (real)": f"{number('diversity', '{:.3f}')} ({number('real_diversity', '{:.3f}')})",
        "copied from training": number("copied", "{:.0%}"),
    }
    if report.get("domain_accuracy") is not None:
        rows["domain accuracy ↑"] = number("domain_accuracy", "{:.0%}")
    rows["cycle L1 ↓"] = number("cycle_l1", "{:.4f}")
    rows["cycle PSNR ↑"] = number("cycle_psnr", "{:.2f} dB")
    gains = (report.get("hidden_information"), report.get("hidden_information_jpeg"))
    rows["cycle error gain: noise, JPEG"] = ", ".join(f"{g:.2f}" if _is_number(g) else "-" for g in gains) if _is_number(gains[0]) else "-"
    if report.get("reference_l1") is not None:
        rows["reference L1 ↓"] = number("reference_l1", "{:.4f}")
        rows["reference PSNR ↑"] = number("reference_psnr", "{:.2f} dB")
        rows["reference SSIM ↑"] = number("reference_ssim", "{:.3f}")
    return rows


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def metric_table(columns: Mapping[str, Mapping[str, str]]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of metrics as rows and one column per direction: every column's metrics, in order."""
    metrics = list(dict.fromkeys(metric for cells in columns.values() for metric in cells))
    return ["", *columns], [[metric, *(cells.get(metric, "-") for cells in columns.values())] for metric in metrics]
