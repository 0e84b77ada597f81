"""The FZ cache on disk: compact records, damaged files recomputed or rewritten, leftovers of
killed writes removed, and concurrent runs sharing the work through per-record locks."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
import torch

import rsi_plugin as rsi
from rsi_plugin.featureviz.optimize import FeatureVizConfig
from rsi_plugin.featureviz.cache import MAX_ABS_ACTIVATION, check_record, read_record, write_record

BLOCK, NODE = "2.1", "pre"
CONFIG = FeatureVizConfig(steps=3, image_size=32, jitter=0, channels_per_batch=4)


@pytest.fixture(scope="module")
def tiny():
    return rsi.load_model("tiny")


def _render(model, cache, channels=(0, 1, 2, 3), config=CONFIG):
    return rsi.render(model, BLOCK, NODE, list(channels), config, cache_dir=cache, progress=False)


def _records(cache: Path) -> dict[int, Path]:
    return {int(p.stem[1:]): p for p in cache.rglob("c*.pt")}


def test_record_file_is_the_size_of_its_own_tensors(tiny, tmp_path):
    result = _render(tiny, tmp_path)
    records = _records(tmp_path)
    assert sorted(records) == [0, 1, 2, 3]
    for c, path in records.items():
        record = torch.load(path, weights_only=True)
        tensor_bytes = sum(v.numel() * v.element_size() for v in record.values() if isinstance(v, torch.Tensor))
        assert tensor_bytes >= 3 * 32 * 32 * 4
        # a view of the batch stored the batch's whole storage: 4 channels -> 4x the image bytes
        assert path.stat().st_size < 1.25 * tensor_bytes + 4096, (c, path.stat().st_size, tensor_bytes)
        assert torch.equal(record["image"], result.images[result.channels.index(c)])


def test_missing_or_truncated_png_beside_a_good_record_is_written_again(tiny, tmp_path):
    first = _render(tiny, tmp_path)
    png0, png1 = first.paths[0], first.paths[1]
    png0.unlink()
    png1.write_bytes(png1.read_bytes()[: png1.stat().st_size // 2])
    again = _render(tiny, tmp_path)
    assert again.computed == []  # the records were good: nothing optimised again
    from PIL import Image

    for png, c in ((png0, 0), (png1, 1)):
        with Image.open(png) as handle:
            handle.load()
            assert handle.size == (32, 32)
            pixels = torch.tensor(list(handle.getdata()), dtype=torch.float32).T.reshape(3, 32, 32) / 255
        torch.testing.assert_close(pixels, first.images[c], atol=1 / 255, rtol=0)


def test_png_swapped_for_another_channels_is_written_again(tiny, tmp_path):
    # issue 21 item 8: a whole, decodable PNG of the right size but another channel's
    import hashlib

    first = _render(tiny, tmp_path)
    records = _records(tmp_path)
    png0, png1 = first.paths[0], first.paths[1]
    own = png0.read_bytes()
    assert own != png1.read_bytes()
    record = torch.load(records[0], weights_only=True)
    assert record["png_sha256"] == hashlib.sha256(own).hexdigest()
    png0.write_bytes(png1.read_bytes())
    again = _render(tiny, tmp_path)
    assert again.computed == []  # the record was good: nothing optimised again
    assert png0.read_bytes() == own
    assert again.paths[0] == png0


def test_record_without_png_checksum_still_loads(tiny, tmp_path):
    from rsi_plugin.featureviz.cache import record_checksum

    first = _render(tiny, tmp_path)
    path = _records(tmp_path)[2]
    old = torch.load(path, weights_only=True)
    old.pop("png_sha256")
    old.pop("checksum")
    old["checksum"] = record_checksum(old)  # a record written before the field existed
    torch.save(old, path)
    before = path.stat().st_mtime_ns
    again = _render(tiny, tmp_path)
    assert again.computed == []
    assert torch.equal(again.images[2], first.images[2])
    assert path.stat().st_mtime_ns == before  # the same cache key: the old record is read, not replaced

def test_flipped_bytes_in_a_record_are_detected_and_recomputed(tiny, tmp_path):
    first = _render(tiny, tmp_path)
    path = _records(tmp_path)[2]
    raw = bytearray(path.read_bytes())
    image_bytes = first.images[2].contiguous().numpy().tobytes()
    at = bytes(raw).find(image_bytes[:64])
    assert at > 0  # torch stores tensor data uncompressed
    raw[at + 40] ^= 0x01  # one bit of one pixel: still a float in [0, 1]
    path.write_bytes(bytes(raw))
    again = _render(tiny, tmp_path)
    assert again.computed == [2]
    # the same seed draws the same start and transforms (a batch of 1 instead of 4: rounding only)
    torch.testing.assert_close(again.images, first.images, atol=1e-4, rtol=0)


def test_implausible_activation_is_never_fed_to_the_criteria(tiny, tmp_path):
    first = _render(tiny, tmp_path)
    path = _records(tmp_path)[1]
    raw = path.read_bytes()
    needle = struct.pack(">d", float(first.activations[1]))  # pickle's BINFLOAT, big-endian
    assert raw.count(needle) == 1
    path.write_bytes(raw.replace(needle, struct.pack(">d", 2.5e23)))
    again = _render(tiny, tmp_path)
    assert again.computed == [1]
    torch.testing.assert_close(again.activations, first.activations, atol=1e-4, rtol=1e-4)
    assert float(again.activations.abs().max()) < MAX_ABS_ACTIVATION


@pytest.mark.parametrize("change, reason", [
    ({"activation": float("nan")}, "non-finite"),
    ({"activation": 2.5e23}, "implausibly large"),
    ({"image": torch.full((3, 8, 8), float("inf"))}, "non-finite"),
    ({"image": torch.full((3, 8, 8), 3.0)}, "outside"),
    ({"history": torch.tensor([1.0, float("nan")])}, "history"),
    ({"image": torch.rand(8, 8)}, "[3, H, W]"),
])
def test_check_record_rejects_implausible_values_even_with_a_valid_checksum(tmp_path, change, reason):
    good = {"image": torch.rand(3, 8, 8), "activation": 1.5, "history": torch.tensor([0.5, 1.5]), "channel": 7}
    assert check_record(good) is None
    path = tmp_path / "c00007.pt"
    write_record(path, good)
    assert read_record(path) is not None
    bad = {**good, **change}
    assert reason in check_record(bad)
    torch.save({**bad, "checksum": torch.load(path, weights_only=True)["checksum"]}, path)
    assert read_record(path) is None
    if bad["image"].dim() == 3 and bool(torch.isfinite(bad["image"]).all()) and float(bad["image"].max()) <= 1:
        write_record(path, bad)  # a consistent checksum does not make the values plausible
        assert read_record(path) is None


def test_leftover_temporaries_are_removed_on_the_next_run(tiny, tmp_path):
    _render(tiny, tmp_path)
    record = _records(tmp_path)[3]
    record.unlink()  # killed while writing channel 3: its temporaries are all that is left
    leftovers = [record.parent / ".c00003.pt.x1y2z3.tmp", record.parent / ".c00003.png.a1b2c3.tmp"]
    for tmp in leftovers:
        tmp.write_bytes(b"half a file")
    old = record.parent / ".config.json.q9w8e7.tmp"
    old.write_text("{")
    os.utime(old, (0, 0))  # a leftover from long ago
    again = _render(tiny, tmp_path)
    assert again.computed == [3]
    assert not any(tmp.exists() for tmp in leftovers + [old])
    assert not list(tmp_path.rglob("*.tmp"))


def _worker(cache: Path, me: str, other: str, results) -> None:
    """One of two processes rendering the same channels into one cache (started together)."""
    import time

    torch.set_num_threads(1)
    model = rsi.load_model("tiny")
    (cache / f"ready-{me}").touch()
    while not (cache / f"ready-{other}").exists():  # start both renders together
        time.sleep(0.002)
    config = FeatureVizConfig(steps=20, image_size=32, jitter=0, channels_per_batch=1)
    result = rsi.render(model, "2.1", "pre", [0, 1, 2, 3, 4, 5], config, cache_dir=cache / "fz", progress=False)
    results.put((me, result.computed, result.activations.tolist()))


def test_two_concurrent_runs_compute_each_record_once(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("fork")  # two real processes, without a second import of torch
    results = context.Queue()
    procs = [context.Process(target=_worker, args=(tmp_path, me, other, results))
             for me, other in (("a", "b"), ("b", "a"))]
    for proc in procs:
        proc.start()
    outs = dict((me, (computed, acts)) for me, computed, acts in (results.get(timeout=300) for _ in procs))
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    computed = outs["a"][0] + outs["b"][0]
    assert sorted(computed) == [0, 1, 2, 3, 4, 5]  # no channel rendered twice, none missing
    assert outs["a"][1] == outs["b"][1]  # the waiting run read the other's records
    assert len(_records(tmp_path / "fz")) == 6
