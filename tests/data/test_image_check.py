"""The up-front image check: every bad file found, with a reason, in one error."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageFile

from reidlib.data.image_check import (
    EMPTY_FILE,
    MAX_LISTED,
    CorruptImagesError,
    check_images,
    check_split_images,
    find_unreadable_images,
    image_problem,
    split_image_paths,
)
from reidlib.data.records import Record, ReIDSplits
from tests.data.fixtures import truncate_file, write_image, write_noise_image


def test_a_jpeg_cut_to_half_passes_verify_but_not_the_check(tmp_path: Path) -> None:
    path = truncate_file(write_noise_image(tmp_path / "half.jpg"))
    # why the check decodes the pixels: the headers are whole, so verify() and open() see nothing wrong
    with Image.open(path) as img:
        img.verify()
    reason = image_problem(path)
    assert reason is not None and reason.startswith("truncated JPEG")


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.9, 0.999])
def test_truncation_anywhere_is_found(tmp_path: Path, suffix: str, fraction: float) -> None:
    path = write_noise_image(tmp_path / f"img{suffix}", seed=3)
    assert image_problem(path) is None
    truncate_file(path, fraction)
    reason = image_problem(path)
    assert reason is not None and reason.startswith(f"truncated {'PNG' if suffix == '.png' else 'JPEG'}")


def test_a_truncated_progressive_jpeg_is_found(tmp_path: Path) -> None:
    path = tmp_path / "progressive.jpg"
    with Image.open(write_noise_image(tmp_path / "noise.png")) as img:
        img.save(path, progressive=True)
    truncate_file(path)
    assert (image_problem(path) or "").startswith("truncated JPEG")


def test_reasons_of_other_bad_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "page.jpg"
    text.write_text("<html>404</html>")
    (tmp_path / "folder.jpg").mkdir()
    assert image_problem(empty) == EMPTY_FILE == "empty file (0 bytes)"
    reason = image_problem(text)
    assert reason is not None and reason.startswith("not an image") and "<html>404" in reason
    assert image_problem(tmp_path / "missing.jpg") == "file not found"
    assert image_problem(tmp_path / "folder.jpg") == "not a regular file"


def test_good_images_have_no_problem(tmp_path: Path) -> None:
    gray = tmp_path / "gray.jpg"
    Image.new("L", (10, 20), 90).save(gray)
    png_named_jpg = tmp_path / "really_png.jpg"  # a wrong extension still decodes: not the check's business
    Image.new("RGB", (5, 5)).save(png_named_jpg, format="PNG")
    for path in (write_image(tmp_path / "a.jpg"), write_image(tmp_path / "b.png"), gray, png_named_jpg,
                 write_noise_image(tmp_path / "c.jpg")):
        assert image_problem(path) is None, path


def _mixed_folder(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    """Five images, the 2nd and 4th bad; returns (all, bad)."""
    paths = [write_image(tmp_path / f"{i}.jpg", shade=i) for i in range(5)]
    paths[1].write_bytes(b"")
    truncate_file(write_noise_image(paths[3]))
    return paths, [paths[1], paths[3]]


def test_find_returns_the_bad_files_in_order_each_once(tmp_path: Path) -> None:
    paths, bad = _mixed_folder(tmp_path)
    found = find_unreadable_images([*paths, paths[3], str(paths[1])])
    assert [p for p, _ in found] == [str(p) for p in bad]
    assert found[0][1] == EMPTY_FILE and found[1][1].startswith("truncated JPEG")
    assert find_unreadable_images([p for p in paths if p not in bad]) == []
    assert find_unreadable_images([]) == []


def test_the_check_does_not_trust_load_truncated_images(tmp_path: Path, monkeypatch) -> None:
    path = truncate_file(write_noise_image(tmp_path / "half.jpg"))
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # e.g. set by some other library
    with Image.open(path) as img:
        img.load()  # what the flag does: the truncated file "decodes", with grey filling
    assert [r for _, r in find_unreadable_images([path])][0].startswith("truncated JPEG")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored for the caller


def test_check_images_raises_naming_count_files_reasons_and_checked(tmp_path: Path) -> None:
    paths, bad = _mixed_folder(tmp_path)
    assert check_images([p for p in paths if p not in bad], "toy", tmp_path) == 3
    with pytest.raises(CorruptImagesError) as info:
        check_images(paths + [paths[0]], "toy", tmp_path)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.checked == 5 and err.dataset == "toy" and err.root == str(tmp_path)
    assert [p for p, _ in err.bad] == [str(p) for p in bad]
    message = str(err)
    assert message.startswith(f"toy: 2 of the 5 images checked under {tmp_path} cannot be decoded:")
    lines = message.splitlines()
    assert f"  {bad[0]}: {EMPTY_FILE}" in lines
    assert any(line.startswith(f"  {bad[1]}: truncated JPEG") for line in lines)
    assert str(paths[0]) not in message
    assert not any(line.startswith("  ...") for line in lines)  # two files: no "... and N more"


def test_a_long_list_is_cut_after_max_listed(tmp_path: Path) -> None:
    paths = []
    for i in range(MAX_LISTED + 3):
        path = tmp_path / f"{i:02d}.jpg"
        path.write_bytes(b"")
        paths.append(path)
    with pytest.raises(CorruptImagesError) as info:
        check_images(paths, "toy")
    message = str(info.value)
    assert len(info.value.bad) == MAX_LISTED + 3
    count = MAX_LISTED + 3
    assert message.startswith(f"toy: {count} of the {count} images checked cannot be decoded:")
    assert str(paths[MAX_LISTED - 1]) in message and str(paths[MAX_LISTED]) not in message
    assert "  ... and 3 more" in message.splitlines()


def test_progress_bar_only_when_asked(tmp_path: Path, capsys) -> None:
    paths = [write_image(tmp_path / f"{i}.jpg") for i in range(3)]
    check_images(paths, "toy", progress=False)
    assert capsys.readouterr().err == ""
    check_images(paths, "toy", progress=True)
    err = capsys.readouterr().err
    assert "toy: checking images" in err and "3/3" in err


def _splits(tmp_path: Path, val_path: Path | None = None) -> ReIDSplits:
    rec = [Record(str(write_image(tmp_path / f"{s}.jpg")), 0, 0) for s in ("train", "query", "gallery")]
    extra = {} if val_path is None else {"val": [Record(str(val_path), 0, 1)]}
    return ReIDSplits("toy", [rec[0]], [rec[1]], [rec[2]], 1, 2, root=str(tmp_path), extra=extra)


def test_split_check_covers_every_split_and_msmt17_val(tmp_path: Path) -> None:
    splits = _splits(tmp_path)
    assert split_image_paths(splits) == [str(tmp_path / f"{s}.jpg") for s in ("train", "query", "gallery")]
    assert check_split_images(splits) == 3
    val = tmp_path / "val.jpg"
    val.write_text("not an image")
    with pytest.raises(CorruptImagesError, match="toy: 1 of the 4 images checked ") as info:
        check_split_images(_splits(tmp_path, val))
    assert info.value.bad[0][0] == str(val)
