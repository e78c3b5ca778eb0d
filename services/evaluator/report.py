"""A self-contained HTML report (inline SVG, no plotting library): the metrics table and per-frame plots of sync
offset/confidence over time, per-frame CSIM, mouth opening and LMD."""
from __future__ import annotations

import html
import json


def _svg_line(series: list, title: str, width: int = 720, height: int = 160, x_scale: float = 1.0,
              x_label: str = "frame") -> str:
    pts = [(i * x_scale, v) for i, v in enumerate(series) if v is not None]
    if not pts:
        return f"<p>{html.escape(title)}: no data</p>"
    lo, hi = min(v for _, v in pts), max(v for _, v in pts)
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    xmax = max(1e-9, (len(series) - 1) * x_scale)
    pad = 30
    coords = " ".join(f"{pad + x / xmax * (width - 2 * pad):.1f},{height - pad - (v - lo) / (hi - lo) * (height - 2 * pad):.1f}"
                      for x, v in pts)
    return (f'<figure><figcaption>{html.escape(title)} (min {lo:.3g}, max {hi:.3g}; x: {x_label})</figcaption>'
            f'<svg width="{width}" height="{height}" style="background:#fafafa;border:1px solid #ddd">'
            f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{coords}"/></svg></figure>')


def _fmt(v) -> str:
    return "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else html.escape(str(v)))


def evaluation_html(result: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(m.get('value'))}</td><td>{_fmt(m.get('better'))}</td>"
                   f"<td>{html.escape(m.get('unavailable', '') or m.get('band', '') or m.get('note', ''))}</td></tr>"
                   for k, m in result["metrics"].items())
    pf = result["per_frame"]
    windows = pf.get("sync_windows") or []
    plots = [
        _svg_line([w["offset"] for w in windows], "weight-free sync offset over time (frames)", x_label="window"),
        _svg_line([w["confidence"] for w in windows], "weight-free sync confidence over time", x_label="window"),
        _svg_line(pf.get("csim") or [], "CSIM per frame"),
        _svg_line(pf.get("mouth_opening") or [], "mouth opening per frame (inner-lip gap / width)"),
        _svg_line(pf.get("lmd") or [], "LMD per frame"),
    ]
    if pf.get("syncnet_conf"):
        plots.insert(0, _svg_line(pf["syncnet_conf"], "SyncNet confidence per frame"))
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.get("notes", []))
    return ("<!doctype html><meta charset=utf-8><title>lip-sync evaluation</title>"
            "<style>body{font-family:sans-serif;max-width:900px;margin:2em auto}td,th{padding:2px 8px;"
            "border-bottom:1px solid #eee;text-align:left}</style>"
            f"<h1>Lip-sync evaluation</h1><pre>{html.escape(json.dumps(result['inputs'], indent=1))}</pre>"
            f"<table><tr><th>metric</th><th>value</th><th>better</th><th>note</th></tr>{rows}</table>"
            f"<ul>{notes}</ul>" + "".join(plots))


def comparison_html(comparison: dict) -> str:
    names = comparison["models"]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = ""
    for metric, e in comparison["metrics"].items():
        cells = "".join(f"<td{' style=font-weight:bold' if e.get('winner') == n else ''}>{_fmt(e['values'].get(n))}</td>"
                        for n in names)
        rows += f"<tr><td>{html.escape(metric)}</td>{cells}<td>{_fmt(e.get('better'))}</td><td>{_fmt(e.get('winner'))}</td></tr>"
    parts = [evaluation_html(comparison["results"][n]).split("<h1>", 1)[1] for n in names]
    return ("<!doctype html><meta charset=utf-8><title>lip-sync comparison</title>"
            "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}td,th{padding:2px 8px;"
            "border-bottom:1px solid #eee}</style><h1>Model comparison</h1>"
            f"<table><tr><th>metric</th>{head}<th>better</th><th>winner</th></tr>{rows}</table>"
            + "".join(f"<h2>{html.escape(n)}</h2><h1>" + p for n, p in zip(names, parts)))
