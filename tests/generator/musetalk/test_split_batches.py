"""A batch run as several compiled sizes (batch_plan) gives the same crops as the batch padded to one size: the
split is a speed choice only. Tiny random weights in the official layout, on the CPU."""
import numpy as np
import pytest
import torch

from services.generator.engines.musetalk.sizes import batch_plan
from services.generator.engines.musetalk.engine import MuseTalkEngine, MuseTalkSettings
from tests.generator.musetalk.tiny_musetalk import write_tiny_models

H200 = {8: 0.015, 16: 0.026, 32: 0.051}     # seconds per batch of each size, as timed on an H200


@pytest.mark.parametrize("n, plan", [(1, [8]), (8, [8]), (9, [16]), (16, [16]), (17, [16, 8]), (24, [16, 8]),
                                     (25, [32]), (32, [32])])
def test_the_plan_takes_the_least_time_by_the_timed_sizes(n, plan):
    assert batch_plan(n, [8, 16, 32], H200) == plan
    assert sum(plan) >= n


def test_without_timings_a_batch_is_padded_to_the_smallest_size_that_holds_it():
    assert batch_plan(17, [8, 16, 32]) == [32]
    assert batch_plan(5, [8, 16, 32]) == [8]
    assert batch_plan(0, [8, 16, 32], H200) == []


def test_a_size_that_costs_more_than_two_smaller_ones_is_split():
    # measured costs decide, not the sizes: if 16 were as slow as 32, 9 frames would run as 8 + 8
    assert batch_plan(9, [8, 16, 32], {8: 0.01, 16: 0.05, 32: 0.06}) == [8, 8]
    assert batch_plan(16, [8, 16, 32], {8: 0.01, 16: 0.05, 32: 0.06}) == [8, 8]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    write_tiny_models(str(d))
    e = MuseTalkEngine(str(d), MuseTalkSettings(device="cpu", max_batch=8, split_batches=True))
    e.load()
    yield e
    e.close()


def test_split_and_padded_batches_give_the_same_crops(engine):
    costs = engine.size_costs["v15"]
    assert sorted(costs) == [2, 4, 8] and all(v > 0 for v in costs.values())   # timed at warm-up
    model = engine.models["v15"]
    g = torch.Generator().manual_seed(0)
    items = [(torch.randn(8, 32, 32, generator=g).to(model.dtype), torch.randn(50, 384, generator=g).to(model.dtype))
             for _ in range(7)]
    items.insert(3, None)                                 # a frame without a face: zeros, in its place
    split = engine._launch(model, items, [2, 4, 8], {2: 1.0, 4: 1.5, 8: 10.0})()   # 7 as 4 + 4
    padded = engine._launch(model, items, [2, 4, 8], None)()                        # 7 padded to 8
    assert len(split) == len(padded) == 8
    assert not split[3].any() and not padded[3].any()
    for a, b in zip(split, padded):
        np.testing.assert_allclose(a.astype(int), b.astype(int), atol=1)
    assert any(c.any() for c in split)


def test_a_batch_expected_time_follows_the_plan_it_runs_as(engine, monkeypatch):
    # the batcher launches the next batch just before the running one should end: by the sizes it runs as
    monkeypatch.setitem(engine.size_costs, "v15", {2: 1.0, 4: 1.5, 8: 10.0})
    assert engine._batch_cost("v15", 7, [2, 4, 8]) == 3.0             # split: 4 + 4
    monkeypatch.setattr(engine, "settings", MuseTalkSettings(device="cpu", max_batch=8, split_batches=False))
    assert engine._batch_cost("v15", 7, [2, 4, 8]) == 10.0            # padded to 8
    assert engine._batch_cost("v9", 7, [2, 4, 8]) == 0.0              # not timed: launched as soon as it is full


def test_the_batcher_launches_by_the_timed_sizes_unless_the_lead_is_off(engine, tmp_path):
    batcher = engine.batchers["v15"]
    assert batcher.cost is not None and batcher.launch_lead_s == 0.010     # the default: 10 ms before the due end
    off = MuseTalkEngine(engine.models_dir, MuseTalkSettings(device="cpu", max_batch=8, launch_lead_ms=-1))
    off.load()
    try:
        assert off.batchers["v15"].cost is None        # launched as soon as it is full
    finally:
        off.close()
