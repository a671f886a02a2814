"""`save_tiny_wan`: a tiny random Wan2.2-layout weights directory, for tests and smoke runs.

Same classes and layout as Wan2.2-TI2V-5B (base ``WanTransformer3DModel`` with 48 latent
channels and patch (1, 2, 2); ``AutoencoderKLWan`` with z = 48, strides 16×16×4, residual,
patch 2), but widths of a few channels, so it loads and samples on a CPU in seconds. Written
with ``save_pretrained``, so it goes through the real loading path.
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["save_tiny_wan", "TINY_TRANSFORMER", "TINY_VAE"]

TINY_TRANSFORMER = dict(
    patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=48,
    out_channels=48, text_dim=16, freq_dim=32, ffn_dim=32, num_layers=4, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=64)
TINY_VAE = dict(
    base_dim=8, decoder_base_dim=8, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=1,
    temperal_downsample=[False, True, True], is_residual=True, in_channels=12, out_channels=12,
    patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4)
_WORDS = ["<pad>", "</s>", "<unk>", "a", "room", "with", "red", "blue", "walls", "courtyard", "camera", "turns"]


def _tiny_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(_WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(path)


def save_tiny_wan(directory, seed: int = 0, text_encoder: bool = False, scheduler: bool = True) -> Path:
    """Write a tiny random Wan2.2-layout directory and return its path.

    transformer/ (base config), vae/ (with non-trivial ``latents_mean``/``latents_std``),
    scheduler/ (UniPC, flow shift 5) when ``scheduler``, and a tiny umT5 text_encoder/ with a
    word-level tokenizer/ when ``text_encoder``. Deterministic for a ``seed``.
    """
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel

    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        WanTransformer3DModel(**TINY_TRANSFORMER).save_pretrained(root / "transformer")
        mean = (0.1 * torch.randn(48, generator=gen)).tolist()
        std = (1.0 + 0.5 * torch.rand(48, generator=gen)).tolist()
        AutoencoderKLWan(**TINY_VAE, latents_mean=mean, latents_std=std).save_pretrained(root / "vae")
        if text_encoder:
            from transformers import UMT5Config, UMT5EncoderModel

            cfg = UMT5Config(vocab_size=len(_WORDS), d_model=TINY_TRANSFORMER["text_dim"], d_kv=8, d_ff=32,
                             num_layers=1, num_heads=2, relative_attention_num_buckets=8,
                             pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
            UMT5EncoderModel(cfg).save_pretrained(root / "text_encoder")
            _tiny_tokenizer(root / "tokenizer")
    if scheduler:
        UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0,
                                num_train_timesteps=1000).save_pretrained(root / "scheduler")
    return root
