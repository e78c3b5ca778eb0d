"""LiveRun's parts alone: a crop that comes after its frame went to render (as the source frame) is not kept, and
a client that stops reading ends the session at the queue limit, so neither grows the gateway's memory."""
import asyncio

import grpc
import numpy as np
import pytest

from gateway.live import LiveClock
from gateway.live_edge import OUT_QUEUE, LiveRun
from gateway.upload import Failure
from lipsync.v1 import gateway_pb2, generator_pb2, preprocess_pb2
from lipsync_common.formats.tensors import to_tensor


class _Replies:
    """What a GenerateLive call's read() returns: the given responses, then EOF."""

    def __init__(self, responses):
        self.responses = list(responses)

    async def read(self):
        return self.responses.pop(0) if self.responses else grpc.aio.EOF


def test_late_crops_are_dropped_and_timely_ones_kept():
    run = LiveRun(None, gateway_pb2.LiveStart(), "src", 25.0, None, 2)
    run.clock = LiveClock(25.0, 16000, lookahead=2, margin_frames=2, max_buffer_s=10)
    run.next_send = 5                              # frames 0-4 already went to render without their crops
    crop = to_tensor(np.zeros((1, 4, 4, 3), np.uint8))
    replies = [generator_pb2.LiveGenerateResponse(crops=preprocess_pb2.CropBatch(first_frame=k, images=crop))
               for k in (3, 4, 5, 6)]
    asyncio.run(run._read_crops(_Replies(replies)))
    assert sorted(run.crops) == [5, 6]


def test_a_client_that_stops_reading_ends_the_session_at_the_queue_limit():
    run = LiveRun(None, gateway_pb2.LiveStart(), "src", 25.0, None, 2)
    for k in range(OUT_QUEUE):
        run._put(gateway_pb2.LiveResponse(frame=gateway_pb2.LiveFrame(index=k)))
    with pytest.raises(Failure) as e:
        run._put(gateway_pb2.LiveResponse(frame=gateway_pb2.LiveFrame(index=OUT_QUEUE)))
    assert e.value.code == "RESOURCE_EXHAUSTED" and "not reading" in e.value.message
    assert run.out.qsize() == OUT_QUEUE          # nothing past the limit was kept
