"""musecl.imagetext: IPSI's table, the EMA teacher, the feature queue, the MSD loss, the compact vocabulary, CoCa and
CLIP on trunk tokens, determinism and resuming of the fits, retrieval recall and the config's refusals."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from musecl.imagetext.config import ImageTextConfig
from musecl.imagetext.distill import FeatureQueue, check_queue_size, ema_update, msd_loss, mu_at
from musecl.imagetext.ipsi import stretch_positional_embedding, stretched_length
from musecl.imagetext.models import build_model, image_latent, load_model, model_state, stretch_model, text_latent
from musecl.imagetext.retrieval import encode_images, encode_texts, phrase_image_similarity, retrieval_recall
from musecl.imagetext.tokens import EOT, PAD, SOT, UNK, Vocabulary
from musecl.imagetext.train import fit_urbanclip, fit_urbanln, pretrain_urbanln

TINY = ImageTextConfig(width=16, layers=1, heads=2, text_width=16, text_layers=1, text_heads=2, decoder_layers=1,
                       embed_dim=8, caption_queries=3, context_length=24, epochs=2, pretrain_epochs=1, batch_size=8,
                       queue_size=16, ipsi_keep=4, ipsi_ratio=2, threads=1)
WORDS = "building road tree park river car tall low red roof green many few house street shop water field".split()


def _data(n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    tokens = torch.from_numpy(rng.normal(size=(n, 4, 12)).astype(np.float32))
    sentences = [[" ".join(rng.choice(WORDS, 6)) + "." for _ in range(3)] for _ in range(n)]
    val = np.zeros(n, dtype=bool)
    val[::5] = True
    return tokens, sentences, [s[0] for s in sentences], [" ".join(s * 2) for s in sentences], val


def _state_bytes(model, tmp_path, name: str) -> bytes:
    from musecl.storage import save_torch

    save_torch(model_state(model), tmp_path / name)
    return (tmp_path / name).read_bytes()


def test_stretch_table_by_hand():
    pos = torch.arange(77, dtype=torch.float64)
    pe = torch.stack([pos**2, 1000 + pos, -pos], dim=1)  # distinct, non-linear in the position
    out = stretch_positional_embedding(pe, keep=20, ratio=4)
    assert out.shape == (248, 3) and 248 == 4 * 77 - 3 * 20 == stretched_length(77, 20, 4)
    # column 0 is p^2: kept rows, then quarter steps between 20^2 = 400 and 21^2 = 441
    expected = {19: 361.0, 20: 400.0, 21: 410.25, 22: 420.5, 23: 430.75, 24: 441.0}
    for p, value in expected.items():
        assert out[p, 0].item() == pytest.approx(value), p
    # the last 4 slots extrapolate past 76^2 = 5776 by quarters of (5776 - 75^2) = 151
    assert out[244:, 0].tolist() == pytest.approx([5776.0, 5813.75, 5851.5, 5889.25])
    assert out[243, 0].item() == pytest.approx(5625 + 0.75 * 151)  # the last interpolated slot
    assert torch.equal(out[:20], pe[:20]) and torch.equal(out[20::4][:57, 1], pe[20:, 1])


def test_stretch_model_rebuilds_mask_and_context():
    vocab = Vocabulary.build(["a tall building near the road"])
    model = build_model("urbanln", TINY, vocab, 4, 12, seed=0)
    length = stretch_model(model)
    assert length == 2 * 24 - 4 == model.context_length == model.positional_embedding.shape[0]
    assert model.attn_mask.shape == (length, length) and torch.isinf(model.attn_mask[0, 1])
    ids = vocab.encode(["a tall building near the road " * 6], length)
    assert text_latent(model, ids).shape == (1, TINY.embed_dim)


def test_ema_update_one_step():
    student, teacher = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    with torch.no_grad():
        for p in student.parameters():
            p.fill_(3.0)
        for p in teacher.parameters():
            p.fill_(1.0)
    ema_update(teacher, student, momentum=0.75)
    for p in teacher.parameters():
        assert torch.allclose(p, torch.full_like(p, 0.75 * 1.0 + 0.25 * 3.0))


def test_queue_wraps_and_validates():
    queue = FeatureQueue(size=8, dim=2, batch_size=4, n_train=20)
    for value in (1.0, 2.0, 3.0):  # the third batch overwrites the first
        queue.enqueue(torch.full((4, 2), value), torch.full((4, 2), -value))
    image, text = queue.features()
    assert queue.ptr == 4 and queue.filled == 8
    assert image[:, 0].tolist() == [3.0] * 4 + [2.0] * 4 and text[:, 0].tolist() == [-3.0] * 4 + [-2.0] * 4
    with pytest.raises(ValueError, match="multiple of batch_size"):
        check_queue_size(6, 4, 20)
    with pytest.raises(ValueError, match="smaller than the number of training images"):
        FeatureQueue(size=20, dim=2, batch_size=4, n_train=20)
    assert mu_at(0.5, 0, 10) == 0.0 and mu_at(0.5, 5, 10) == 0.25 and mu_at(0.5, 30, 10) == 0.5


def test_msd_loss_limits():
    from open_clip import ClipLoss

    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(6, 4, generator=g), dim=1)
    txt = torch.nn.functional.normalize(torch.randn(6, 4, generator=g), dim=1)
    queue = torch.nn.functional.normalize(torch.randn(5, 4, generator=g), dim=1)
    scale = torch.tensor(10.0)
    plain = msd_loss(img, txt, img.flip(0), txt.flip(0), queue, queue, scale, mu=0.0)
    assert torch.allclose(plain["loss"], ClipLoss()(img, txt, scale))
    same = msd_loss(img, txt, img, txt, img[:0], txt[:0], scale, mu=0.5)
    assert same["distill"].abs().item() < 1e-6
    assert torch.allclose(same["loss"], 0.5 * same["contrastive"], atol=1e-6)
    other = msd_loss(img, txt, txt, img, queue, queue, scale, mu=1.0)  # a different teacher: KL > 0, loss = KL
    assert other["distill"].item() > 0 and torch.allclose(other["loss"], other["distill"])


def test_vocabulary_round_trip_truncation_and_unknowns():
    texts = ["Tall buildings line the road.", "A green park beside the river"]
    vocab = Vocabulary.build(texts)
    assert vocab.size == 4 + len(vocab.bpe_ids) < 40
    ids = vocab.encode(texts, 77)
    assert ids.shape == (2, 77) and (ids[:, 0] == SOT).all()
    assert vocab.decode(ids) == ["tall buildings line the road .", "a green park beside the river"]
    short = vocab.encode(texts, 5)  # sot, 3 tokens, eot
    assert short[0].tolist()[-1] == EOT and vocab.decode(short)[0] == "tall buildings line"
    unknown = vocab.encode(["tall zebra"], 8)[0].tolist()
    assert unknown[:4] == [SOT, vocab.encode(["tall"], 3)[0, 1].item(), UNK, EOT] and unknown[4:] == [PAD] * 4
    assert Vocabulary.from_dict(vocab.to_dict()) == vocab != Vocabulary.build(texts[:1])


@pytest.mark.parametrize("kind", ["urbanclip", "urbanln"])
def test_forward_backward_and_state_round_trip(kind):
    tokens, sentences, short, _, _ = _data(6)
    vocab = Vocabulary.build(short)
    model = build_model(kind, TINY, vocab, 4, 12, seed=0)
    ids = vocab.encode(short, TINY.context_length)
    if kind == "urbanclip":
        out = model(tokens, ids)
        assert out["logits"].shape == (6, TINY.context_length - 1, vocab.size)
        loss = out["logits"].square().mean() + out["image_features"].sum()
    else:
        loss = (image_latent(model, tokens) * text_latent(model, ids)).sum()
        assert torch.allclose(text_latent(model, ids), model.encode_text(ids, normalize=True), atol=1e-6)
    loss.backward()
    grads = [p.grad for p in model.visual.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.visual.proj_in.weight.grad.abs().sum() > 0
    loaded = load_model(model_state(model))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_urbanclip_fit_is_deterministic(tmp_path):
    tokens, sentences, _, _, val = _data()
    a, history = fit_urbanclip(tokens, sentences, val, TINY, seed=3)
    b, _ = fit_urbanclip(tokens, sentences, val, TINY, seed=3)
    assert _state_bytes(a, tmp_path, "a.pt") == _state_bytes(b, tmp_path, "b.pt")
    c, _ = fit_urbanclip(tokens, sentences, val, TINY, seed=4)
    assert _state_bytes(c, tmp_path, "c.pt") != _state_bytes(a, tmp_path, "a.pt")
    assert list(history["epoch"]) == [0, 1, 2] and history["selected"].sum() == 1
    assert np.isfinite(history.loc[1:, ["train_contrastive", "train_caption", "val_contrastive"]].to_numpy()).all()
    emb = encode_images(a, tokens)
    assert emb.shape == (40, TINY.embed_dim) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert encode_images(a, tokens, pooled=True).shape == (40, TINY.text_width)
    assert encode_texts(a, ["tall red roof"]).shape == (1, TINY.embed_dim)


def test_urbanln_fit_deterministic_shared_pretraining_and_resume(tmp_path, monkeypatch):
    tokens, _, short, long_, val = _data()
    full, history = fit_urbanln(tokens, short, long_, val, TINY, seed=1)
    assert list(zip(history["phase"], history["epoch"])) == [("short", 0), ("short", 1), ("long", 0), ("long", 1),
                                                            ("long", 2)]
    assert history.attrs["context_length"] == 44 and full.context_length == 44
    again, _ = fit_urbanln(tokens, short, long_, val, TINY, seed=1)
    assert _state_bytes(full, tmp_path, "a.pt") == _state_bytes(again, tmp_path, "b.pt")
    base, _ = pretrain_urbanln(tokens, short, long_, val, TINY, seed=1)
    shared, shared_history = fit_urbanln(tokens, short, long_, val, TINY, seed=1, pretrained=base)
    assert _state_bytes(shared, tmp_path, "c.pt") == _state_bytes(full, tmp_path, "a.pt")
    assert set(shared_history["phase"]) == {"long"}
    # interrupted during the long phase's second epoch, then resumed from last.pt: the same model
    import musecl.imagetext.loop as loop

    calls = {"n": 0}
    real = loop.validate

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("interrupted")
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "validate", failing)
    with pytest.raises(RuntimeError, match="interrupted"):
        fit_urbanln(tokens, short, long_, val, TINY, seed=1, checkpoint_dir=tmp_path / "ckpt")
    monkeypatch.setattr(loop, "validate", real)
    resumed, resumed_history = fit_urbanln(tokens, short, long_, val, TINY, seed=1, checkpoint_dir=tmp_path / "ckpt")
    assert _state_bytes(resumed, tmp_path, "d.pt") == _state_bytes(full, tmp_path, "a.pt")
    assert resumed_history.drop(columns=["model"]).equals(history.drop(columns=["model"]))


def test_urbanln_ablations_and_queue_error():
    tokens, _, short, long_, val = _data()
    base, _ = pretrain_urbanln(tokens, short, long_, val, TINY, seed=0)
    flat, history = fit_urbanln(tokens, short, long_, val, replace(TINY, stretch=False), seed=0, pretrained=base)
    assert flat.context_length == TINY.context_length and history.attrs["long_truncated_share"] > 0
    _, plain = fit_urbanln(tokens, short, long_, val, replace(TINY, distill=False), seed=0, pretrained=base)
    assert plain["train_distill"].isna().all()
    with pytest.raises(ValueError, match="queue_size 64 must be smaller"):
        fit_urbanln(tokens, short, long_, val, replace(TINY, queue_size=64), seed=0)


def test_retrieval_recall_and_phrase_scores():
    eye = np.eye(12)
    recall = retrieval_recall(eye, eye)
    assert all(v == 1.0 for v in recall.values()) and set(recall) == {f"{d}_R@{k}" for d in ("i2t", "t2i")
                                                                      for k in (1, 5, 10)}
    shifted = retrieval_recall(eye, np.roll(eye, 1, axis=0), ks=(1,))
    assert shifted == {"i2t_R@1": 0.0, "t2i_R@1": 0.0}
    tokens, sentences, short, long_, val = _data(10)
    model = build_model("urbanln", TINY, Vocabulary.build(short), 4, 12, seed=0)
    scores = phrase_image_similarity(model, tokens, short[:4], np.arange(4))
    assert scores.cosine.shape == (4,) and ((scores.rank >= 0) & (scores.rank <= 1)).all()


def test_config_refusals_and_presets():
    with pytest.raises(ValueError, match="widht"):
        ImageTextConfig.from_dict({"widht": 64})
    with pytest.raises(ValueError, match="text_width 30 must be a multiple of text_heads 4"):
        ImageTextConfig.from_dict({"text_width": 30})
    for preset in ("cpu", "paper"):
        for model in ("urbanclip", "urbanln"):
            assert ImageTextConfig.preset(preset, model).batch_size >= 8
    assert ImageTextConfig.preset("cpu", "urbanln", {"mu": 0.3}).mu == 0.3
    assert math.isclose(ImageTextConfig().init_logit_scale, math.log(1 / 0.07))


def test_image_tokens_shape_and_memo():
    from musecl.imagetext.towers import image_tokens

    images = np.random.default_rng(0).integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
    tokens = image_tokens(images, input_size=128, device="cpu")
    assert tokens.shape == (3, 16, 1280) and tokens.dtype == torch.float32
    assert image_tokens(images, input_size=128, device="cpu") is tokens
    assert image_tokens(images, input_size=128, stages=8, device="cpu").shape == (3, 16, 320)
