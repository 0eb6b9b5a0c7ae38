"""Building the model: the pre-training cache, checkpoints, and learnability."""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel

import hffm_env.models.pretrain as pretrain
from hffm_env.data import generate_scenes, task_specs
from hffm_env.models import build_model, cache_key, cache_path, masked_task_loss


@pytest.fixture
def configs(tiny_configs):
    return tiny_configs


def _fail(*args, **kwargs):
    raise AssertionError("pre-training ran although the cache should have been used")


def test_cache_is_reused_and_rebuilt_when_corrupt(private_cache, monkeypatch, configs):
    TINY_MODEL, TINY_DATA = configs
    first = build_model(TINY_MODEL, TINY_DATA, seed=0, progress=False)
    path = cache_path(TINY_MODEL, TINY_DATA)
    assert path.parent == private_cache and path.exists()
    assert first.pretrain_info["cached"] is False
    assert not list(private_cache.glob(".*.tmp"))
    # readable to whoever the umask lets read it (a temporary file's 0600 made a cache
    # shared by several users unreadable to all but its writer); pytest's umask is the
    # process's, commonly 022
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask

    original = pretrain.pretrain_model
    monkeypatch.setattr(pretrain, "pretrain_model", _fail)
    second = build_model(TINY_MODEL, TINY_DATA, seed=0, progress=False)
    assert second.pretrain_info["cached"] is True
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    # another seed: same frozen parts, other fresh heads
    third = build_model(TINY_MODEL, TINY_DATA, seed=1, progress=False)
    torch.testing.assert_close(third.pretrained_state(), first.pretrained_state())
    torch.testing.assert_close(third.query_token, first.query_token)
    assert not torch.equal(third.heads["vqa"].weight, first.heads["vqa"].weight)
    monkeypatch.setattr(pretrain, "pretrain_model", original)

    path.write_bytes(b"not a torch file")
    with pytest.warns(RuntimeWarning, match="unusable") as said:
        rebuilt = build_model(TINY_MODEL, TINY_DATA, seed=0, progress=False)
    assert {w.filename for w in said} == {__file__}  # the caller's line
    assert rebuilt.pretrain_info["cached"] is False
    torch.testing.assert_close(rebuilt.query_token, first.query_token)  # deterministic
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert build_model(TINY_MODEL, TINY_DATA, progress=False).pretrain_info["cached"]


def test_building_the_cache_leaves_the_callers_torch_stream_alone(configs):
    """The probes' layers drew their (overwritten) initial weights from the global stream:
    a caller's seeded draws after building an env differed with and without a cache hit."""
    TINY_MODEL, TINY_DATA = configs
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    built = build_model(TINY_MODEL, TINY_DATA, progress=False)
    assert not built.pretrain_info["cached"]  # (this test's own, empty cache: pre-trained)
    torch.testing.assert_close(torch.rand(3), expected)


@pytest.mark.parametrize("caller_threads", [1, 2, 3])
def test_pretraining_runs_on_fixed_threads_whatever_the_caller_set(caller_threads, monkeypatch,
                                                                  tiny_model):
    """The cached weights must not depend on the thread count of the process that built them:
    pre-training always runs on PRETRAIN_THREADS, and the caller's setting comes back."""
    seen = []
    monkeypatch.setattr(pretrain, "_pretrain", lambda *a, **k: seen.append(
        torch.get_num_threads()) or {})
    before = torch.get_num_threads()
    torch.set_num_threads(caller_threads)
    try:
        pretrain.pretrain_model(tiny_model, progress=False)
        assert seen == [pretrain.PRETRAIN_THREADS] and torch.get_num_threads() == caller_threads
    finally:
        torch.set_num_threads(before)


def test_truncated_cache_is_rebuilt(private_cache, configs):
    """A truncated cache file is pre-trained again and saved whole (the test checked only
    the warning): the next build loads it, with the weights of the first."""
    TINY_MODEL, TINY_DATA = configs
    first = build_model(TINY_MODEL, TINY_DATA, progress=False)
    path = cache_path(TINY_MODEL, TINY_DATA)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.warns(RuntimeWarning, match="unusable"):
        rebuilt = build_model(TINY_MODEL, TINY_DATA, progress=False)
    assert rebuilt.pretrain_info["cached"] is False and path.stat().st_size == len(data)
    loaded = build_model(TINY_MODEL, TINY_DATA, progress=False)
    assert loaded.pretrain_info["cached"] is True
    for (name, a), (_, b) in zip(first.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(("edit", "said"), [
    (lambda r: r.update(info="x"), "info: 'x' is not a mapping"),
    (lambda r: r["info"].update(seconds="x"), "info: seconds = 'x' is not a number"),
    (lambda r: r["state"].update({k: v * float("nan") for k, v in r["state"].items()}),
     "weights not finite"),
])
def test_a_cache_record_its_checksum_does_not_cover_is_rebuilt(private_cache, configs, edit,
                                                               said):
    """The checksum covers the weights as written, not the info: an edited info crashed
    `hffm describe` and the env, and weights of NaN with a matching checksum were used."""
    TINY_MODEL, TINY_DATA = configs
    build_model(TINY_MODEL, TINY_DATA, progress=False)
    path = cache_path(TINY_MODEL, TINY_DATA)
    record = torch.load(path, weights_only=True)
    edit(record)
    record["checksum"] = pretrain._checksum(record["state"])
    torch.save(record, path)
    assert pretrain.cached_pretrain_info(TINY_MODEL, TINY_DATA) is None  # not reported as built
    with pytest.warns(RuntimeWarning, match=f"unusable.*{said}"):
        rebuilt = build_model(TINY_MODEL, TINY_DATA, progress=False)
    assert rebuilt.pretrain_info["cached"] is False


def test_cache_key_depends_on_what_pretraining_sees(configs):
    TINY_MODEL, TINY_DATA = configs
    base = cache_key(TINY_MODEL, TINY_DATA)
    assert cache_key(dataclasses.replace(TINY_MODEL, lora_rank=8), TINY_DATA) == base
    assert cache_key(dataclasses.replace(TINY_MODEL, precision_bits=16), TINY_DATA) == base
    # a float field spelt as an integer is the same config (it pre-trained the same weights
    # again under another key)
    assert cache_key(TINY_MODEL, dataclasses.replace(TINY_DATA, noise_std=0)) == cache_key(
        TINY_MODEL, dataclasses.replace(TINY_DATA, noise_std=0.0))
    assert cache_key(TINY_MODEL, dataclasses.replace(TINY_DATA, samples_per_device=10)) == base
    assert cache_key(dataclasses.replace(TINY_MODEL, hidden_size=32), TINY_DATA) != base
    assert cache_key(TINY_MODEL, dataclasses.replace(TINY_DATA, noise_std=0.2)) != base
    # noiseless scenes' pretext data is drawn otherwise since 2026-12-07 (the noise is drawn
    # at std 0 too): their key moved; others' did not
    import hffm_env.models.pretrain as pretrain

    clean = dataclasses.replace(TINY_DATA, noise_std=0.0)
    keys = (cache_key(TINY_MODEL, clean), base)
    original = pretrain.noiseless
    try:
        pretrain.noiseless = lambda config: False  # as the key was before
        assert cache_key(TINY_MODEL, clean) != keys[0] and cache_key(TINY_MODEL, TINY_DATA) \
            == keys[1]
    finally:
        pretrain.noiseless = original


def _save_tiny_bert(folder) -> BertModel:
    config = BertConfig(vocab_size=30, hidden_size=24, num_hidden_layers=1, num_attention_heads=3,
                        intermediate_size=40, max_position_embeddings=64)
    torch.manual_seed(0)
    bert = BertModel(config)
    bert.save_pretrained(folder)
    return bert


def test_pretrained_path_loads_local_checkpoint(tmp_path, monkeypatch, configs):
    TINY_MODEL, TINY_DATA = configs
    saved = _save_tiny_bert(tmp_path / "bert")
    config = dataclasses.replace(TINY_MODEL, pretrained_path=str(tmp_path / "bert"))
    model = build_model(config, TINY_DATA, progress=False)
    assert model.hidden_size == 24
    layer = model.backbone.encoder.layer[0].attention.self
    torch.testing.assert_close(layer.query.base_layer.weight,
                               saved.encoder.layer[0].attention.self.query.weight)
    torch.testing.assert_close(model.backbone.embeddings.position_embeddings.weight,
                               saved.embeddings.position_embeddings.weight)
    assert model.pretrain_info["backbone"] == "pretrained_path"
    n = 3
    batch = generate_scenes(n, TINY_DATA, np.random.default_rng(0))
    mask = torch.ones(n, 3, dtype=torch.bool)
    logits, _ = model(model.extract_features(batch), mask, mask)
    assert logits.shape == (n, 3, model.max_classes)
    monkeypatch.setattr(pretrain, "pretrain_model", _fail)
    assert build_model(config, TINY_DATA, progress=False).pretrain_info["cached"]


def test_a_checkpoint_is_keyed_and_sized_by_its_own_backbone(tmp_path, configs, monkeypatch):
    """With pretrained_path the config's backbone sizes are not used: changing them keeps the
    cache key (it pre-trained the same weights again) and the memory estimate is the
    checkpoint's; a relative path is taken from the folder the config was made in."""
    from hffm_env.config import estimate_memory_bytes, load_scenario

    TINY_MODEL, TINY_DATA = configs  # noqa: N806
    _save_tiny_bert(tmp_path / "bert")  # (hidden 24, 1 layer, intermediate 40)
    monkeypatch.chdir(tmp_path)
    config = dataclasses.replace(TINY_MODEL, pretrained_path="bert")
    assert config.pretrained_path == str(tmp_path.resolve() / "bert")
    monkeypatch.chdir("/")
    base = cache_key(config, TINY_DATA)
    for sizes in ({"hidden_size": 32}, {"num_layers": 3}, {"num_heads": 2},
                  {"intermediate_size": 256}):
        assert cache_key(dataclasses.replace(config, **sizes), TINY_DATA) == base, sizes
    assert cache_key(dataclasses.replace(config, pretrain_steps=7), TINY_DATA) != base
    big = dataclasses.replace(config, hidden_size=4096, num_layers=64, intermediate_size=4096)
    scenario = load_scenario("small")
    parts = estimate_memory_bytes(dataclasses.replace(scenario, model=big), "train")
    assert parts["model"] == 1 * (4 * 24**2 + 2 * 24 * 40) * 16.0
    assert parts == estimate_memory_bytes(dataclasses.replace(scenario, model=config), "train")


def test_a_checkpoint_prices_modules_at_its_own_sizes_and_must_be_a_whole_bert(tmp_path,
                                                                              configs):
    """Cost fidelity (no weights loaded) and train fidelity see the same module sizes; another
    architecture, or a checkpoint that lacks the backbone's weights, is refused."""
    from transformers import GPT2Config, GPT2Model

    from hffm_env.models import M3TModel, ModuleInventory, backbone_shape

    TINY_MODEL, TINY_DATA = configs  # noqa: N806
    _save_tiny_bert(tmp_path / "bert")
    config = dataclasses.replace(TINY_MODEL, pretrained_path=str(tmp_path / "bert"))
    priced = ModuleInventory(M3TModel(config, TINY_DATA, backbone=backbone_shape(config)))
    trained = ModuleInventory(build_model(config, TINY_DATA, progress=False))
    assert [s.size_bits for s in priced.specs] == [s.size_bits for s in trained.specs]
    assert priced.specs != ModuleInventory(M3TModel(TINY_MODEL, TINY_DATA)).specs
    GPT2Model(GPT2Config(n_embd=24, n_layer=1, n_head=2)).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ValueError, match="a 'gpt2' checkpoint"):
        pretrain.load_backbone(tmp_path / "gpt2")
    partial = tmp_path / "partial"
    BertModel(BertConfig(hidden_size=24, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=48)).save_pretrained(partial)
    config_file = partial / "config.json"
    config_file.write_text(config_file.read_text().replace('"num_hidden_layers": 2',
                                                           '"num_hidden_layers": 3'))
    with pytest.raises(ValueError, match="lacks .* of the backbone's weights"):
        pretrain.load_backbone(partial)


def test_a_damaged_checkpoint_is_refused_naming_the_setting(tmp_path):
    """A truncated weights file, a config that is not JSON, or NaN weights (which would train
    nothing, and blame the learning rate) are refused at load, naming model.pretrained_path."""
    from safetensors.torch import load_file, save_file

    for name in ("truncated", "bad_config", "nan"):
        _save_tiny_bert(tmp_path / name)
    weights = tmp_path / "truncated" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:2000])
    with pytest.raises(ValueError, match=r"pretrained_path = .*truncated': its weights cannot "
                                         r"be read \(.*header"):
        pretrain.load_backbone(tmp_path / "truncated")
    (tmp_path / "bad_config" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"pretrained_path = .*bad_config': its config.json"):
        pretrain.load_backbone(tmp_path / "bad_config")
    nan_weights = tmp_path / "nan" / "model.safetensors"
    state = load_file(nan_weights)
    state["encoder.layer.0.attention.self.query.weight"][0, 0] = float("nan")
    save_file(state, nan_weights, metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"1 of the checkpoint's weights hold NaN .*"
                                         r"encoder.layer.0.attention.self.query.weight"):
        pretrain.load_backbone(tmp_path / "nan")


def test_a_half_precision_or_odd_config_checkpoint_loads_or_is_named(tmp_path, configs):
    """A float16 checkpoint loaded as float16 and failed deep in torch ("mixed dtype"); a
    config.json that is a JSON list gave a TypeError traceback, type_vocab_size 0 an
    IndexError in the forward pass."""
    TINY_MODEL, TINY_DATA = configs  # noqa: N806
    _save_tiny_bert(tmp_path / "half").half().save_pretrained(tmp_path / "half")
    config = dataclasses.replace(TINY_MODEL, pretrained_path=str(tmp_path / "half"))
    model = build_model(config, TINY_DATA, progress=False)
    assert {p.dtype for p in model.backbone.parameters()} == {torch.float32}
    batch = generate_scenes(2, TINY_DATA, np.random.default_rng(0))
    mask = torch.ones(2, 3, dtype=torch.bool)
    logits, _ = model(model.extract_features(batch), mask, mask)
    assert torch.isfinite(logits).all()
    for name, text in (("listed", "[1, 2]"), ("typeless", None)):
        _save_tiny_bert(tmp_path / name)
        config_file = tmp_path / name / "config.json"
        if text is None:
            text = config_file.read_text().replace('"type_vocab_size": 2',
                                                   '"type_vocab_size": 0')
        config_file.write_text(text)
    with pytest.raises(ValueError, match=r"listed': its config.json cannot be read"):
        pretrain.load_backbone(tmp_path / "listed")
    with pytest.raises(ValueError, match=r"type_vocab_size = 0; a BERT backbone has at least"):
        pretrain.load_backbone(tmp_path / "typeless")


def test_building_leaves_a_callers_cuda_stream_alone(monkeypatch, configs):
    # torch.manual_seed inside fork_rng(devices=[]) reseeded every CUDA device to the model's
    # seed, which fork_rng does not restore
    from hffm_env.models import M3TModel

    TINY_MODEL, TINY_DATA = configs  # noqa: N806
    reseeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: reseeded.append(seed))
    M3TModel(TINY_MODEL, TINY_DATA, seed=3)
    assert reseeded == []


def test_a_device_this_machine_lacks_is_refused_before_pre_training(monkeypatch, configs):
    # it pre-trained in full, then failed moving the model ("Torch not compiled with CUDA")
    from hffm_env.devices import device_problem

    if device_problem("cuda") is None:
        pytest.skip("this machine has CUDA")
    TINY_MODEL, TINY_DATA = configs  # noqa: N806
    monkeypatch.setattr(pretrain, "pretrain_model", _fail)
    with pytest.raises(ValueError, match="device = 'cuda': this machine has no CUDA device"):
        build_model(TINY_MODEL, TINY_DATA, device="cuda", progress=False)


def test_hffm_pretrain_checks_memory_before_building(monkeypatch, capsys):
    # describe refused a model this machine could not hold; pretrain started allocating it
    import hffm_env.config as config_module
    from hffm_env.cli import main as cli_main

    def huge(config, fidelity="train", trainable=None):
        return {"libraries": 0, "model": 2**50, "total": 2**50}

    monkeypatch.setattr(config_module, "estimate_memory_bytes", huge)
    import hffm_env.models

    monkeypatch.setattr(hffm_env.models, "build_model", _fail)  # (what the command imports)
    assert cli_main(["pretrain", "--scenario", "small"]) == 2
    assert "needs about 1048576.0 GiB of memory" in capsys.readouterr().err


def test_a_feature_batch_size_below_one_is_refused(configs):
    # -4 returned features of no sample, 0 a bare range() error
    from hffm_env.models import M3TModel

    TINY_MODEL, TINY_DATA = configs  # noqa: N806
    model = M3TModel(TINY_MODEL, TINY_DATA)
    batch = generate_scenes(3, TINY_DATA, np.random.default_rng(0))
    for size in (-4, 0, 1.5):
        with pytest.raises(ValueError, match=f"batch_size = {size}: must be an integer >= 1"):
            model.extract_features(batch, batch_size=size)
    assert all(f.shape[0] == 3 for f in model.extract_features(batch, batch_size=2).values())


def test_missing_pretrained_path_errors_clearly(tmp_path, configs):
    TINY_MODEL, TINY_DATA = configs
    config = dataclasses.replace(TINY_MODEL, pretrained_path=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="pretrained_path.*nowhere"):
        build_model(config, TINY_DATA, progress=False)


@pytest.mark.slow
def test_fine_tuning_learns_count_and_scene(tmp_path_factory, configs):
    TINY_MODEL, TINY_DATA = configs
    """A looser learnability check: a small model, briefly pre-trained on the pretext (which
    holds no downstream label), then a few hundred steps of fine-tuning of only the trainable
    modules beat chance clearly on count and scene."""
    model_config = dataclasses.replace(
        TINY_MODEL, hidden_size=32, num_heads=4, intermediate_size=64, feature_dim=16,
        pretrain_steps=150, pretrain_batch_size=32, pretrain_lr=3e-3,
    )
    data_config = dataclasses.replace(TINY_DATA, pretrain_samples=600)
    model = build_model(model_config, data_config, cache_dir=tmp_path_factory.mktemp("learn"),
                        progress=False)
    rng = np.random.default_rng(11)
    train, test = generate_scenes(600, data_config, rng), generate_scenes(400, data_config, rng)
    f_train, f_test = model.extract_features(train), model.extract_features(test)
    y_train, y_test = model.labels_of(train), model.labels_of(test)
    ones = torch.ones(600, 3, dtype=torch.bool)
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=5e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        idx = torch.randint(600, (32,), generator=gen)
        logits, balance = model({m: f[idx] for m, f in f_train.items()}, ones[idx], ones[idx])
        loss = masked_task_loss(logits, y_train[idx], ones[idx]) + balance
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        logits, _ = model(f_test, ones[:400], ones[:400])
    accuracy = (logits.argmax(-1) == y_test).float().mean(0)
    specs = task_specs(data_config)
    for task in ("count", "scene"):
        k = model.tasks.index(task)
        assert accuracy[k] > 1.3 * specs[task].chance, (task, float(accuracy[k]))


def test_pretext_holds_no_downstream_label_and_probes_are_reported(tiny_model):
    batch = generate_scenes(64, tiny_model.data_config, np.random.default_rng(0))
    targets = pretrain._pretext_targets(batch, tiny_model.data_config.max_objects)
    assert not {"scene", "count", "vqa"} & set(targets)
    # the cues are functions of the inputs: the audio cue is the drone's FFT bin
    spectrum = np.abs(np.fft.rfft(batch.audio, axis=1))[:, 1:]
    np.testing.assert_array_equal(targets["cue_audio_low"][0],
                                  spectrum[:, : targets["cue_audio_low"][1]].argmax(1))
    probes = tiny_model.pretrain_info["downstream_probe_accuracy"]
    assert {"fused/scene", "fused/count", "fused/vqa", "image/scene", "audio/count"} <= set(probes)
    assert all(0.0 <= v <= 1.0 for v in probes.values())
    assert "image/vqa" not in probes  # vqa needs the question


def test_unwritable_cache_folder_falls_back_before_pretraining(tmp_path, configs):
    TINY_MODEL, TINY_DATA = configs
    blocker = tmp_path / "a-file"
    blocker.write_text("x")  # a folder below a file can never be created, even by root
    with pytest.warns(RuntimeWarning, match=r"cannot be created \(.*a-file is a file\).*"
                                            "using") as said:
        model = build_model(TINY_MODEL, TINY_DATA, cache_dir=blocker / "cache", progress=False)
    assert model.cache_file.exists() and blocker not in model.cache_file.parents
    # the caller's line, not contextlib's (build_model's decorator is a context manager)
    assert {w.filename for w in said} == {__file__}


def test_a_cache_that_cannot_be_saved_leaves_the_model_in_memory(tmp_path, monkeypatch,
                                                                configs):
    """A full disk while saving the cache ended the command with torch's traceback after
    the pre-training, although the model was built."""
    TINY_MODEL, TINY_DATA = configs

    def disk_full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] unexpected pos 64 vs 0")

    monkeypatch.setattr(pretrain, "_save_cache", disk_full)
    with pytest.warns(RuntimeWarning, match="could not save the pre-trained model to .*"
                                            "using it from memory") as said:
        model = build_model(TINY_MODEL, TINY_DATA, cache_dir=tmp_path, progress=False)
    assert {w.filename for w in said} == {__file__}
    assert model.cache_file is None and model.pretrain_info["cached"] is False
    assert not list(tmp_path.glob("m3t-*.pt")) and not list(tmp_path.glob(".*.tmp"))


def test_no_home_folder_puts_the_cache_in_a_private_temporary_folder(tmp_path, monkeypatch):
    """With HOME unset and a user unknown to the system (containers), every model build
    failed with "Could not determine home directory"."""
    def no_home():
        raise RuntimeError("Could not determine home directory.")

    import tempfile

    monkeypatch.delenv("HFFM_CACHE_DIR")
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.warns(RuntimeWarning, match="no home folder for the model cache"):
        folder = pretrain.default_cache_dir()
    assert folder.parent == tmp_path and folder.stat().st_mode & 0o022 == 0  # none else writes


def test_a_finished_cache_file_loads_without_writing_or_locking(tmp_path, monkeypatch,
                                                                 configs):
    """A read-only cache folder (a shared one) that holds the file serves it: no write test,
    no lock file, no pre-training (it was checked for writing first and pre-trained again)."""
    TINY_MODEL, TINY_DATA = configs
    built = build_model(TINY_MODEL, TINY_DATA, cache_dir=tmp_path, progress=False)
    monkeypatch.setattr(pretrain, "pretrain_model", _fail)
    monkeypatch.setattr(pretrain, "_usable_cache_path", _fail)
    monkeypatch.setattr(pretrain, "lock_file", _fail)
    model = build_model(TINY_MODEL, TINY_DATA, cache_dir=tmp_path, progress=False)
    assert model.cache_file == built.cache_file and model.pretrain_info["cached"]


def test_a_folder_at_the_lock_path_falls_back(tmp_path, configs):
    TINY_MODEL, TINY_DATA = configs
    path = cache_path(TINY_MODEL, TINY_DATA, tmp_path)
    path.with_name(path.name + ".lock").mkdir(parents=True)
    with pytest.warns(RuntimeWarning, match="lock path .* not a regular file"):
        model = build_model(TINY_MODEL, TINY_DATA, cache_dir=tmp_path, progress=False)
    assert model.cache_file != path and model.cache_file.is_file()


def test_a_fifo_at_the_cache_path_is_not_read(tmp_path, configs):
    import os
    import signal

    TINY_MODEL, TINY_DATA = configs
    path = cache_path(TINY_MODEL, TINY_DATA, tmp_path)
    os.mkfifo(path)
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("reading the FIFO blocked"))
    signal.alarm(60)
    try:
        with pytest.warns(RuntimeWarning, match="not a regular file"):
            model = build_model(TINY_MODEL, TINY_DATA, cache_dir=tmp_path, progress=False)
    finally:
        signal.alarm(0)
    assert model.cache_file != path and model.cache_file.is_file()


@pytest.mark.slow
def test_two_processes_building_one_cache_take_turns(tmp_path, configs):
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from conftest import TINY_MODEL, TINY_DATA
        from hffm_env.models import build_model
        model = build_model(TINY_MODEL, TINY_DATA, cache_dir={str(tmp_path)!r}, progress=False)
        print("cached" if model.pretrain_info["cached"] else "built")
    """)
    runs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    assert sorted(out.strip() for out, _ in outputs) == ["built", "cached"]
    assert sum("pre-training the frozen parts" in err for _, err in outputs) == 1


def test_the_cached_frozen_parts_do_not_depend_on_the_seed_that_built_them(tmp_path,
                                                                          monkeypatch, configs):
    """The cache key has no seed, so a build with seed 1 into an empty cache must write what a
    build with seed 0 would: the frozen parts start from PRETRAIN_SEED."""
    TINY_MODEL, TINY_DATA = configs  # noqa: N806  (as in the tests above)
    built = {}
    for seed in (1, 0):
        monkeypatch.setenv("HFFM_CACHE_DIR", str(tmp_path / f"cache{seed}"))
        model = build_model(TINY_MODEL, TINY_DATA, seed=seed, progress=False)
        assert model.pretrain_info["cached"] is False
        built[seed] = model.pretrained_state()
    for name, value in built[0].items():
        torch.testing.assert_close(built[1][name], value, msg=name)


def test_the_fallback_folder_is_private_and_a_killed_builds_file_is_removed(
        tmp_path, monkeypatch, configs):
    """/tmp/hffm_env-cache-<uid> was trusted whoever had made it (anyone can, first, in a
    shared /tmp); and each killed build left its temporary file in the cache for good."""
    import tempfile

    TINY_MODEL, TINY_DATA = configs
    shared_tmp = tmp_path / "tmp"
    named = shared_tmp / f"hffm_env-cache-{os.getuid()}"
    named.mkdir(parents=True)
    named.chmod(0o775)  # this user's own, as older versions made it: made private, reused
    monkeypatch.setattr(tempfile, "tempdir", str(shared_tmp))
    monkeypatch.setattr(pretrain, "_FRESH_FALLBACK", None)
    assert pretrain._private_fallback_dir() == named
    assert named.stat().st_mode & 0o777 == 0o700
    if os.getuid() == 0:  # another user's (made by whoever came first): a folder of our own
        os.chown(named, 1234, 1234)
        folder = pretrain._private_fallback_dir()
        assert folder != named and folder.parent == shared_tmp
        assert folder.stat().st_mode & 0o077 == 0
        assert pretrain._private_fallback_dir() == folder  # the same one, not a new one a call

    cache = tmp_path / "cache"
    path = cache_path(TINY_MODEL, TINY_DATA, cache)
    cache.mkdir()
    killed = cache / f".{path.name}.k1ll3d.tmp"
    killed.write_bytes(b"half a file")
    other = cache / ".m3t-another-key.pt.x.tmp"  # another key's build may be running
    other.write_bytes(b"")
    build_model(TINY_MODEL, TINY_DATA, cache_dir=cache, progress=False)
    assert not killed.exists() and other.exists() and path.is_file()
