"""The bottom layer: one atomic write, input lists for the command line, errors with their HTTP status."""

from __future__ import annotations

import pytest

from digitscan import errors
from digitscan.files import atomic_write, expand_paths

from helpers import json_lines, run


def test_atomic_write_replaces_the_file_only_when_the_writer_finishes(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    with atomic_write(target) as temporary:
        temporary.write_bytes(b"new")
        assert not target.exists() and temporary.parent == target.parent  # same folder: the rename is atomic
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["out.bin"]


@pytest.mark.parametrize("failure", [ValueError("disk full"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path, failure):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(type(failure)), atomic_write(target) as temporary:
        temporary.write_bytes(b"half")
        raise failure
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_expand_paths_searches_folders_and_keeps_an_empty_one_as_an_input(tmp_path):
    (tmp_path / "a" / "deeper").mkdir(parents=True)
    (tmp_path / "a" / "deeper" / "2.png").write_bytes(b"")
    (tmp_path / "a" / "1.JPG").write_bytes(b"")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    assert expand_paths([tmp_path / "a", tmp_path / "empty", tmp_path / "missing.png"]) == [
        tmp_path / "a" / "1.JPG", tmp_path / "a" / "deeper" / "2.png", tmp_path / "empty", tmp_path / "missing.png"]


def test_an_empty_folder_on_the_command_line_is_an_error_not_silence(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    for command in ("predict", "read"):
        result = run(command, "--json", tmp_path)
        assert result.exit_code == 1, result.output
        assert f"no image file in folder '{tmp_path}'" in result.stderr
        assert [row["path"] for row in json_lines(result.stdout)] == [str(tmp_path)]


def test_every_error_carries_its_http_status_and_one_line():
    assert (errors.ImageTooLargeError.http_status, errors.UnsupportedImageError.http_status,
            errors.UnreadableImageError.http_status, errors.ImageTooComplexError.http_status,
            errors.Saturated.http_status) == (413, 415, 422, 422, 503)
    assert issubclass(errors.NoImagesError, errors.ImageError) and issubclass(errors.ImageError, ValueError)
    assert errors.one_line(ValueError("two\nlines  and   gaps")) == "two lines and gaps"
    assert errors.one_line(KeyError()) == "KeyError"
