"""`evaluate` and `compare_baselines`: the evaluation commands, run in-process (no server needed).

    evaluate --source_video S --generated_video G --audio A --output_json R.json [--report R.html]
    compare_baselines --source_video S --audio A --model1_output M1 --model2_output M2 \
        [--model3_output M3 ...] --model1_name X --model2_name Y [...] --output_json C.json [--report C.html]

Weights: MODELS_DIR (syncnet/syncnet_v2.model, arcface/*.onnx) and ARCFACE_MODEL, as the evaluator service.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

from services.evaluator.config import EvaluatorConfig


def _evaluator():
    from services.evaluator.evaluate import Evaluator
    return Evaluator(EvaluatorConfig.from_env().settings())


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def table(result: dict) -> str:
    lines = [f"{'metric':<22} {'value':>12}  better       note"]
    for name, m in result["metrics"].items():
        note = m.get("unavailable") or m.get("band") or ""
        lines.append(f"{name:<22} {_fmt(m.get('value')):>12}  {m.get('better') or '':<12} {note}")
    return "\n".join(lines)


def comparison_table(c: dict) -> str:
    names = c["models"]
    lines = [f"{'metric':<22} " + " ".join(f"{n[:14]:>14}" for n in names) + "  better        winner"]
    for metric, e in c["metrics"].items():
        vals = " ".join(f"{_fmt(e['values'].get(n)):>14}" for n in names)
        lines.append(f"{metric:<22} {vals}  {e.get('better') or '':<13} {e.get('winner') or e.get('unavailable', '')}")
    return "\n".join(lines)


def _write(path: str, data: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


def _check_files(*paths: str) -> None:
    for p in paths:
        if not os.path.isfile(p):
            raise SystemExit(f"error: {p} does not exist")


def evaluate_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="evaluate", description="Score one generated lip-sync video.")
    ap.add_argument("--source_video", required=True)
    ap.add_argument("--generated_video", required=True)
    ap.add_argument("--audio", required=True)
    ap.add_argument("--output_json", required=True)
    ap.add_argument("--report", help="also write an HTML report with per-frame plots")
    ap.add_argument("--plots", metavar="DIR", help="also write each plot as a PNG into DIR")
    a = ap.parse_args(argv)
    _check_files(a.source_video, a.generated_video, a.audio)
    from services.evaluator import report
    result = _evaluator().evaluate(a.source_video, a.generated_video, a.audio)
    _write(a.output_json, result)
    if a.report:
        with open(a.report, "w") as f:
            f.write(report.evaluation_html(result))
    if a.plots:
        report.write_plots(report.evaluation_plots(result), a.plots)
    print(table(result))
    print(f"written: {a.output_json}" + (f", {a.report}" if a.report else "") + (f", {a.plots}/" if a.plots else ""))
    return 0


def compare_main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="compare_baselines",
                                 description="Score several models' outputs for the same source and audio.")
    ap.add_argument("--source_video", required=True)
    ap.add_argument("--audio", required=True)
    ap.add_argument("--output_json", required=True)
    ap.add_argument("--report", help="also write an HTML report")
    ap.add_argument("--plots", metavar="DIR", help="also write each plot as a PNG into DIR (a bar chart per "
                    "metric across the models, and each model's per-frame plots in DIR/<model>/)")
    numbers = sorted({int(n) for n in re.findall(r"--model(\d+)_(?:output|name)\b", " ".join(argv))})
    for k in numbers:
        ap.add_argument(f"--model{k}_output", required=True)
        ap.add_argument(f"--model{k}_name", default=f"model{k}")
    a = ap.parse_args(argv)
    if len(numbers) < 2:
        ap.error("give at least two models: --model1_output ... --model2_output ...")
    outputs = {getattr(a, f"model{k}_name"): getattr(a, f"model{k}_output") for k in numbers}
    if len(outputs) != len(numbers):
        ap.error("model names must be different")
    _check_files(a.source_video, a.audio, *outputs.values())
    from services.evaluator import report
    from services.evaluator.evaluate import compare
    ev = _evaluator()
    result = compare({name: ev.evaluate(a.source_video, path, a.audio) for name, path in outputs.items()})
    _write(a.output_json, result)
    if a.report:
        with open(a.report, "w") as f:
            f.write(report.comparison_html(result))
    if a.plots:
        report.write_plots(report.comparison_plots(result), a.plots)
        for name, r in result["results"].items():
            report.write_plots(report.evaluation_plots(r), os.path.join(a.plots, name))
    print(comparison_table(result))
    print(f"written: {a.output_json}" + (f", {a.report}" if a.report else "") + (f", {a.plots}/" if a.plots else ""))
    return 0


if __name__ == "__main__":      # python -m services.evaluator.cli [compare] ...: where no scripts are installed
    if sys.argv[1:2] == ["compare"]:
        sys.exit(compare_main(sys.argv[2:]))
    sys.exit(evaluate_main())
