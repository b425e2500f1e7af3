"""Hugging Face checkpoints made from GGUF files, for engines that load only the former.

vLLM loads a checkpoint directory (config, tokenizer with its chat template,
safetensors). A pool may still name a GGUF file (or `bundled:smollm2-135m`): it is
dequantized once with transformers into a bf16 checkpoint kept under
`~/.cache/raylane/checkpoints` (`RAYLANE_CACHE` overrides the root), keyed by the
file's name, size and modification time, and reused by every later start. Several
replicas starting at once each write a private folder and the first rename wins.

Needs transformers, gguf and accelerate (the `vllm` extras bring them). Never runs on
an event loop: call it in a thread.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("RAYLANE_CACHE", Path.home() / ".cache" / "raylane"))


def hf_checkpoint(weights: Path) -> Path:
    """A checkpoint directory for `weights`: itself, or the cached conversion of a GGUF."""
    if weights.is_dir() or weights.suffix != ".gguf":
        return weights
    stat = weights.stat()
    key = hashlib.sha256(f"{weights.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    target = cache_root() / "checkpoints" / f"{weights.stem}-{key.hexdigest()[:12]}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        _convert(weights, scratch)
        try:
            scratch.rename(target)
        except OSError:  # another replica finished first
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _convert(gguf: Path, out: Path) -> None:
    """Dequantize a GGUF model into a bf16 safetensors checkpoint with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                 dtype=torch.bfloat16)
    # The weights are dequantized now: a kept quantizer would make save_pretrained write a
    # quantization_config that vLLM would then try to honour.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    _keep_chat_template(tokenizer, out)


def _keep_chat_template(tokenizer: object, out: Path) -> None:
    """Put the chat template in tokenizer_config.json, where every loader looks for it
    (newer transformers write it to chat_template.jinja only)."""
    path = out / "tokenizer_config.json"
    config = json.loads(path.read_text())
    template = getattr(tokenizer, "chat_template", None)
    if not config.get("chat_template") and template:
        config["chat_template"] = template
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False))
