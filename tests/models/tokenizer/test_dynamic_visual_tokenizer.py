"""DynamicVisualTokenizer: public API shapes with variable T_b, inference == training path, variants."""
from __future__ import annotations

import pytest
import torch

from lavit_pl.models.tokenizer import (
    DynamicVisualTokenizer,
    DynamicVisualTokenizerConfig,
    FeatureDecoderConfig,
    TokenMergerConfig,
    TokenSelectorConfig,
    VectorQuantizerConfig,
    tokenizer_loss,
)
from lavit_pl.models.visual_encoder import tiny_eva_encoder_config

D, N, B = 96, 64, 5


def tiny_config(**kw) -> DynamicVisualTokenizerConfig:
    merger = kw.pop("merger", {})
    return DynamicVisualTokenizerConfig(
        encoder=tiny_eva_encoder_config(),
        selector=TokenSelectorConfig(width=D),
        merger=TokenMergerConfig(**{**dict(width=D, depth=2, num_heads=4, mlp_dim=128), **merger}),
        quantizer=VectorQuantizerConfig(width=D, codebook_size=32, recent_buffer_size=1024),
        decoder=FeatureDecoderConfig(width=64, out_dim=D, num_patches=N, depth=2, num_heads=4, mlp_dim=128),
        **kw,
    )


def make_tokenizer(**kw) -> DynamicVisualTokenizer:
    torch.manual_seed(0)
    tok = DynamicVisualTokenizer(tiny_config(**kw))
    if tok.token_selector is not None:
        for p in tok.token_selector.parameters():  # spread keep probabilities so T_b varies
            p.data.add_(0.2 * torch.randn_like(p))
    return tok


def images(seed: int = 1) -> torch.Tensor:
    return torch.rand(B, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def test_training_forward_gives_everything_the_loss_needs():
    tok = make_tokenizer().train()
    out = tok(images())
    assert out.target.shape == out.reconstruction.shape == out.merged.shape == (B, N, D)
    assert out.keep_mask.shape == out.keep_prob.shape == (B, N)
    assert set(out.keep_mask.detach().unique().tolist()) <= {0.0, 1.0}
    assert out.quantizer.indices.shape == (B, N)
    loss = tokenizer_loss(out.target, out.reconstruction, out.keep_mask)
    (loss.total + out.quantizer.commitment_loss).backward()
    for name in ("token_selector", "token_merger", "quantizer.encode_task_layer", "decoder"):
        grads = [p.grad for n, p in tok.named_parameters() if n.startswith(name) and p.grad is not None]
        assert grads and sum(g.abs().sum() for g in grads) > 0, name
    assert all(not p.requires_grad for p in tok.encoder.parameters())
    assert bool(tok.quantizer.initialized)  # k-means init from the first training batch


def test_encode_decode_match_the_training_path_in_eval_mode():
    tok = make_tokenizer().double().eval()
    x = images().double()
    codes, features = tok.encode(x)
    out = tok(x)
    keep = out.keep_mask.bool()
    lengths = keep.sum(dim=1).tolist()
    assert [len(c) for c in codes] == [len(f) for f in features] == lengths
    assert len(set(lengths)) > 1, "variable T_b expected"
    assert all(c.dtype == torch.long and f.shape[1] == D for c, f in zip(codes, features))
    for b in range(B):
        torch.testing.assert_close(features[b], out.merged[b][keep[b]], rtol=1e-10, atol=1e-10)
        assert torch.equal(codes[b], out.quantizer.indices[b][keep[b]])
    # decode(codes) reconstructs exactly what the training path reconstructs
    torch.testing.assert_close(tok.decode(codes), out.reconstruction, rtol=1e-10, atol=1e-10)
    assert torch.equal(tok.select(out.target), keep)


def test_eval_is_deterministic():
    tok = make_tokenizer().eval()
    x = images()
    (c1, f1), (c2, f2) = tok.encode(x), tok.encode(x)
    assert all(torch.equal(a, b) for a, b in zip(c1, c2))
    assert all(torch.equal(a, b) for a, b in zip(f1, f2))


def test_every_image_keeps_at_least_one_token():
    tok = make_tokenizer().eval()
    with torch.no_grad():
        tok.token_selector.out_mlp[4].bias.copy_(torch.tensor([-40.0, 40.0]))
    codes, features = tok.encode(images())
    assert [len(c) for c in codes] == [1] * B
    assert tok.decode(codes).shape == (B, N, D)
    assert torch.isfinite(tok.decode(codes)).all()


def test_fixed_length_variant_keeps_all_patches():
    tok = make_tokenizer(use_selector=False).eval()
    assert tok.token_selector is None
    codes, features = tok.encode(images())
    assert [len(c) for c in codes] == [N] * B
    out = tok.train()(images())
    assert torch.equal(out.keep_mask, torch.ones(B, N))
    assert torch.isfinite(out.reconstruction).all()


@pytest.mark.parametrize("merger", [{"self_attention": "bidirectional"}, {"merge_dropped": False}], ids=["bidir", "no_merger"])
def test_ablation_variants_agree_between_paths(merger):
    padded = make_tokenizer(merger=merger).double().eval()
    masked = make_tokenizer(merger=merger, inference_path="masked").double().eval()
    masked.load_state_dict(padded.state_dict())
    x = images().double()
    (cp, fp), (cm, fm) = padded.encode(x), masked.encode(x)
    for a, b in zip(fp, fm):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    assert all(torch.equal(a, b) for a, b in zip(cp, cm))


def test_first_phase_without_quantisation_leaves_the_codebook():
    tok = make_tokenizer().train()
    before = tok.quantizer.codebook.clone()
    out = tok(images(), quantize=False)
    assert out.quantizer is None and torch.equal(before, tok.quantizer.codebook)
    assert not bool(tok.quantizer.initialized)
    tokenizer_loss(out.target, out.reconstruction, out.keep_mask).total.backward()
    assert tok.token_selector.out_mlp[4].weight.grad.abs().sum() > 0


def test_cached_features_input_and_argument_checks():
    tok = make_tokenizer().eval()
    x = images()
    feats = tok.encoder(x)
    codes_a, _ = tok.encode(x)
    codes_b, _ = tok.encode_features(feats)
    assert all(torch.equal(a, b) for a, b in zip(codes_a, codes_b))
    with pytest.raises(ValueError, match="exactly one"):
        tok(x, patch_features=feats)


def test_paper_defaults_build_on_the_meta_device():
    # The default config holds the paper's sizes; construction does no I/O and no data-dependent
    # work, so a LightningModule can build it under a meta/FSDP init context.
    with torch.device("meta"):
        tok = DynamicVisualTokenizer(DynamicVisualTokenizerConfig())
    assert len(tok.encoder.vit.blocks) == 40 and tok.encoder.cfg.num_patches == 256
    assert len(tok.token_merger.blocks) == 12 and len(tok.decoder.blocks) == 12
    assert tok.quantizer.codebook.shape == (16384, 32)
    assert tok.decoder.query_embed.shape == (256, 1408)
    assert tok.token_merger.blocks[0].mlp.fc1.weight.shape == (6144, 1408)


def test_config_consistency_errors_name_the_field():
    with pytest.raises(ValueError, match="merger.width"):
        tiny_config(merger={"width": 64, "num_heads": 4})
    cfg = tiny_config()
    with pytest.raises(ValueError, match="decoder.num_patches"):
        DynamicVisualTokenizerConfig(
            encoder=cfg.encoder, selector=cfg.selector, merger=cfg.merger, quantizer=cfg.quantizer,
            decoder=FeatureDecoderConfig(width=64, out_dim=D, num_patches=N + 1, depth=1, num_heads=4),
        )
