"""Evaluator gRPC edge: receive the files, run the evaluation in a worker thread, return the scores."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import tempfile
from functools import partial

import grpc

from lipsync.v1 import common_pb2, evaluator_pb2, evaluator_pb2_grpc
from lipsync_common.formats import media
from lipsync_common.edge import calls
from lipsync_common.edge import server as boot
from lipsync_common.edge.auth import internal_interceptors
from lipsync_common.formats.chunks import ChunkError, ChunkWriter
from services.evaluator import report
from services.evaluator.config import EvaluatorConfig

log = logging.getLogger("evaluator")
MODEL_ROLE = re.compile(r"model/([A-Za-z0-9_.-]{1,64})$")


def metrics_pb(result: dict) -> list[common_pb2.Metric]:
    out = []
    for name, m in result["metrics"].items():
        msg = common_pb2.Metric(name=name, better=m.get("better") or "", unavailable=m.get("unavailable", ""),
                                note=m.get("band") or m.get("note") or "")
        if m.get("value") is not None:
            msg.value = float(m["value"])
        out.append(msg)
    return out


def comparison_pb(c: dict, html: bytes) -> evaluator_pb2.CompareResult:
    res = evaluator_pb2.CompareResult(json=json.dumps(c), report_html=html)
    key = "improvement_vs_" + c["baseline"]
    for name, e in c["metrics"].items():
        mc = res.metrics.add(name=name, better=e.get("better") or "", winner=e.get("winner", ""),
                             unavailable=e.get("unavailable", ""))
        for model in c["models"]:
            mv = mc.values.add(model=model)
            if e["values"].get(model) is not None:
                mv.value = float(e["values"][model])
            imp = e.get(key, {}).get(model)
            if imp is not None:
                mv.improvement = float(imp)
    return res


class EvaluatorServicer(evaluator_pb2_grpc.EvaluatorServicer):
    def __init__(self, cfg: EvaluatorConfig):
        self.cfg = cfg
        self.evaluator = None
        self.busy = asyncio.Semaphore(1)     # an evaluation uses every core: one at a time, others wait

    def warmup(self) -> None:
        from services.evaluator.evaluate import Evaluator
        self.evaluator = Evaluator(self.cfg.settings())
        boot.log_event(log, "weights", **{k: v for k, v in self.evaluator.weights().items()})

    async def _receive(self, request_iterator, fail, tmp: str, compare: bool):
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("payload") != "config":
            await fail(grpc.StatusCode.INVALID_ARGUMENT, "the first message must carry the config")
        writers: dict[str, ChunkWriter] = {}
        files: dict = {}
        total = 0
        async for req in request_iterator:
            if req.WhichOneof("payload") != "file":
                await fail(grpc.StatusCode.INVALID_ARGUMENT, "the config may be sent only once, first")
            role = req.file.role
            model = MODEL_ROLE.match(role)
            if role not in ("source", "audio") + (() if compare else ("generated",)) and not (compare and model):
                await fail(grpc.StatusCode.INVALID_ARGUMENT, f"unknown file role {role!r}")
            if role not in writers:
                if len(writers) >= 34:
                    await fail(grpc.StatusCode.INVALID_ARGUMENT, "too many files (at most 32 models)")
                files[role] = open(os.path.join(tmp, f"f{len(writers)}"), "wb")
                writers[role] = ChunkWriter(role, files[role], self.cfg.max_upload_bytes)
            total += len(req.file.chunk.data)
            if total > self.cfg.max_upload_bytes:
                await fail(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"the files are larger than {self.cfg.max_upload_bytes} bytes together")
            try:
                writers[role].add(req.file.chunk.offset, req.file.chunk.data, req.file.chunk.last)
            except ChunkError as e:
                await fail(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        for f in files.values():
            f.close()
        needed = ["source", "audio"] + ([] if compare else ["generated"])
        missing = [r for r in needed if r not in writers]
        if compare and sum(1 for r in writers if r.startswith("model/")) < 2:
            missing.append("model/<name> (at least two)")
        if missing:
            await fail(grpc.StatusCode.INVALID_ARGUMENT, "missing files: " + ", ".join(missing))
        for role, w in writers.items():
            if not w.done:
                await fail(grpc.StatusCode.INVALID_ARGUMENT, f"file {role!r} ended before its last chunk")
        return first.config, {role: f.name for role, f in files.items()}

    async def _run(self, fn, fail):
        async with self.busy:
            try:
                return await asyncio.to_thread(fn)
            except media.MediaError as e:
                await fail(grpc.StatusCode.INVALID_ARGUMENT, str(e))

    async def Evaluate(self, request_iterator, context):
        fail = partial(calls.abort, context, request_iterator)
        tmp = tempfile.mkdtemp(prefix="eval-", dir=self.cfg.tmp_dir or None)
        try:
            cfg, paths = await self._receive(request_iterator, fail, tmp, compare=False)
            result = await self._run(lambda: self.evaluator.evaluate(paths["source"], paths["generated"],
                                                                     paths["audio"]), fail)
            result["inputs"] = {"source_video": "source", "generated_video": "generated", "audio": "audio"}
            html = report.evaluation_html(result).encode() if cfg.report_html else b""
            boot.log_event(log, "evaluated", seconds=result["seconds"])
            return common_pb2.EvaluationResult(metrics=metrics_pb(result), json=json.dumps(result), report_html=html)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    async def Compare(self, request_iterator, context):
        from services.evaluator.evaluate import compare
        fail = partial(calls.abort, context, request_iterator)
        tmp = tempfile.mkdtemp(prefix="eval-", dir=self.cfg.tmp_dir or None)
        try:
            cfg, paths = await self._receive(request_iterator, fail, tmp, compare=True)
            models = {r.split("/", 1)[1]: p for r, p in paths.items() if r.startswith("model/")}

            def work():
                return compare({name: self.evaluator.evaluate(paths["source"], p, paths["audio"])
                                for name, p in models.items()})
            result = await self._run(work, fail)
            html = report.comparison_html(result).encode() if cfg.report_html else b""
            return comparison_pb(result, html)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    cfg = EvaluatorConfig.from_env()
    boot.setup_logging("evaluator", cfg.edge.log_level)
    servicer = EvaluatorServicer(cfg)
    name = evaluator_pb2.DESCRIPTOR.services_by_name["Evaluator"].full_name
    asyncio.run(boot.serve(
        name="evaluator", host=cfg.host, port=cfg.port, port_file=cfg.port_file, grace_s=cfg.grace_s,
        service_names=[name], warmup=servicer.warmup, interceptors=internal_interceptors(cfg.edge.internal_token), edge=cfg.edge,
        add_servicers=lambda s: evaluator_pb2_grpc.add_EvaluatorServicer_to_server(servicer, s)))


if __name__ == "__main__":
    main()
