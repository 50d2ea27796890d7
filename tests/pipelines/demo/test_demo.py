"""`pix2pix demo`'s flags: mistakes end in a message before any work (the demo itself is
what `make demo` runs)."""

from __future__ import annotations

import pytest

from pipelines.cli import main


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--size", "100000"], "size must be from 32 to 512 (the sample photos' resolution)"),
        (["--size", "16"], "size must be from 32 to 512"),
        (["--num_pairs", "5"], "num_pairs must be at least 10, got 5"),
    ],
)
def test_bad_settings_are_refused(flags, message, capsys, tmp_path):
    assert main(["demo", "--output_dir", str(tmp_path / "demo"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def test_an_output_dir_that_is_a_file_is_refused(capsys, tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    assert main(["demo", "--output_dir", str(afile)]) == 2
    assert f"--output_dir {afile} is a file; choose a folder" in capsys.readouterr().err
    assert afile.read_text() == "mine"
