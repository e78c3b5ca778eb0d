"""Issues 16's and 18's GPU targets checked against one benchmark run's rows (`tools/bench_e2e_gpu.py`,
`tools/bench_live.py`): for each target, every level that bears on it, how many meet it, and the verdict. Printed
at the end of those benchmarks and written to $OUT/targets.md, so a re-run says at once where the box stands.

Only levels run the way the target is stated count: a burst (all requests at once, one round), a cached source, the
musetalk engine's 16 live sessions alone. The verdict counts the levels of the stack as started (the defaults,
unless the benchmark's environment set others); a row whose run names a setting changed by a restart
(", KEY=VALUE") is a level of an A/B: it is listed under its setting and not counted.

Issue 16 states its 600 frames/s as ">= 92% of the networks' batch-64 figure" (650 on the machine it was measured
on), and H200 boxes differ by a few per cent at their power cap. With the networks' rows of the same machine
(`tools/bench_gpu.py`'s gpu_bench.json, e.g. `E2E_NETWORKS=` in the e2e bench), the aggregate is also checked
against 92% of that machine's own batch-64 figure (the fastest of its batch-64 engine rows).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

GB = 1e9        # issue 16's "8 GB" of GPU memory, in bytes


@dataclass(frozen=True)
class Target:
    name: str
    applies: Callable[[dict], bool]     # does this row measure the target?
    value: Callable[[dict], float | None]
    bound: float
    at_most: bool                       # True: value <= bound; False: value >= bound


def _burst(n: int) -> Callable[[dict], bool]:
    return lambda r: r.get("concurrent") == n and r.get("rounds", 1) == 1 and not r.get("stagger_s")


def _live_alone(r: dict) -> bool:
    return r.get("sessions") == 16 and not r["run"].split(",")[0].endswith("offline streams")


def _gpu_bytes(r: dict) -> float | None:
    mib = r.get("generator_mib")
    return None if mib is None else mib * 2**20


TARGETS = (
    Target("aggregate >= 600 frames/s, 8 at once", _burst(8), lambda r: r.get("aggregate_fps"), 600, False),
    Target("aggregate >= 600 frames/s, 16 at once", _burst(16), lambda r: r.get("aggregate_fps"), 600, False),
    Target("first MP4 chunk p95 <= 300 ms, 8 at once", _burst(8), lambda r: r.get("first_chunk_ms_p95"), 300, True),
    Target("first MP4 chunk p95 <= 500 ms, 16 at once", _burst(16), lambda r: r.get("first_chunk_ms_p95"), 500, True),
    Target("one request (cached source) >= 400 frames/s", lambda r: r["run"].startswith("cached source"),
           lambda r: r.get("fps"), 400, False),
    Target("GPU memory of the generator <= 8 GB", lambda r: r["run"].startswith("GPU memory"), _gpu_bytes, 8 * GB,
           True),
    Target("16 live sessions: no late frame", _live_alone, lambda r: r.get("late"), 0, True),
    Target("16 live sessions: latency p95 <= 230 ms (150 + 2 frames of lookahead)", _live_alone,
           lambda r: r.get("latency_ms_p95"), 230, True),
)

NETWORKS_SHARE = 0.92


def networks_fps(rows: list[dict]) -> float | None:
    """The networks' batch-64 frames/s among tools/bench_gpu.py's rows (the fastest engine setting), or None."""
    fps = [r["fps"] for r in rows if r.get("batch") == 64 and "fps" in r and "setting" in r
           and not r["setting"].startswith("eager")]
    return max(fps) if fps else None


def against_networks(fps: float) -> tuple[Target, ...]:
    """The aggregate targets as issue 16 derives them: 92% of this machine's networks at batch 64."""
    bound = round(NETWORKS_SHARE * fps, 1)
    return tuple(Target(f"aggregate >= {NETWORKS_SHARE:.0%} of this machine's networks at batch 64 ({fps:g} -> "
                        f"{bound:g} frames/s), {n} at once", _burst(n), lambda r: r.get("aggregate_fps"), bound, False)
                 for n in (8, 16))


_SETTING = re.compile(r", ([A-Z][A-Z0-9_]*=[^,]*)$")


def setting_of(run: str) -> str:
    """The changed setting a row's run names at its end (", KEY=VALUE"), or "" for the defaults."""
    m = _SETTING.search(run)
    return m.group(1) if m else ""


def check(rows: list[dict], targets=None) -> list[dict]:
    """One dict per target: its levels (value, met) at the defaults and under each changed setting, and
    `verdict`: "met" (every level of the stack as started meets it), "not met (k of n levels)", or "not measured".
    targets: TARGETS, and the networks' share when the rows hold the networks' figure (networks_fps)."""
    if targets is None:
        fps = networks_fps(rows)
        targets = TARGETS[:2] + (against_networks(fps) if fps else ()) + TARGETS[2:]
    out = []
    for t in targets:
        levels: dict[str, list[tuple[float, bool]]] = {}
        for r in rows:
            if "run" not in r or not t.applies(r):
                continue
            v = t.value(r)
            if v is None:
                continue
            met = v <= t.bound if t.at_most else v >= t.bound
            levels.setdefault(setting_of(r["run"]), []).append((v, met))
        base = levels.get("", [])
        ok = sum(m for _, m in base)
        verdict = ("not measured" if not base else "met" if ok == len(base)
                   else f"not met ({ok} of {len(base)} levels)")
        out.append({"target": t.name, "verdict": verdict, "levels": levels})
    return out


def _show(t_name: str, v: float) -> str:
    if "GPU memory" in t_name:
        return f"{v / 2**20:.0f} MiB"
    return f"{v:g}"


def markdown(results: list[dict]) -> str:
    lines = ["| target | levels of the stack as started | verdict | levels after a restart with a setting changed |",
             "|---|---|---|---|"]
    for res in results:
        name, levels = res["target"], res["levels"]
        base = ", ".join(_show(name, v) + ("" if met else " (x)") for v, met in levels.get("", [])) or "-"
        other = "; ".join(f"{k}: " + ", ".join(_show(name, v) + ("" if met else " (x)") for v, met in vals)
                          for k, vals in levels.items() if k) or "-"
        lines.append(f"| {name} | {base} | {res['verdict']} | {other} |")
    return "\n".join(lines) + "\n\n(x): a level that misses the target.\n"


def load(paths: list[str]) -> list[dict]:
    """Rows from benchmark output files: a JSON list ($OUT/e2e_gpu.json, live.json), tools/bench_gpu.py's
    gpu_bench.json (an object with its rows) or a log of JSON lines."""
    import json

    rows: list[dict] = []
    for path in paths:
        with open(path) as f:
            text = f.read()
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:            # a log: JSON lines among others
            whole = None
        if isinstance(whole, list):
            rows += whole
        elif isinstance(whole, dict) and "rows" in whole:
            rows += whole["rows"]
        else:
            rows += [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return rows


def main(argv: list[str]) -> int:
    """`python -m tools.targets FILE...`: the targets against an earlier run's rows (with gpu_bench.json of the same
    machine: also against its networks)."""
    if not argv:
        print("usage: python -m tools.targets e2e_gpu.json|bench_e2e_gpu.log [gpu_bench.json] [...]")
        return 2
    print(markdown(check(load(argv))), end="")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
