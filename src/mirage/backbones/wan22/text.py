"""The text context: umT5 (transformers' ``UMT5EncoderModel``) or a zero embedding.

As in diffusers' Wan pipelines, prompts are tokenised to ``text_len`` tokens, encoded, and the
embeddings past each prompt's length are set to zero. Without a text encoder the context is
zeros (B, L, text_dim); the loader warns once that prompts are ignored.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["TextEncoder"]


class TextEncoder:
    """Prompts → context (B, L, text_dim), cached per prompt where the encoder ran.

    encoder/tokenizer: a ``UMT5EncoderModel`` and its tokenizer, or both None (zeros).
    device: where the encoder runs; ``offload``: keep it on the CPU between calls.
    """

    def __init__(self, encoder, tokenizer, text_dim: int, text_len: int, device, dtype,
                 offload: bool = False) -> None:
        self.encoder, self.tokenizer = encoder, tokenizer
        self.text_dim, self.text_len = text_dim, text_len
        self.device, self.dtype, self.offload = device, dtype, offload
        self._cache: dict[str, Tensor] = {}
        if encoder is not None:
            encoder.eval().requires_grad_(False)
            encoder.to("cpu" if offload else device)

    @property
    def available(self) -> bool:
        return self.encoder is not None

    def __call__(self, prompts: list[str] | None, batch: int = 1) -> Tensor:
        """(B, L, text_dim) on ``device`` in ``dtype``; B = len(prompts), or ``batch`` if None.

        ``None`` means no prompt: the empty prompt "" with an encoder (as diffusers), else zeros.
        """
        if not self.available:
            count = batch if prompts is None else len(prompts)
            return torch.zeros(count, self.text_len, self.text_dim, device=self.device, dtype=self.dtype)
        if prompts is None:
            prompts = [""] * batch
        missing = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        if missing:
            for prompt, emb in zip(missing, self._encode(missing)):
                self._cache[prompt] = emb
        return torch.stack([self._cache[p] for p in prompts]).to(self.device, self.dtype)

    @torch.no_grad()
    def _encode(self, prompts: list[str]) -> Tensor:
        tokens = self.tokenizer(
            [" ".join(p.split()) for p in prompts], padding="max_length", max_length=self.text_len,
            truncation=True, add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        ids, mask = tokens.input_ids, tokens.attention_mask
        if self.offload:
            self.encoder.to(self.device)
        try:
            emb = self.encoder(ids.to(self.device), mask.to(self.device)).last_hidden_state  # (B, L, D)
        finally:
            if self.offload:
                self.encoder.to("cpu")
        emb = emb.float() * mask[..., None].to(emb.device, torch.float32)  # zero past each prompt's length
        return emb
