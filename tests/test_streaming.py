"""The training pipeline without the memory cache (datasets larger than memory), and its shards."""

from pathlib import Path

import cv2
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from edgeseg import pipeline  # noqa: E402
from edgeseg.datasets import scan_dataset  # noqa: E402
from edgeseg.pipeline import Augmentation, TrainingData  # noqa: E402


@pytest.fixture
def dataset(tmp_path):
    """Ten 30x40 random images and masks of three classes."""
    rng = np.random.default_rng(1)
    for folder in ("img", "msk"):
        (tmp_path / folder).mkdir()
    for index in range(10):
        cv2.imwrite(str(tmp_path / "img" / f"{index:02d}.png"), rng.integers(0, 255, (30, 40, 3), dtype=np.uint8))
        cv2.imwrite(str(tmp_path / "msk" / f"{index:02d}.png"), rng.integers(0, 3, (30, 40), dtype=np.uint8))
    return scan_dataset(tmp_path / "img", tmp_path / "msk", 3, 255)


def _batches(dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(images.numpy(), labels.numpy()) for images, labels in dataset]


def _reads(monkeypatch) -> list[str]:
    """Record the file name of every image the pipeline decodes from now on."""
    reads, read = [], pipeline.read_image

    def recording(image_path):
        reads.append(Path(image_path).name)
        return read(image_path)

    monkeypatch.setattr(pipeline, "read_image", recording)
    return reads


def test_streamed_batches_equal_cached_ones_and_read_each_file_once_an_epoch(dataset, monkeypatch):
    augmentation = Augmentation(scale_range=(0.75, 1.5))
    cached = TrainingData(dataset, (24, 24), 4, 255, seed=5, augmentation=augmentation, cache=True)
    reads = _reads(monkeypatch)
    streamed = TrainingData(dataset, (24, 24), 4, 255, seed=5, augmentation=augmentation, cache=False)
    assert streamed.cache is False and cached.cache is True
    for epoch in (0, 1):
        expected = _batches(cached.epoch(epoch))  # the cache fills on first use: not counted
        reads.clear()
        got = _batches(streamed.epoch(epoch))
        assert len(got) == 2  # 10 images, batches of 4: the incomplete last one is dropped
        for (images, labels), (want_images, want_labels) in zip(got, expected):
            np.testing.assert_array_equal(images, want_images)
            np.testing.assert_array_equal(labels, want_labels)
        # Nothing kept between epochs: the 8 images of the epoch's batches are read from disk.
        assert len(reads) == 8 and len(set(reads)) == 8, reads
    reads.clear()
    resumed = _batches(streamed.epoch(1, skip_batches=1))
    np.testing.assert_array_equal(resumed[0][0], _batches(cached.epoch(1))[1][0])
    assert len(reads) == 4  # a resumed epoch reads only what it has left


def test_each_input_pipeline_streams_its_slice_of_every_global_batch(dataset, monkeypatch):
    reads = _reads(monkeypatch)
    data = TrainingData(dataset, (24, 24), 4, 255, seed=2, cache=False)
    whole = _batches(data.epoch(3))
    slices = []
    for pipeline_id in (0, 1):
        reads.clear()
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id,
                                             num_replicas_in_sync=2)  # fmt: skip
        slices.append(_batches(data.epoch(3, context=context)))
        assert len(reads) == 4  # half of the epoch's 8 images, each read by one pipeline only
    for step, (images, labels) in enumerate(whole):
        np.testing.assert_array_equal(np.concatenate([slices[0][step][0], slices[1][step][0]]), images)
        np.testing.assert_array_equal(np.concatenate([slices[0][step][1], slices[1][step][1]]), labels)
