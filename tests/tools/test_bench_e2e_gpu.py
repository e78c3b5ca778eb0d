"""The e2e GPU bench's split of a level's wall: busy, gaps between batches, the end after the last crops, the start."""
from tools.bench_e2e_gpu import idle_split


def test_a_level_wall_splits_into_busy_gaps_end_and_start():
    done = [{"t0": 100.0, "last_crops_s": 3.3, "t1": 103.35, "generate_starts_ms": 15},
            {"t0": 100.01, "last_crops_s": 3.2, "t1": 103.4, "generate_starts_ms": 4}]
    # busy 3.2 s and 20 ms of gaps during the level; its last crops came at 103.3, it ended at 103.4; the second
    # request's generate stage began first (at 100.014), the device's first batch was launched at 100.041
    split = idle_split((3.0, 0.5), (6.2, 0.52), t0=100.0, wall=3.4, done=done, run_start=100.041)
    assert split == {"gpu_gap_s": 0.02, "tail_after_last_crops_ms": 100, "end_spread_ms": 50, "first_generate_ms": 14,
                     "first_batch_ms": 41, "start_ms": 80}
    # a run that began before the level (the gauge not set by it) or never: unknown
    assert idle_split((3.0, 0.5), (6.2, 0.52), 100.0, 3.4, done, run_start=97.5)["first_batch_ms"] is None
    assert idle_split((3.0, 0.5), (6.2, 0.52), 100.0, 3.4, done, run_start=0.0)["first_batch_ms"] is None


def test_without_gpu_time_the_start_is_unknown_and_without_requests_so_is_the_end():
    done = [{"t0": 100.0, "last_crops_s": 3.3, "t1": 103.4, "generate_starts_ms": 5}]
    assert idle_split((0.0, 0.0), (0.0, 0.0), t0=100.0, wall=3.4, done=done)["start_ms"] is None
    split = idle_split((1.0, None), (2.0, None), t0=100.0, wall=3.4, done=[])
    assert split["gpu_gap_s"] is None and split["tail_after_last_crops_ms"] is None and split["start_ms"] is None
    assert split["end_spread_ms"] is None and split["first_generate_ms"] is None and split["first_batch_ms"] is None
