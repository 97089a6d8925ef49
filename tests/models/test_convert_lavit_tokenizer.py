"""LaVIT release tokenizer files -> DynamicVisualTokenizer: round trip, strict load with dropped keys
by name, and forward parity with a release-style computation written here from the release-keyed
tensors (eps = 1e-6 smoothed masked softmax, -10000 padding bias in the decoder), float64."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lavit_pl.models.convert import (
    ConversionError,
    lavit_tokenizer_encoder_to_ours,
    ours_to_lavit_tokenizer_decoder,
    ours_to_lavit_tokenizer_encoder,
    timm_to_eva_format,
)
from lavit_pl.models.tokenizer import (
    DynamicVisualTokenizer,
    DynamicVisualTokenizerConfig,
    FeatureDecoderConfig,
    TokenMergerConfig,
    TokenSelectorConfig,
    VectorQuantizerConfig,
)
from lavit_pl.models.visual_encoder import tiny_eva_encoder_config
from lavit_pl.utils.checkpoint_io import load_lavit_tokenizer

D, N, HEADS, EPS = 96, 64, 4, 1e-6


def release_like_config() -> DynamicVisualTokenizerConfig:
    return DynamicVisualTokenizerConfig(
        encoder=tiny_eva_encoder_config(weights_format="lavit_eva"),
        selector=TokenSelectorConfig(width=D),
        merger=TokenMergerConfig(width=D, depth=2, num_heads=HEADS, mlp_dim=128, softmax_eps=EPS),
        quantizer=VectorQuantizerConfig(width=D, codebook_size=32),
        decoder=FeatureDecoderConfig(width=D, out_dim=D, num_patches=N, depth=2, num_heads=HEADS, mlp_dim=128),
    )


@pytest.fixture(scope="module")
def release_files(tmp_path_factory):
    """A tiny model written in the release's three files, plus the keys the release adds."""
    torch.manual_seed(0)
    src = DynamicVisualTokenizer(release_like_config())
    for p in src.parameters():
        p.data.add_(0.1 * torch.randn_like(p))
    sd = src.state_dict()
    folder = tmp_path_factory.mktemp("visual_tokenizer")
    eva = timm_to_eva_format({k[len("encoder.vit."):]: v for k, v in sd.items() if k.startswith("encoder.vit.")}, "lavit_eva")
    eva |= {"head.weight": torch.randn(16, D), "head.bias": torch.zeros(16)}
    enc = ours_to_lavit_tokenizer_encoder({k: v for k, v in sd.items() if k.startswith(("token_", "quantizer."))})
    enc |= {"vit_proj.weight": torch.randn(40, D), "vit_proj.bias": torch.zeros(40)}
    dec = ours_to_lavit_tokenizer_decoder({k: v for k, v in sd.items() if k.startswith("decoder.")})
    dec |= {"unet_proj.weight": torch.randn(24, D), "unet_proj.bias": torch.zeros(24)}
    torch.save(eva, folder / "eva_vitg_psz14.bin")
    torch.save(enc, folder / "tokenizer_encoder.bin")
    torch.save(dec, folder / "tokenizer_decoder.bin")
    return folder, sd, enc, dec


def test_release_keys_and_round_trip(release_files):
    folder, sd, enc, dec = release_files
    assert "causal_encoder.blocks.1.token_cross_attn.value.weight" in enc and "quantize.embedding.weight" in enc
    assert dec["pos_embed"].shape == (1, N, D) and "blocks.0.cross_attn.query.bias" in dec
    torch.manual_seed(5)
    tok = DynamicVisualTokenizer(release_like_config())
    dropped = load_lavit_tokenizer(tok, folder)
    assert dropped == ["head.weight", "head.bias", "vit_proj.weight", "vit_proj.bias", "unet_proj.weight", "unet_proj.bias"]
    loaded = tok.state_dict()
    for key, value in sd.items():
        if key in ("quantizer.ema_count", "quantizer.ema_sum", "quantizer.initialized"):
            continue
        assert torch.equal(loaded[key], value), key
    assert bool(loaded["quantizer.initialized"]) and torch.equal(loaded["quantizer.ema_sum"], sd["quantizer.codebook"])
    back = ours_to_lavit_tokenizer_encoder({k: v for k, v in loaded.items() if k.startswith(("token_", "quantizer."))})
    original = {k: v for k, v in enc.items() if not k.startswith("vit_proj")}
    assert back.keys() == original.keys() and all(torch.equal(back[k], original[k]) for k in back)


def test_unknown_release_key_is_named():
    with pytest.raises(ConversionError, match="causal_encoder.blocks.0.token_cross_attn.gate"):
        lavit_tokenizer_encoder_to_ours({"causal_encoder.blocks.0.token_cross_attn.gate": torch.zeros(1)})


# --- release-style computation from the release-keyed tensors -----------------------------------------
def _ln(sd, prefix, x):
    return F.layer_norm(x, x.shape[-1:], sd[prefix + ".weight"], sd[prefix + ".bias"], eps=1e-5)


def _lin(sd, prefix, x):
    return F.linear(x, sd[prefix + ".weight"], sd[prefix + ".bias"])


def _heads(x):
    b, n, d = x.shape
    return x.view(b, n, HEADS, d // HEADS).permute(0, 2, 1, 3)


def _policy_softmax(attn, policy):
    # release: exp(a - max over all keys) * policy, then (attn + eps/N) / (sum + eps)
    attn = (attn - attn.amax(dim=-1, keepdim=True)).exp() * policy
    return (attn + EPS / attn.shape[-1]) / (attn.sum(dim=-1, keepdim=True) + EPS)


def release_selector(sd, x):
    h = F.gelu(_lin(sd, "token_predictor.in_conv.1", _ln(sd, "token_predictor.in_conv.0", x)))
    c = h.shape[-1]
    h = torch.cat([h[..., : c // 2], h[..., c // 2 :].mean(dim=1, keepdim=True).expand(-1, h.shape[1], -1)], dim=-1)
    h = F.gelu(_lin(sd, "token_predictor.out_conv.0", h))
    h = F.gelu(_lin(sd, "token_predictor.out_conv.2", h))
    return F.log_softmax(_lin(sd, "token_predictor.out_conv.4", h), dim=-1)


def release_merger(sd, x, decision):
    b, n, d = x.shape
    origin = _ln(sd, "causal_encoder.ln_vision", x)
    eye = torch.eye(n, dtype=x.dtype)
    self_policy = (decision[:, None, None, :] + (1 - decision[:, None, None, :]) * eye) * torch.ones(n, n, dtype=x.dtype).tril()
    cross_policy = (1 - decision)[:, None, None, :]
    for i in range(2):
        p = f"causal_encoder.blocks.{i}"
        q, k, v = _lin(sd, f"{p}.token_causal_attn.qkv", _ln(sd, f"{p}.norm0", x)).chunk(3, dim=-1)
        attn = _policy_softmax(_heads(q) @ _heads(k).transpose(-1, -2) * (d // HEADS) ** -0.5, self_policy)
        x = x + _lin(sd, f"{p}.token_causal_attn.proj", (attn @ _heads(v)).transpose(1, 2).reshape(b, n, d))
        q = _heads(_lin(sd, f"{p}.token_cross_attn.query", _ln(sd, f"{p}.norm1", x)))
        k, v = _heads(_lin(sd, f"{p}.token_cross_attn.key", origin)), _heads(_lin(sd, f"{p}.token_cross_attn.value", origin))
        attn = _policy_softmax(q @ k.transpose(-1, -2) * (d // HEADS) ** -0.5, cross_policy)
        x = x + _lin(sd, f"{p}.token_cross_attn.proj", (attn @ v).transpose(1, 2).reshape(b, n, d))
        x = x + _lin(sd, f"{p}.mlp.fc2", F.gelu(_lin(sd, f"{p}.mlp.fc1", _ln(sd, f"{p}.norm2", x))))
    return _ln(sd, "causal_encoder.norm", x)


def release_codes(sd, tokens):
    z = F.normalize(_lin(sd, "encode_task_layer.2", torch.tanh(_lin(sd, "encode_task_layer.0", tokens))), dim=-1)
    c = sd["quantize.embedding.weight"]
    d = z.pow(2).sum(1, keepdim=True) + c.pow(2).sum(1) - 2 * z @ c.t()
    return d.argmin(dim=1)


def release_decoder(sd, quantized, token_num):
    x = _lin(sd, "in_proj", quantized)
    b, t = len(token_num), max(token_num)
    x_pad = torch.zeros(b, t, x.shape[1], dtype=x.dtype)
    mask = torch.zeros(b, t, dtype=x.dtype)
    for i, chunk in enumerate(torch.split(x, token_num)):
        x_pad[i, : len(chunk)] = chunk
        mask[i, : len(chunk)] = 1
    x_pad = x_pad + sd["pos_embed"][:, :t]
    q_emb = sd["query_embed"].expand(b, -1, -1)
    d = q_emb.shape[-1]
    for i in range(2):
        p = f"blocks.{i}"
        q, k, v = _lin(sd, f"{p}.self_attn.qkv", _ln(sd, f"{p}.norm0", q_emb)).chunk(3, dim=-1)
        attn = (_heads(q) @ _heads(k).transpose(-1, -2) * (d // HEADS) ** -0.5).softmax(-1)
        q_emb = q_emb + _lin(sd, f"{p}.self_attn.proj", (attn @ _heads(v)).transpose(1, 2).reshape(b, -1, d))
        q = _heads(_lin(sd, f"{p}.cross_attn.query", _ln(sd, f"{p}.norm1", q_emb)))
        k, v = _heads(_lin(sd, f"{p}.cross_attn.key", x_pad)), _heads(_lin(sd, f"{p}.cross_attn.value", x_pad))
        attn = (q @ k.transpose(-1, -2) * (d // HEADS) ** -0.5 + (1.0 - mask[:, None, None, :]) * -10000.0).softmax(-1)
        q_emb = q_emb + _lin(sd, f"{p}.cross_attn.proj", (attn @ v).transpose(1, 2).reshape(b, -1, d))
        q_emb = q_emb + _lin(sd, f"{p}.mlp.fc2", F.gelu(_lin(sd, f"{p}.mlp.fc1", _ln(sd, f"{p}.norm2", q_emb))))
    # the release applies unet_proj after this (stage 1b's head, dropped here)
    return _lin(sd, "decode_task_layer.2", torch.tanh(_lin(sd, "decode_task_layer.0", _ln(sd, "norm", q_emb))))


def test_forward_parity_with_release_arithmetic(release_files):
    folder, _, enc, dec = release_files
    tok = DynamicVisualTokenizer(release_like_config())
    load_lavit_tokenizer(tok, folder)
    tok = tok.double().eval()
    enc = {k: v.double() for k, v in enc.items()}
    dec = {k: v.double() for k, v in dec.items()}
    x = torch.randn(3, N, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(tok.token_selector.log_probs(x), release_selector(enc, x), rtol=1e-10, atol=1e-10)
        # The release samples M with Gumbel noise; parity is checked for a given M in which every
        # image drops something (for an image that drops nothing the release adds a uniform average
        # of the cross-attention values; our rule adds nothing).
        keep = torch.rand(3, N, generator=torch.Generator().manual_seed(2)) < 0.35
        keep[:, 0], keep[:, 1] = True, False
        ours = tok.token_merger(x, keep)
        theirs = release_merger(enc, x, keep.double())
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)  # all N positions
        codes, _ = tok.encode_features(x)  # eval selector: argmax of the same log-probs
        sel = tok.select(x)
        merged = release_merger(enc, x, sel.double())[sel]
        expected_codes = release_codes(enc, merged)
        # the padded inference path is exact (eps = 0 arithmetic); eps = 1e-6 moves features by
        # ~1e-7, far below code-assignment margins for this input
        assert torch.equal(torch.cat(codes), expected_codes)
        lengths = sel.sum(dim=1).tolist()
        rec = release_decoder(dec, enc["quantize.embedding.weight"][expected_codes], lengths)
        torch.testing.assert_close(tok.decode(codes), rec, rtol=1e-10, atol=1e-10)
