"""Procedural multi-modal scenes: one latent scene, seen as an image, heard as audio, asked about
in text, with labels for three classification tasks.

A scene has an *environment* (the scene class: street, forest, beach, office, night) and 1 to
``max_objects`` objects. Each object has a shape (square, circle, triangle), a colour (red, green,
blue, yellow), a size (small, large) and a position. Objects sit in distinct cells of a coarse
``g x g`` grid (``g = max(3, ceil(sqrt(2 * max_objects)))``) with a small jitter, so they never
overlap and the count label is always what is visible.

The environment shapes every modality, so that a label-skewed split over scene classes skews
every task (as real non-IID data does):

* image ``float32 (n, 3, S, S)`` in [0, 1]: a dark background with an environment-specific tint
  and a faint sinusoidal grating whose orientation depends on the environment (both jittered per
  sample so that neighbouring environments overlap), objects drawn as filled shapes in their
  colour over it (opaque, exact palette colour), environment-specific layout (which grid cells
  objects prefer), plus Gaussian pixel noise of std ``noise_std`` (quantised to 2^16 levels
  for speed, see ``_gaussian``); clipped to [0, 1].
* audio ``float32 (n, audio_length)``: a left-to-right *sonification* of the scene. Each object
  is a Gaussian-windowed tone burst centred at a time proportional to its x position; its
  frequency encodes (grid row, shape), so distinct objects never share a time-frequency spot; its
  amplitude encodes its size (large 1.0, small 0.5). The environment adds a low-frequency drone
  (frequency by environment, jittered). Noise std is ``AUDIO_NOISE_GAIN * noise_std``.
* text ``int64 (n, question_length)``: a question for the VQA task, tokens from :data:`VOCAB`
  (``<pad>`` = 0 pads the end, every question starts with ``<cls>`` = 1).

Environments also set priors: the count distribution is tilted (streets are busy, nights sparse)
and each environment but ``night`` favours one colour.

Tasks (see :func:`task_specs`): ``vqa`` (answer from image + text), ``count`` (number of objects,
from image or audio), ``scene`` (the environment, from image or audio).

Everything is vectorised over samples; randomness comes only from the generator passed in.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from hffm_env.config import MIN_CELL_PX, MIN_QUESTION_LENGTH, TASKS, DataConfig, grid_size
from hffm_env.values import is_integer

__all__ = [
    "SHAPES",
    "COLOURS",
    "SIZES",
    "SCENE_CLASSES",
    "NUM_SCENE_CLASSES",
    "COLOUR_RGB",
    "VOCAB",
    "VOCAB_SIZE",
    "PAD_ID",
    "CLS_ID",
    "TOKEN_ID",
    "QUESTION_TYPES",
    "MIN_QUESTION_LENGTH",
    "AUDIO_NOISE_GAIN",
    "answer_vocab",
    "TaskSpec",
    "task_specs",
    "TASK_SPECS",
    "can_serve",
    "SceneObjects",
    "SceneBatch",
    "MIN_CELL_PX",
    "centre_pixel_paints",
    "noiseless",
    "grid_size",
    "generate_scenes",
    "decode_question",
]

# --------------------------------------------------------------------------------------------
# vocabularies

SHAPES: tuple[str, ...] = ("square", "circle", "triangle")
"""Object shapes; an object's ``shape`` attribute indexes this tuple."""

COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow")
"""Object colours; an object's ``colour`` attribute indexes this tuple."""

SIZES: tuple[str, ...] = ("small", "large")
"""Object sizes; an object's ``size`` attribute indexes this tuple."""

SCENE_CLASSES: tuple[str, ...] = ("street", "forest", "beach", "office", "night")
"""The environments (scene classes); ``scene_class`` and the ``scene`` label index this tuple."""

NUM_SCENE_CLASSES: int = len(SCENE_CLASSES)
"""Number of scene classes (5)."""

COLOUR_RGB: np.ndarray = np.array(
    [[0.90, 0.15, 0.12], [0.15, 0.80, 0.20], [0.20, 0.35, 0.95], [0.92, 0.85, 0.15]],
    dtype=np.float32,
)
"""``(4, 3)`` RGB of each colour in [0, 1]; noise-free object pixels are exactly these values."""

VOCAB: tuple[str, ...] = (
    "<pad>", "<cls>",
    "how", "many", "objects", "is", "there", "a", "what", "colour", "shape", "size", "the",
    "object",
    *COLOURS, *SHAPES, *SIZES,
)
"""Question tokens; a token id indexes this tuple. ``<pad>`` (0) fills the end of a question,
``<cls>`` (1) starts every question."""

VOCAB_SIZE: int = len(VOCAB)
"""Number of question tokens (23)."""

TOKEN_ID: dict[str, int] = {word: i for i, word in enumerate(VOCAB)}
"""Token id of every word of :data:`VOCAB`."""

PAD_ID: int = TOKEN_ID["<pad>"]
"""Padding token id (0)."""

CLS_ID: int = TOKEN_ID["<cls>"]
"""Start-of-question token id (1)."""

QUESTION_TYPES: tuple[str, ...] = (
    "how many <colour> objects",          # answer: a count 0..max_objects
    "how many <shape> objects",           # answer: a count 0..max_objects
    "is there a <colour> <shape>",        # answer: yes / no
    "what colour is the <size> <shape>",  # answer: a colour; asked only if that object is unique
    "what shape is the <colour> object",  # answer: a shape; asked only if the colour is unique
    "what size is the <colour> <shape>",  # answer: a size; asked only if that object is unique
)
"""Question templates, in the order of ``SceneBatch.question_type``. Each question is drawn
uniformly among the templates whose answer is well defined for that scene."""

AUDIO_NOISE_GAIN: float = 3.0
"""Audio noise std is this times ``data.noise_std``: a tone burst spreads over many samples, so
the same per-sample noise as the image would barely matter."""

_COLOUR_WORD0 = TOKEN_ID[COLOURS[0]]
_SHAPE_WORD0 = TOKEN_ID[SHAPES[0]]
_SIZE_WORD0 = TOKEN_ID[SIZES[0]]


def answer_vocab(max_objects: int) -> tuple[str, ...]:
    """The unified VQA answer vocabulary: ``no, yes, 0..max_objects, colours, shapes, sizes``.

    The ``vqa`` label indexes it; with ``max_objects = 3`` it has 15 answers.
    """
    counts = tuple(str(k) for k in range(max_objects + 1))
    return ("no", "yes", *counts, *COLOURS, *SHAPES, *SIZES)


def _answer_offsets(max_objects: int) -> dict[str, int]:
    """Index of the first answer of each answer type in :func:`answer_vocab`."""
    count0 = 2
    colour0 = count0 + max_objects + 1
    shape0 = colour0 + len(COLOURS)
    size0 = shape0 + len(SHAPES)
    return {"yesno": 0, "count": count0, "colour": colour0, "shape": shape0, "size": size0}


# --------------------------------------------------------------------------------------------
# tasks


@dataclass(frozen=True)
class TaskSpec:
    """A classification task: its classes, its chance level and the modalities it needs.

    ``requires`` lists alternative modality sets; a device that holds *any one* of them can run
    the task. ``chance`` is ``1 / num_classes`` (uniform guessing); label priors can make simple
    guesses do better (e.g. a text-only VQA model can learn the answer type from the question).
    """

    name: str
    num_classes: int
    chance: float
    requires: tuple[frozenset[str], ...]
    description: str


def task_specs(config: DataConfig | None = None) -> dict[str, TaskSpec]:
    """The task specs for ``config`` (class counts depend on ``config.max_objects``).

    With the default config: ``vqa`` 15 classes, ``count`` 3, ``scene`` 5.
    """
    max_objects = (config or DataConfig()).max_objects
    num_answers = len(answer_vocab(max_objects))
    return {
        "vqa": TaskSpec(
            name="vqa",
            num_classes=num_answers,
            chance=1.0 / num_answers,
            requires=(frozenset({"image", "text"}),),
            description=(
                f"answer the question (text) about the image; {num_answers} answers "
                "(answer_vocab): no/yes, counts 0..max_objects, colours, shapes, sizes"
            ),
        ),
        "count": TaskSpec(
            name="count",
            num_classes=max_objects,
            chance=1.0 / max_objects,
            requires=(frozenset({"image"}), frozenset({"audio"})),
            description=f"number of objects minus one (label k means k + 1 objects, "
            f"1..{max_objects}), from the image or the audio",
        ),
        "scene": TaskSpec(
            name="scene",
            num_classes=NUM_SCENE_CLASSES,
            chance=1.0 / NUM_SCENE_CLASSES,
            requires=(frozenset({"image"}), frozenset({"audio"})),
            description=f"the environment {list(SCENE_CLASSES)}, from the image or the audio",
        ),
    }


TASK_SPECS: dict[str, TaskSpec] = task_specs()
"""Task specs of the default :class:`DataConfig` (``max_objects = 3``). ``requires`` never
depends on the config; for class counts under another ``max_objects`` use :func:`task_specs`."""


def can_serve(task: str, modalities: Collection[str]) -> bool:
    """Whether a device holding ``modalities`` can run ``task`` (any of its ``requires`` sets is
    contained in ``modalities``)."""
    if task not in TASK_SPECS:
        raise ValueError(f"task {task!r}: unknown; known tasks are {list(TASK_SPECS)}")
    held = frozenset(modalities)
    return any(needed <= held for needed in TASK_SPECS[task].requires)


# --------------------------------------------------------------------------------------------
# batches


@dataclass(frozen=True, eq=False)
class SceneObjects:
    """The ground-truth objects of ``n`` scenes, in slots ``(n, max_objects)``.

    A scene with ``k`` objects fills slots ``0..k-1``; ``present`` marks them. Absent slots hold
    zeros. Positions are object centres in pixels (x to the right, y downwards), ``radius_px``
    half the object's extent.
    """

    present: np.ndarray  # bool (n, K)
    shape: np.ndarray  # int64 (n, K), indexes SHAPES
    colour: np.ndarray  # int64 (n, K), indexes COLOURS
    size: np.ndarray  # int64 (n, K), indexes SIZES
    x_px: np.ndarray  # float32 (n, K)
    y_px: np.ndarray  # float32 (n, K)
    radius_px: np.ndarray  # float32 (n, K)

    def __len__(self) -> int:
        return int(self.present.shape[0])


@dataclass(frozen=True, eq=False)
class SceneBatch:
    """``n`` scenes in all modalities, with a label for every task.

    Attributes:
        image: ``float32 (n, 3, S, S)`` in [0, 1].
        audio: ``float32 (n, audio_length)``.
        text: ``int64 (n, question_length)`` token ids of :data:`VOCAB`.
        labels: ``{"vqa", "count", "scene"} -> int64 (n,)``; every sample is labelled for every
            task (see :func:`task_specs` for what the classes mean).
        scene_class: ``int64 (n,)`` the environment (equal to ``labels["scene"]``).
        question_type: ``int64 (n,)`` which of :data:`QUESTION_TYPES` the question uses.
        objects: the ground-truth objects (for tests and analysis; not a model input).
    """

    image: np.ndarray
    audio: np.ndarray
    text: np.ndarray
    labels: dict[str, np.ndarray]
    scene_class: np.ndarray
    question_type: np.ndarray
    objects: SceneObjects

    def __post_init__(self) -> None:
        n = len(self.scene_class)
        lengths = {
            "image": len(self.image), "audio": len(self.audio), "text": len(self.text),
            "question_type": len(self.question_type), "objects": len(self.objects),
            **{f"labels[{k!r}]": len(v) for k, v in self.labels.items()},
        }
        bad = {k: v for k, v in lengths.items() if v != n}
        if bad:
            raise ValueError(f"SceneBatch: scene_class has {n} samples but {bad}")

    def __len__(self) -> int:
        return int(self.scene_class.shape[0])

    def subset(self, indices: np.ndarray | Sequence[int]) -> SceneBatch:
        """The samples at ``indices`` (an integer index array or a boolean mask), copied."""
        idx = np.asarray(indices)
        return _map_arrays(self, lambda a: a[idx])

    @staticmethod
    def concat(batches: Sequence[SceneBatch]) -> SceneBatch:
        """The samples of ``batches`` one after the other. All must come from the same config
        (same image size, audio and question length, max_objects and label keys)."""
        if not batches:
            raise ValueError("SceneBatch.concat: needs at least one batch")
        first = batches[0]
        for b in batches[1:]:
            if set(b.labels) != set(first.labels):
                raise ValueError("SceneBatch.concat: batches have different label keys")
            for a, c in ((first.image, b.image), (first.audio, b.audio), (first.text, b.text),
                         (first.objects.present, b.objects.present)):
                if a.shape[1:] != c.shape[1:]:
                    raise ValueError(
                        f"SceneBatch.concat: per-sample shapes differ ({a.shape[1:]} vs "
                        f"{c.shape[1:]}); batches must come from the same DataConfig"
                    )
        return _zip_arrays(batches, lambda arrays: np.concatenate(arrays, axis=0))


def _map_arrays(batch: SceneBatch, fn) -> SceneBatch:  # noqa: ANN001 - private helper
    objects = SceneObjects(
        **{f.name: fn(getattr(batch.objects, f.name)) for f in dataclasses.fields(SceneObjects)}
    )
    return SceneBatch(
        image=fn(batch.image), audio=fn(batch.audio), text=fn(batch.text),
        labels={k: fn(v) for k, v in batch.labels.items()},
        scene_class=fn(batch.scene_class), question_type=fn(batch.question_type),
        objects=objects,
    )


def _zip_arrays(batches: Sequence[SceneBatch], fn) -> SceneBatch:  # noqa: ANN001
    def field_of(name: str) -> np.ndarray:
        return fn([getattr(b, name) for b in batches])

    objects = SceneObjects(
        **{f.name: fn([getattr(b.objects, f.name) for b in batches])
           for f in dataclasses.fields(SceneObjects)}
    )
    return SceneBatch(
        image=field_of("image"), audio=field_of("audio"), text=field_of("text"),
        labels={k: fn([b.labels[k] for b in batches]) for k in batches[0].labels},
        scene_class=field_of("scene_class"), question_type=field_of("question_type"),
        objects=objects,
    )


# --------------------------------------------------------------------------------------------
# the generative model's constants (why each value: see the module docstring)

_BACKGROUND_LEVEL = 0.08  # dark, so every object colour stands out in at least one channel
_SCENE_TINT = np.array(  # added to the background; small and jittered so environments overlap
    [[0.05, 0.05, 0.05], [0.00, 0.08, 0.02], [0.08, 0.06, 0.00], [0.06, 0.02, 0.05],
     [0.00, 0.01, 0.08]], dtype=np.float32,
)
_TINT_JITTER = 0.03
_GRATING_AMPLITUDE = 0.05
_GRATING_CYCLES = 3.0  # cycles across the image
_GRATING_ANGLE_JITTER = 0.3  # rad; environments are pi/5 = 0.63 rad apart
_LAYOUT_OFF_WEIGHT = 0.15  # relative weight of a cell outside the environment's preferred cells
_COUNT_TILT = np.array([0.8, 0.0, 0.4, -0.4, -0.8])  # log-odds slope of the count per scene
_FAVOURED_COLOUR = np.array([0, 1, 3, 2, -1])  # street red, forest green, beach yellow, ...
_FAVOUR_WEIGHT = 2.0
_POSITION_JITTER = 0.1  # of a cell; with the radii below objects stay inside their cell
_RADIUS_OF_SIZE = np.array([0.24, 0.38])  # of a cell, small and large
_SQUARE_HALF_SIDE = 0.85  # of the radius, so a square's area is close to the circle's
_AMPLITUDE_OF_SIZE = np.array([0.5, 1.0])
_TONE_FREQ_MIN = 0.09  # cycles per sample, above the drones
_TONE_FREQ_MAX = 0.45  # below Nyquist (0.5)
_DRONE_FREQ = 0.012 + 0.010 * np.arange(NUM_SCENE_CLASSES)  # cycles per sample
_DRONE_FREQ_JITTER = 0.003
_DRONE_AMPLITUDE = 0.5
_RENDER_CHUNK = 2048  # samples rendered at once: bounds temporaries to a few hundred MB


def noiseless(config: DataConfig) -> bool:
    """Whether this config's scenes have no noise (``noise_std`` 0): since 2026-12-07 its
    noise is drawn all the same (zeros), so everything drawn after it (the splits, the test
    sets, pre-training's data) is what any other noise level draws, and no longer what it
    was; caches keyed before then must not be found for it (the presets have noise)."""
    return bool(config.noise_std == 0)


def centre_pixel_paints(config: DataConfig) -> bool:
    """Whether the rule that an object's centre pixel is its own can change this config's
    images: only where its smallest objects are under 1.5 px in radius (a shape covers its
    centre pixel from there on)."""
    return bool(_RADIUS_OF_SIZE.min() * config.image_size_px / grid_size(config.max_objects)
                < 1.5)


def _layout_weights(g: int) -> np.ndarray:
    """``(NUM_SCENE_CLASSES, g*g)`` cell weights: each environment prefers a cell pattern."""
    rows, cols = np.divmod(np.arange(g * g), g)
    preferred = np.stack([
        rows == g - 1,  # street: objects along the ground
        np.ones(g * g, dtype=bool),  # forest: anywhere
        rows == cols,  # beach: along the diagonal shoreline
        cols == g // 2,  # office: a central column (a shelf)
        rows == 0,  # night: up in the sky
    ])
    return np.where(preferred, 1.0, _LAYOUT_OFF_WEIGHT)


def _draw_categorical(
    rng: np.random.Generator, probs: np.ndarray, size: tuple[int, ...]
) -> np.ndarray:
    """Categorical draws, vectorised: ``probs`` is ``(n, c)`` and ``size`` starts with ``n``."""
    cdf = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    u = rng.random(size)
    cdf = cdf.reshape((cdf.shape[0],) + (1,) * (len(size) - 1) + (cdf.shape[1],))
    draws = (u[..., None] >= cdf).sum(axis=-1)
    return np.minimum(draws, probs.shape[1] - 1).astype(np.int64)


# --------------------------------------------------------------------------------------------
# generation


def generate_scenes(
    n: int,
    config: DataConfig,
    rng: np.random.Generator,
    scene_class: np.ndarray | None = None,
    count_weights: np.ndarray | None = None,
    question_weights: np.ndarray | None = None,
) -> SceneBatch:
    """Generate ``n`` scenes.

    Args:
        n: number of samples (>= 0).
        config: image size, audio and question length, ``max_objects`` and ``noise_std``.
        rng: the only source of randomness.
        scene_class: optional ``(n,)`` environments to condition on (for label-skewed splits);
            drawn uniformly when ``None``.
        count_weights: optional ``(n, max_objects)`` non-negative weights that tilt each
            scene's object-count draw further (multiplied into the environment's count prior);
            a cluster's label skew over the ``count`` task. ``None`` means ones.
        question_weights: optional ``(n, len(QUESTION_TYPES))`` non-negative weights over the
            question templates; each scene's template is drawn among the templates valid for it
            in proportion to these weights (a cluster's skew over question types, and so over
            VQA answers). ``None`` means ones (uniform among the valid templates).

    The noise is drawn last, so the same seed gives the same clean scenes at any
    ``noise_std`` (a noise sweep changes nothing else).

    Raises:
        ValueError: ``n`` or ``scene_class`` is malformed.
    """
    if not is_integer(n) or n < 0:
        raise ValueError(f"generate_scenes: n = {n!r} must be an integer >= 0")
    n = int(n)
    if scene_class is None:
        scene = rng.integers(0, NUM_SCENE_CLASSES, size=n).astype(np.int64)
    else:
        scene = np.asarray(scene_class)
        if scene.shape != (n,) or not np.issubdtype(scene.dtype, np.integer):
            raise ValueError(
                f"generate_scenes: scene_class must be an integer array of shape ({n},), "
                f"got {scene.dtype} {scene.shape}"
            )
        if n and (scene.min() < 0 or scene.max() >= NUM_SCENE_CLASSES):
            raise ValueError(
                f"generate_scenes: scene_class values must lie in [0, {NUM_SCENE_CLASSES})"
            )
        scene = scene.astype(np.int64, copy=True)

    count_weights = _check_weights("count_weights", count_weights, (n, config.max_objects))
    question_weights = _check_weights(
        "question_weights", question_weights, (n, len(QUESTION_TYPES))
    )
    objects = _draw_objects(n, config, rng, scene, count_weights)
    text, vqa_label, question_type = _draw_questions(objects, config, rng, question_weights)
    # every parameter of the clean signals first, the noise last: the same seed then gives the
    # same scenes at any noise_std, so noise is the only thing a noise sweep changes
    look = _draw_look(scene, objects, rng)
    image = _render_images(objects, look, config, rng)
    audio = _render_audio(objects, look, config, rng)
    count = objects.present.sum(axis=1).astype(np.int64)
    labels = {"vqa": vqa_label, "count": count - 1, "scene": scene.copy()}
    assert set(labels) == set(TASKS)
    return SceneBatch(
        image=image, audio=audio, text=text, labels=labels, scene_class=scene,
        question_type=question_type, objects=objects,
    )


def _check_weights(
    name: str, weights: np.ndarray | None, shape: tuple[int, int]
) -> np.ndarray | None:
    """``weights`` as a float array of ``shape`` (or ``None``); raises ``ValueError`` naming the
    argument when it has another shape, a negative or non-finite entry, or an all-zero row."""
    if weights is None:
        return None
    array = np.asarray(weights, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"generate_scenes: {name} must have shape {shape}, got {array.shape}")
    if not np.isfinite(array).all() or (array < 0).any():
        raise ValueError(f"generate_scenes: {name} must be finite and >= 0")
    if shape[0] and (array.sum(axis=1) <= 0).any():
        raise ValueError(f"generate_scenes: every row of {name} needs a positive entry")
    return array


def _draw_objects(
    n: int, config: DataConfig, rng: np.random.Generator, scene: np.ndarray,
    count_weights: np.ndarray | None = None,
) -> SceneObjects:
    """Counts, attributes and non-overlapping positions of every scene's objects."""
    k_max = config.max_objects
    g = grid_size(k_max)
    cell = config.image_size_px / g

    # count in 1..k_max, tilted by environment
    ks = np.arange(k_max)
    logits = _COUNT_TILT[scene][:, None] * (ks / max(k_max - 1, 1))[None, :]
    prior = np.exp(logits)
    if count_weights is not None:
        prior = prior * count_weights
    count = _draw_categorical(rng, prior, (n,)) + 1
    present = ks[None, :] < count[:, None]

    shape = rng.integers(0, len(SHAPES), size=(n, k_max))
    colour_w = np.ones((NUM_SCENE_CLASSES, len(COLOURS)))
    for c, fav in enumerate(_FAVOURED_COLOUR):
        if fav >= 0:
            colour_w[c, fav] = _FAVOUR_WEIGHT
    colour = _draw_categorical(rng, colour_w[scene], (n, k_max))
    size = rng.integers(0, len(SIZES), size=(n, k_max))

    # distinct cells by the Gumbel top-k trick: sampling without replacement, proportional to the
    # environment's layout weights, for all scenes at once
    keys = np.log(_layout_weights(g))[scene] + rng.gumbel(size=(n, g * g))
    cells = np.argsort(-keys, axis=1)[:, :k_max]
    row, col = np.divmod(cells, g)
    jitter = rng.uniform(-_POSITION_JITTER, _POSITION_JITTER, size=(2, n, k_max))
    x = (col + 0.5 + jitter[0]) * cell
    y = (row + 0.5 + jitter[1]) * cell
    radius = _RADIUS_OF_SIZE[size] * cell

    def zero_absent(a: np.ndarray, dtype: type) -> np.ndarray:
        return np.where(present, a, 0).astype(dtype)

    return SceneObjects(
        present=present,
        shape=zero_absent(shape, np.int64),
        colour=zero_absent(colour, np.int64),
        size=zero_absent(size, np.int64),
        x_px=zero_absent(x, np.float32),
        y_px=zero_absent(y, np.float32),
        radius_px=zero_absent(radius, np.float32),
    )


def _draw_questions(
    objects: SceneObjects, config: DataConfig, rng: np.random.Generator,
    question_weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tokens, VQA answer and template of one question per scene.

    A *target* object is picked per scene; templates that refer to one object ask about the
    target and are allowed only where the description picks it out uniquely.
    """
    present, shape, colour, size = objects.present, objects.shape, objects.colour, objects.size
    # declared so that numpy's stubs see an int ``size`` and give arrays, not scalars, back
    n: int
    k_max: int
    n, k_max = present.shape
    rows = np.arange(n)
    count = present.sum(axis=1)
    target = np.minimum((rng.random(n) * count).astype(np.int64), np.maximum(count - 1, 0))
    t_shape, t_colour, t_size = shape[rows, target], colour[rows, target], size[rows, target]

    def unique(match: np.ndarray) -> np.ndarray:
        return (match & present).sum(axis=1) == 1

    same_colour = colour == t_colour[:, None]
    same_shape = shape == t_shape[:, None]
    same_size = size == t_size[:, None]
    valid = np.stack([
        np.ones(n, dtype=bool),
        np.ones(n, dtype=bool),
        np.ones(n, dtype=bool),
        unique(same_size & same_shape),
        unique(same_colour),
        unique(same_colour & same_shape),
    ], axis=1)
    # weighted sampling among the valid templates by the largest key u^(1/w) (Efraimidis and
    # Spirakis); with equal weights the key is u itself, a uniform draw among the valid ones
    keys = rng.random(valid.shape)
    if question_weights is not None:
        with np.errstate(divide="ignore"):
            keys = np.where(question_weights > 0, keys ** (1.0 / question_weights), 0.0)
    question_type = np.argmax(np.where(valid, keys, -1.0), axis=1)

    # the attributes the counting and existence questions mention: random, except that half of
    # the existence questions ask about the target so that "yes" is not rare
    ask_colour = rng.integers(0, len(COLOURS), size=n)
    ask_shape = rng.integers(0, len(SHAPES), size=n)
    about_target = rng.random(n) < 0.5
    ex_colour = np.where(about_target, t_colour, ask_colour)
    ex_shape = np.where(about_target, t_shape, ask_shape)

    off = _answer_offsets(k_max)
    n_colour = ((colour == ask_colour[:, None]) & present).sum(axis=1)
    n_shape = ((shape == ask_shape[:, None]) & present).sum(axis=1)
    exists = ((colour == ex_colour[:, None]) & (shape == ex_shape[:, None]) & present).any(axis=1)
    answers = np.stack([
        off["count"] + n_colour,
        off["count"] + n_shape,
        off["yesno"] + exists.astype(np.int64),
        off["colour"] + t_colour,
        off["shape"] + t_shape,
        off["size"] + t_size,
    ], axis=1)
    vqa = answers[rows, question_type].astype(np.int64)

    # one row of MIN_QUESTION_LENGTH tokens per template, slot words filled per sample
    def word(name: str) -> np.ndarray:
        return np.full(n, TOKEN_ID[name])

    cls, pad = word("<cls>"), word("<pad>")
    ask_colour_w, ask_shape_w = ask_colour + _COLOUR_WORD0, ask_shape + _SHAPE_WORD0
    ex_colour_w, ex_shape_w = ex_colour + _COLOUR_WORD0, ex_shape + _SHAPE_WORD0
    t_colour_w, t_shape_w, t_size_w = (
        t_colour + _COLOUR_WORD0, t_shape + _SHAPE_WORD0, t_size + _SIZE_WORD0
    )
    templates = np.stack([
        np.stack([cls, word("how"), word("many"), ask_colour_w, word("objects"), pad, pad], 1),
        np.stack([cls, word("how"), word("many"), ask_shape_w, word("objects"), pad, pad], 1),
        np.stack([cls, word("is"), word("there"), word("a"), ex_colour_w, ex_shape_w, pad], 1),
        np.stack([cls, word("what"), word("colour"), word("is"), word("the"), t_size_w,
                  t_shape_w], 1),
        np.stack([cls, word("what"), word("shape"), word("is"), word("the"), t_colour_w,
                  word("object")], 1),
        np.stack([cls, word("what"), word("size"), word("is"), word("the"), t_colour_w,
                  t_shape_w], 1),
    ], axis=1)  # (n, num_templates, MIN_QUESTION_LENGTH)
    text = np.full((n, config.question_length), PAD_ID, dtype=np.int64)
    text[:, :MIN_QUESTION_LENGTH] = templates[rows, question_type]
    return text, vqa, question_type.astype(np.int64)


def decode_question(tokens: np.ndarray) -> str:
    """The words of one question's token ids, padding dropped (for debugging and docs)."""
    return " ".join(VOCAB[int(i)] for i in tokens if int(i) not in (PAD_ID, CLS_ID))


@functools.cache
def _normal_quantiles() -> np.ndarray:
    """The standard normal at the mid-points of 2^16 equiprobable bins (see :func:`_gaussian`)."""
    inv_cdf = NormalDist().inv_cdf
    levels = 1 << 16
    return np.array([inv_cdf((i + 0.5) / levels) for i in range(levels)], dtype=np.float32)


def _gaussian(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    """``float32`` Gaussian noise of standard deviation ``std``, drawn fast.

    Pixel noise is the bulk of the random numbers (3 x 32 x 32 per image), and numpy's ziggurat
    normal costs about 3x as much as a 16-bit uniform plus a table look-up. So the noise is the
    normal quantised to 65,536 equiprobable levels (inverse-CDF of a uniform 16-bit integer):
    its moments match the Gaussian's to about 1e-4 and its tails are cut at 4.3 sigma, which no
    model trained on it can tell apart.
    """
    table = _normal_quantiles() * np.float32(std)
    return np.take(table, rng.integers(0, 1 << 16, size=shape, dtype=np.uint16))


@dataclass(frozen=True, eq=False)
class _Look:
    """Per-sample parameters of the clean image background and audio (objects aside)."""

    tint: np.ndarray  # (n, 3) background tint
    angle: np.ndarray  # (n,) grating orientation, rad
    phase: np.ndarray  # (n,) grating phase, rad
    drone_freq: np.ndarray  # (n,) cycles per sample
    drone_phase: np.ndarray  # (n,) rad
    tone_phase: np.ndarray  # (n, K) rad


def _draw_look(scene: np.ndarray, objects: SceneObjects, rng: np.random.Generator) -> _Look:
    """Draw the environment's jittered cues (tint, grating, drone) and the tones' phases."""
    # declared so that numpy's stubs see an int ``size`` and give arrays, not scalars, back
    n: int
    k_max: int
    n, k_max = objects.present.shape
    return _Look(
        tint=_SCENE_TINT[scene] + _TINT_JITTER * rng.standard_normal((n, 3)).astype(np.float32),
        angle=scene * (np.pi / NUM_SCENE_CLASSES) + _GRATING_ANGLE_JITTER * rng.standard_normal(n),
        phase=rng.uniform(0.0, 2.0 * np.pi, size=n),
        drone_freq=_DRONE_FREQ[scene] + _DRONE_FREQ_JITTER * rng.standard_normal(n),
        drone_phase=rng.uniform(0.0, 2.0 * np.pi, size=n),
        tone_phase=rng.uniform(0.0, 2.0 * np.pi, size=(n, k_max)),
    )


def _render_images(
    objects: SceneObjects, look: _Look, config: DataConfig, rng: np.random.Generator
) -> np.ndarray:
    """Backgrounds, objects and noise (from ``rng``), rendered chunk by chunk with broadcast
    masks."""
    n, k_max = objects.present.shape
    s = config.image_size_px
    tint, angle, phase = look.tint, look.angle, look.phase
    # per sample and channel, the value of each "owner": 0 is the background level, j + 1 is the
    # colour of object j; a flat table so that painting is one 1-D take per channel
    palette = np.concatenate(
        [(_BACKGROUND_LEVEL + tint)[:, None, :], COLOUR_RGB[objects.colour]], axis=1
    ).astype(np.float32)  # (n, K + 1, 3)
    centres = np.arange(s, dtype=np.float32) + np.float32(0.5)  # pixel centres
    wave = np.float32(2.0 * np.pi * _GRATING_CYCLES / s)
    image = np.empty((n, 3, s, s), dtype=np.float32)
    for start in range(0, n, _RENDER_CHUNK):
        sl = slice(start, min(start + _RENDER_CHUNK, n))
        m = sl.stop - sl.start
        # which object (slot + 1) covers each pixel; objects never overlap. Each slot's mask is
        # computed only for the samples whose object there has that shape, by broadcasting a
        # per-column (dx) and a per-row (dy) offset.
        owner = np.zeros((m, s, s), dtype=np.intp)
        for j in range(k_max):
            dx = centres[None, :] - objects.x_px[sl, j][:, None]  # (m, S) along columns
            dy = centres[None, :] - objects.y_px[sl, j][:, None]  # (m, S) along rows
            r = objects.radius_px[sl, j][:, None]
            kind = np.where(objects.present[sl, j], objects.shape[sl, j], -1)
            for shape_id in range(len(SHAPES)):
                rows = np.flatnonzero(kind == shape_id)
                if rows.size == 0:
                    continue
                inside = _shape_mask(shape_id, dx[rows], dy[rows], r[rows])
                owned = owner[rows]
                owned[inside] = j + 1
                owner[rows] = owned
            # the pixel holding the centre is always the object's, so that every object counted
            # is seen (from a radius of 1.5 px on its shape covers that pixel anyway)
            here = np.flatnonzero(objects.present[sl, j])
            column = np.clip(objects.x_px[sl, j][here].astype(np.intp), 0, s - 1)
            row = np.clip(objects.y_px[sl, j][here].astype(np.intp), 0, s - 1)
            owner[here, row, column] = j + 1
        background = owner == 0
        # a faint oriented grating on the background only
        phase_x = np.cos(angle[sl]).astype(np.float32)[:, None] * centres[None, :] * wave
        phase_y = np.sin(angle[sl]).astype(np.float32)[:, None] * centres[None, :] * wave
        grating = np.sin(phase_x[:, None, :] + phase_y[:, :, None]
                         + phase[sl].astype(np.float32)[:, None, None])
        grating *= background
        grating *= np.float32(_GRATING_AMPLITUDE)
        flat_owner = owner + (np.arange(m) * (k_max + 1))[:, None, None]
        for ch in range(3):
            plane = np.take(palette[sl, :, ch].ravel(), flat_owner)
            plane += grating
            # drawn at noise_std 0 too: the draws after it (the splits) stay those of any
            # other noise level
            plane += _gaussian(rng, (m, s, s), config.noise_std)
            np.clip(plane, 0.0, 1.0, out=image[sl, ch])
    return image


def _shape_mask(shape_id: int, dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``(m, S, S)`` pixels inside a shape, from offsets ``dx`` along columns and ``dy`` along
    rows ``(m, S)`` and radii ``r`` ``(m, 1)``."""
    if SHAPES[shape_id] == "square":
        half = np.float32(_SQUARE_HALF_SIDE) * r
        return (np.abs(dx) <= half)[:, None, :] & (np.abs(dy) <= half)[:, :, None]
    if SHAPES[shape_id] == "circle":
        return (dx**2)[:, None, :] + (dy**2)[:, :, None] <= (r**2)[:, :, None]
    # an upward triangle: apex at the top, half-width growing linearly to r at the bottom
    return ((np.abs(dx)[:, None, :] <= 0.5 * (dy + r)[:, :, None])
            & (np.abs(dy) <= r)[:, :, None])


def _render_audio(
    objects: SceneObjects, look: _Look, config: DataConfig, rng: np.random.Generator
) -> np.ndarray:
    """Tone bursts (one per object) over an environment drone, plus noise (from ``rng``)."""
    n, k_max = objects.present.shape
    length = config.audio_length
    g = grid_size(k_max)
    cell = config.image_size_px / g
    t = np.arange(length, dtype=np.float32)
    two_pi = np.float32(2.0 * np.pi)

    drone_freq, drone_phase = look.drone_freq, look.drone_phase
    audio = np.sin(two_pi * drone_freq.astype(np.float32)[:, None] * t
                   + drone_phase.astype(np.float32)[:, None])
    audio *= np.float32(_DRONE_AMPLITUDE)

    # frequency index (row, shape) keeps objects in one column apart in frequency
    row = np.clip((objects.y_px / cell).astype(np.int64), 0, g - 1)
    index = row * len(SHAPES) + objects.shape
    steps = max(g * len(SHAPES) - 1, 1)
    freq = (_TONE_FREQ_MIN + index * ((_TONE_FREQ_MAX - _TONE_FREQ_MIN) / steps)).astype(
        np.float32
    )
    centre = (objects.x_px / config.image_size_px * length).astype(np.float32)
    inv_width = np.float32(4.0 * g / length)
    amplitude = np.where(objects.present, _AMPLITUDE_OF_SIZE[objects.size], 0.0).astype(
        np.float32
    )
    tone_phase = look.tone_phase.astype(np.float32)
    for j in range(k_max):  # a loop over object slots, vectorised over samples
        z = (t[None, :] - centre[:, j, None]) * inv_width
        burst = np.exp(np.float32(-0.5) * z * z)
        burst *= amplitude[:, j, None]
        burst *= np.sin(two_pi * freq[:, j, None] * t + tone_phase[:, j, None])
        audio += burst
    audio += _gaussian(rng, audio.shape, AUDIO_NOISE_GAIN * config.noise_std)  # (as images')
    return audio
