"""The evaluation report: the metrics table and matplotlib plots (per-frame sync offset/confidence over time,
CSIM, mouth opening, LMD; for a comparison, a bar chart per metric across models), as one self-contained HTML page
(the plots embedded as PNG) or as PNG files in a folder."""
from __future__ import annotations

import base64
import html
import io
import json
import os
import re

import matplotlib

matplotlib.use("Agg")              # files only, no display
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _line(series: list, title: str, x_label: str) -> bytes | None:
    pts = [(i, v) for i, v in enumerate(series) if v is not None]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(7.2, 1.9))
    ax.plot([x for x, _ in pts], [v for _, v in pts], lw=1.2, color="#1f77b4")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(x_label, fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def evaluation_plots(result: dict) -> dict[str, bytes]:
    """name -> PNG of each per-frame series the result has (series without data are left out)."""
    pf = result["per_frame"]
    windows = pf.get("sync_windows") or []
    series = [
        ("syncnet_confidence", pf.get("syncnet_conf") or [], "SyncNet confidence per frame", "frame"),
        ("sync_offset", [w["offset"] for w in windows], "weight-free sync offset over time (frames)", "window"),
        ("sync_confidence", [w["confidence"] for w in windows], "weight-free sync confidence over time", "window"),
        ("csim", pf.get("csim") or [], "CSIM per frame", "frame"),
        ("mouth_opening", pf.get("mouth_opening") or [], "mouth opening per frame (inner-lip gap / width)", "frame"),
        ("lmd", pf.get("lmd") or [], "LMD per frame", "frame"),
    ]
    plots = {}
    for name, values, title, x_label in series:
        png = _line(values, title, x_label)
        if png is not None:
            plots[name] = png
    return plots


def comparison_plots(comparison: dict) -> dict[str, bytes]:
    """One bar chart per metric that has a value for at least one model (missing values are left blank)."""
    names = comparison["models"]
    plots = {}
    for metric, e in comparison["metrics"].items():
        values = [e["values"].get(n) for n in names]
        if all(v is None for v in values):
            continue
        fig, ax = plt.subplots(figsize=(max(3.0, 1.2 * len(names)), 2.2))
        colors = ["#2ca02c" if e.get("winner") == n else "#1f77b4" for n in names]
        ax.bar(names, [0 if v is None else v for v in values], color=colors)
        better = f" ({e['better']} is better)" if e.get("better") else ""
        ax.set_title(f"{metric}{better}", fontsize=10)
        ax.tick_params(labelsize=8)
        ax.grid(axis="y", alpha=0.3)
        plots[f"compare_{metric}"] = _png(fig)
    return plots


def write_plots(plots: dict[str, bytes], folder: str) -> list[str]:
    """Each plot as folder/<name>.png; returns the paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for name, png in plots.items():
        path = os.path.join(folder, re.sub(r"[^\w.-]", "_", name) + ".png")
        with open(path, "wb") as f:
            f.write(png)
        paths.append(path)
    return paths


def _img(name: str, png: bytes) -> str:
    return (f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,'
            f'{base64.b64encode(png).decode()}"></figure>')


def _fmt(v) -> str:
    return "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else html.escape(str(v)))


_STYLE = ("<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}td,th{padding:2px 8px;"
          "border-bottom:1px solid #eee;text-align:left}img{max-width:100%}</style>")


def _evaluation_body(result: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(m.get('value'))}</td><td>{_fmt(m.get('better'))}</td>"
                   f"<td>{html.escape(m.get('unavailable', '') or m.get('band', '') or m.get('note', ''))}</td></tr>"
                   for k, m in result["metrics"].items())
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.get("notes", []))
    plots = "".join(_img(n, p) for n, p in evaluation_plots(result).items())
    return (f"<pre>{html.escape(json.dumps(result['inputs'], indent=1))}</pre>"
            f"<table><tr><th>metric</th><th>value</th><th>better</th><th>note</th></tr>{rows}</table>"
            f"<ul>{notes}</ul>{plots}")


def evaluation_html(result: dict) -> str:
    return ("<!doctype html><meta charset=utf-8><title>lip-sync evaluation</title>" + _STYLE
            + "<h1>Lip-sync evaluation</h1>" + _evaluation_body(result))


def comparison_html(comparison: dict) -> str:
    names = comparison["models"]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = ""
    for metric, e in comparison["metrics"].items():
        cells = "".join(f"<td{' style=font-weight:bold' if e.get('winner') == n else ''}>{_fmt(e['values'].get(n))}</td>"
                        for n in names)
        rows += f"<tr><td>{html.escape(metric)}</td>{cells}<td>{_fmt(e.get('better'))}</td><td>{_fmt(e.get('winner'))}</td></tr>"
    bars = "".join(_img(n, p) for n, p in comparison_plots(comparison).items())
    return ("<!doctype html><meta charset=utf-8><title>lip-sync comparison</title>" + _STYLE
            + "<h1>Model comparison</h1>"
            f"<table><tr><th>metric</th>{head}<th>better</th><th>winner</th></tr>{rows}</table>{bars}"
            + "".join(f"<h2>{html.escape(n)}</h2>" + _evaluation_body(comparison["results"][n]) for n in names))
