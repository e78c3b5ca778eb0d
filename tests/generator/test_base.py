"""What every engine shares: crops grouped into the messages the generator streams."""
import numpy as np
import pytest

from services.generator.engines.base import batched


@pytest.mark.parametrize("n, size, cut_at, groups", [
    (20, 8, 0, [8, 8, 4]),
    (20, 8, 6, [6, 8, 6]),          # the head leaves at once, then whole groups again
    (20, 8, 11, [8, 3, 8, 1]),      # a head longer than a group is cut where it ends
    (5, 8, 6, [5]),
])
def test_crops_are_grouped_in_order_and_cut_after_the_head(n, size, cut_at, groups):
    crops = [np.full((256, 256, 3), k, np.uint8) for k in range(n)]
    out = list(batched(iter(crops), size, cut_at=cut_at))
    assert [len(g) for g in out] == groups
    assert [int(c[0, 0, 0]) for g in out for c in g] == list(range(n))
