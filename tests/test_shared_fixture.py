"""The one way tests reach ../shared/data: shared_file("NAME") gives the path, or skips when the file is absent."""
import os

import pytest

from tests import helpers


def test_a_missing_shared_file_skips_with_its_name_and_place(shared_file):
    with pytest.raises(pytest.skip.Exception) as e:
        shared_file("no-such-file.wav")
    where = os.path.join(helpers.SHARED, "no-such-file.wav")
    assert str(e.value) == f"needs ../shared/data/no-such-file.wav (not found at {where})"


def test_a_missing_shared_folder_skips_and_a_present_file_gives_its_absolute_path(shared_file, tmp_path, monkeypatch):
    monkeypatch.setattr(helpers, "SHARED", str(tmp_path / "shared" / "data"))   # a fresh clone: no ../shared
    with pytest.raises(pytest.skip.Exception, match="needs ../shared/data/eng.wav"):
        shared_file("eng.wav")
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "eng.wav").write_bytes(b"RIFF")
    path = shared_file("eng.wav")
    assert os.path.isabs(path) and os.path.isfile(path)
