"""Evaluator gRPC edge: receive the files, run the evaluation in a worker thread, return the scores."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from functools import partial

import grpc

from lipsync.v1 import common_pb2, evaluator_pb2, evaluator_pb2_grpc
from lipsync_common.formats import media
from lipsync_common.edge import calls
from lipsync_common.edge import server as boot
from lipsync_common.edge.uploads import UploadError, Uploads, receive
from lipsync_common.formats.chunks import ChunkWriter
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
        """The config, then the files by role into tmp; returns (config, {role: path})."""
        files = Uploads(ChunkWriter, self.cfg.max_upload_bytes, max_total=self.cfg.max_upload_bytes)

        def route(f: evaluator_pb2.FileChunk):
            role = f.role
            if role not in ("source", "audio") + (() if compare else ("generated",)) and not (
                    compare and MODEL_ROLE.match(role)):
                raise UploadError(f"unknown file role {role!r}")
            if role not in files.writers:
                if len(files.writers) >= 34:
                    raise UploadError("too many files (at most 32 models)")
                files.open(role, role, os.path.join(tmp, f"f{len(files.writers)}"))
            return role, f.chunk

        try:
            config = await receive(request_iterator, "config", "file", lambda _: route, files,
                                   again="the config may be sent only once, first")
        except UploadError as e:
            await fail(calls.status(e.code), e.message)
        roles = files.writers
        needed = ["source", "audio"] + ([] if compare else ["generated"])
        missing = [r for r in needed if r not in roles]
        if compare and sum(1 for r in roles if r.startswith("model/")) < 2:
            missing.append("model/<name> (at least two)")
        if missing:
            await fail(grpc.StatusCode.INVALID_ARGUMENT, "missing files: " + ", ".join(missing))
        for role, w in roles.items():
            if not w.done:
                await fail(grpc.StatusCode.INVALID_ARGUMENT, f"file {role!r} ended before its last chunk")
        return config, dict(files.paths)

    async def _run(self, fn, fail):
        """fn(should_stop) in a worker thread, one at a time; when the call ends first (cancelled, deadline)
        the stop signal is set and the work ends at its next frame."""
        stop = threading.Event()
        async with self.busy:
            work = asyncio.ensure_future(asyncio.to_thread(fn, stop.is_set))
            work.add_done_callback(_quiet)
            try:
                return await asyncio.shield(work)     # a cancelled call leaves the worker to stop by itself
            except media.MediaError as e:
                await fail(grpc.StatusCode.INVALID_ARGUMENT, str(e))
            finally:
                stop.set()

    async def Evaluate(self, request_iterator, context):
        fail = partial(calls.abort, context, request_iterator)
        tmp = tempfile.mkdtemp(prefix="eval-", dir=self.cfg.tmp_dir or None)
        try:
            cfg, paths = await self._receive(request_iterator, fail, tmp, compare=False)
            result = await self._run(lambda should_stop: self.evaluator.evaluate(
                paths["source"], paths["generated"], paths["audio"], should_stop), fail)
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

            def work(should_stop):
                return compare({name: self.evaluator.evaluate(paths["source"], p, paths["audio"], should_stop)
                                for name, p in models.items()})
            result = await self._run(work, fail)
            html = report.comparison_html(result).encode() if cfg.report_html else b""
            return comparison_pb(result, html)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _quiet(work: asyncio.Future) -> None:
    """Read the outcome of a worker nobody waits for any more (its call was cancelled), so it is not logged as
    never retrieved; a Cancelled one is the expected end."""
    from services.evaluator.evaluate import Cancelled     # loaded by warmup (the evaluator's heavy imports)
    if not work.cancelled() and isinstance(work.exception(), Cancelled):
        boot.log_event(log, "evaluation stopped", reason="the call was cancelled")


def main() -> None:
    cfg = EvaluatorConfig.from_env()
    boot.setup_logging("evaluator", cfg.edge.log_level)
    servicer = EvaluatorServicer(cfg)
    boot.run_internal("evaluator", cfg.listen, cfg.edge, evaluator_pb2.DESCRIPTOR.services_by_name["Evaluator"],
                      lambda s: evaluator_pb2_grpc.add_EvaluatorServicer_to_server(servicer, s), warmup=servicer.warmup)


if __name__ == "__main__":
    main()
