"""Scene generation: determinism, shapes, labels that match what is rendered, learnability."""

import time

import numpy as np
import pytest

from hffm_env.config import DataConfig
from hffm_env.data import (
    COLOUR_RGB,
    NUM_SCENE_CLASSES,
    can_serve,
    decode_question,
    generate_scenes,
    task_specs,
)


@pytest.fixture(scope="module")
def batch():
    return generate_scenes(600, DataConfig(), np.random.default_rng(0))


def test_same_seed_same_scenes_different_seed_different(batch):
    again = generate_scenes(600, DataConfig(), np.random.default_rng(0))
    other = generate_scenes(600, DataConfig(), np.random.default_rng(1))
    for name in ("image", "audio", "text"):
        np.testing.assert_array_equal(getattr(batch, name), getattr(again, name))
        assert not np.array_equal(getattr(batch, name), getattr(other, name))


def test_shapes_dtypes_and_ranges(batch):
    cfg = DataConfig()
    assert batch.image.shape == (600, 3, cfg.image_size_px, cfg.image_size_px)
    assert batch.image.dtype == np.float32 and 0.0 <= batch.image.min() <= batch.image.max() <= 1
    assert batch.audio.shape == (600, cfg.audio_length) and batch.audio.dtype == np.float32
    assert batch.text.shape == (600, cfg.question_length) and batch.text.dtype == np.int64
    specs = task_specs(cfg)
    for task, labels in batch.labels.items():
        assert labels.min() >= 0 and labels.max() < specs[task].num_classes
        assert specs[task].chance == pytest.approx(1 / specs[task].num_classes)


def test_count_label_is_the_number_of_rendered_objects(batch):
    assert np.array_equal(batch.labels["count"] + 1, batch.objects.present.sum(axis=1))
    assert np.array_equal(batch.labels["scene"], batch.scene_class)


def test_objects_are_drawn_in_their_colour():
    cfg = DataConfig(noise_std=0.0)
    b = generate_scenes(50, cfg, np.random.default_rng(3))
    checked = 0
    for i in range(len(b)):
        for k in np.flatnonzero(b.objects.present[i]):
            x, y = int(round(b.objects.x_px[i, k])), int(round(b.objects.y_px[i, k]))
            colour = np.asarray(COLOUR_RGB)[b.objects.colour[i, k]]
            np.testing.assert_allclose(b.image[i, :, y, x], colour, atol=1e-6)
            checked += 1
    assert checked > 50


def test_questions_decode_to_words(batch):
    text = decode_question(batch.text[0])
    assert isinstance(text, str) and len(text.split()) >= 2


def test_conditioned_scene_classes_are_respected():
    wanted = np.arange(40) % NUM_SCENE_CLASSES
    b = generate_scenes(40, DataConfig(), np.random.default_rng(0), scene_class=wanted)
    assert np.array_equal(b.scene_class, wanted)
    with pytest.raises(ValueError, match="scene_class"):
        generate_scenes(3, DataConfig(), np.random.default_rng(0), scene_class=np.array([9, 0, 0]))


def test_task_requirements():
    assert can_serve("vqa", ("image", "text")) and not can_serve("vqa", ("audio", "text"))
    assert can_serve("count", ("audio",)) and can_serve("scene", ("image",))
    with pytest.raises(ValueError, match="unknown"):
        can_serve("dance", ("image",))


def test_fifty_thousand_samples_take_seconds():
    start = time.perf_counter()
    generate_scenes(50_000, DataConfig(), np.random.default_rng(0))
    assert time.perf_counter() - start < 30.0  # about 4 s on 2 cores; generous for slow CI


def _nearest_centroid_accuracy(train_x, train_y, test_x, test_y, classes):
    centroids = np.stack([train_x[train_y == c].mean(axis=0) for c in range(classes)])
    distances = ((test_x[:, None, :] - centroids[None]) ** 2).sum(axis=-1)
    return float((distances.argmin(axis=1) == test_y).mean())


@pytest.mark.parametrize("task,modality", [("scene", "audio"), ("scene", "image"),
                                           ("count", "audio")])
def test_tasks_are_learnable_from_raw_signals(task, modality):
    cfg = DataConfig()
    train = generate_scenes(3000, cfg, np.random.default_rng(1))
    test = generate_scenes(1000, cfg, np.random.default_rng(2))

    def features(b):
        x = getattr(b, modality).reshape(len(b), -1)
        if modality == "audio":  # magnitude spectrum: tone frequencies and drones
            x = np.abs(np.fft.rfft(x, axis=1))
        else:  # mean colour per channel on a coarse grid
            x = b.image.reshape(len(b), 3, 4, 8, 4, 8).mean(axis=(3, 5)).reshape(len(b), -1)
        return x

    classes = task_specs(cfg)[task].num_classes
    accuracy = _nearest_centroid_accuracy(features(train), train.labels[task], features(test),
                                          test.labels[task], classes)
    assert accuracy > 1.3 / classes, accuracy
