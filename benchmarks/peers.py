"""What users would run instead, on the same real-shape weights: transformers and ONNX Runtime.

``hf_model_dir(gguf)`` turns the benchmark's F16 GGUF into a Hugging Face
model folder (``config.json`` from the GGUF metadata, ``model.safetensors``
from its tensors, ``tokenizer.json`` with the same BPE vocabulary and merges,
EOS appended, left padding), cached next to the GGUF. ``onnx_model(gguf)``
exports that model to ONNX with ``torch.onnx`` (fp32, last-token pooling and
L2 normalisation inside the graph), cached likewise.

``TransformersEmbedder`` and ``OnnxEmbedder`` embed the way
sentence-transformers does for Qwen3-Embedding: texts sorted by length
(longest first), batched, padded on the left, the last token's final hidden
state, L2-normalised; tokenising is part of the timed work, as it is for ours.

Needs the ``bench`` extra (torch, transformers, onnx, onnxruntime, onnxscript).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qwen3_embed_core._qwen3 import EOS_TEXT
from qwen3_embed_core.testing import _pre_tokenizer

# GGUF tensor name -> Hugging Face Qwen3Model state-dict name (per block: "blk.{i}." prefix).
_BLOCK_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q_norm.weight": "self_attn.q_norm.weight",
    "attn_k_norm.weight": "self_attn.k_norm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_GLOBAL_NAMES = {"token_embd.weight": "embed_tokens.weight", "output_norm.weight": "norm.weight"}
# Bump when the folder layout changes, so stale caches are rebuilt.
_HF_VERSION = 1
_ONNX_OPSET = 18
_ONNX_VERSION = 2
# "embedding" would clash with the name torch.export gives the token-embedding node.
_ONNX_OUTPUT = "sentence_embedding"


def _hf_name(gguf_name: str) -> str:
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    _blk, layer, rest = gguf_name.split(".", 2)
    return f"layers.{layer}.{_BLOCK_NAMES[rest]}"


def _tokenizer_json(fields: dict, out: Path) -> None:
    """The GGUF's byte-level BPE as a tokenizers ``tokenizer.json``: EOS appended, left padding."""
    import tokenizers as tk
    from gguf import TokenType
    from transformers import PreTrainedTokenizerFast

    tokens = list(fields["tokenizer.ggml.tokens"].contents())
    types = list(fields["tokenizer.ggml.token_type"].contents())
    merges = [tuple(m.split(" ", 1)) for m in fields["tokenizer.ggml.merges"].contents()]
    eos_id = int(fields["tokenizer.ggml.eos_token_id"].contents())
    control = int(TokenType.CONTROL)
    normal = {tok: i for i, tok in enumerate(tokens) if types[i] != control}
    tok = tk.Tokenizer(tk.models.BPE(vocab=normal, merges=merges, ignore_merges=False))
    tok.normalizer = tk.normalizers.NFC()
    tok.pre_tokenizer = _pre_tokenizer()
    tok.decoder = tk.decoders.ByteLevel()
    specials = [t for i, t in enumerate(tokens) if types[i] == control]
    tok.add_special_tokens([tk.AddedToken(s, special=True, normalized=False) for s in specials])
    for i, t in enumerate(tokens):
        if tok.token_to_id(t) != i:
            raise ValueError(f"token {t!r} would get id {tok.token_to_id(t)}, not {i}")
    # Qwen3-Embedding's tokenizer.json appends <|endoftext|> the same way.
    tok.post_processor = tk.processors.TemplateProcessing(
        single=f"$A {EOS_TEXT}", pair=f"$A {EOS_TEXT} $B {EOS_TEXT}",
        special_tokens=[(EOS_TEXT, eos_id)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS_TEXT, pad_token=EOS_TEXT, padding_side="left",
        model_max_length=32768,
    )
    fast.save_pretrained(out)


def hf_model_dir(gguf_path: str | os.PathLike[str]) -> Path:
    """A Hugging Face Qwen3 model folder with the GGUF's exact weights (F16/F32 files)."""
    from gguf import GGMLQuantizationType, GGUFReader
    from safetensors.numpy import save_file

    gguf_path = Path(gguf_path)
    out = gguf_path.with_name(f"{gguf_path.stem}-hf-v{_HF_VERSION}")
    if (out / "model.safetensors").is_file():
        return out
    reader = GGUFReader(str(gguf_path))
    fields = reader.fields

    def value(key: str) -> float | int:
        return fields[key].contents()  # type: ignore[no-any-return]

    arch = fields["general.architecture"].contents()
    tensors: dict[str, np.ndarray] = {}
    for t in reader.tensors:
        if t.tensor_type not in (GGMLQuantizationType.F16, GGMLQuantizationType.F32):
            raise ValueError(f"{t.name} is {t.tensor_type.name}; transformers gets the F16 file")
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        tensors[_hf_name(t.name)] = np.ascontiguousarray(np.asarray(t.data).reshape(shape))
    n_vocab = tensors["embed_tokens.weight"].shape[0]
    config = {
        "architectures": ["Qwen3Model"],
        "model_type": "qwen3",
        "vocab_size": n_vocab,
        "hidden_size": int(value(f"{arch}.embedding_length")),
        "intermediate_size": int(value(f"{arch}.feed_forward_length")),
        "num_hidden_layers": int(value(f"{arch}.block_count")),
        "num_attention_heads": int(value(f"{arch}.attention.head_count")),
        "num_key_value_heads": int(value(f"{arch}.attention.head_count_kv")),
        "head_dim": int(value(f"{arch}.attention.key_length")),
        "hidden_act": "silu",
        "max_position_embeddings": int(value(f"{arch}.context_length")),
        "rms_norm_eps": float(value(f"{arch}.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(value(f"{arch}.rope.freq_base")),
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "tie_word_embeddings": True,
        "use_sliding_window": False,
        "eos_token_id": int(fields["tokenizer.ggml.eos_token_id"].contents()),
        "torch_dtype": "float32",
    }
    tmp = out.with_name(out.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    _tokenizer_json(fields, tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def _count_tokens(tokenizer: object, texts: Sequence[str]) -> list[int]:
    """Tokens per text, EOS included: the same ids llama.cpp gets (the bench checks the vectors)."""
    return [len(ids) for ids in tokenizer(list(texts))["input_ids"]]  # type: ignore[operator]


def _sorted_batches(texts: Sequence[str], batch_size: int) -> list[list[int]]:
    """sentence-transformers' order: longest text first, then fixed-size batches."""
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


class TransformersEmbedder:
    """transformers ``Qwen3Model`` in fp32 on CPU, as sentence-transformers runs it."""

    def __init__(self, model_dir: str | os.PathLike[str], threads: int) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        torch.set_num_threads(threads)
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return _count_tokens(self.tokenizer, texts)

    def embed(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        torch = self.torch
        out = np.empty((len(texts), self.model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for idx in _sorted_batches(texts, batch_size):
                enc = self.tokenizer([texts[i] for i in idx], padding=True, return_tensors="pt")
                hidden = self.model(**enc).last_hidden_state[:, -1]
                out[idx] = torch.nn.functional.normalize(hidden, dim=-1).numpy()
        return out


def _onnx_dir(model_dir: Path) -> Path:
    """Where the ONNX export of a Hugging Face folder is cached."""
    stem = model_dir.name.rsplit("-hf-", 1)[0]
    return model_dir.with_name(f"{stem}-onnx-v{_ONNX_VERSION}")


def onnx_model(gguf_path: str | os.PathLike[str]) -> Path:
    """The transformers model exported to ONNX (fp32, pooled and normalised in the graph)."""
    import torch
    from transformers import AutoModel

    model_dir = hf_model_dir(gguf_path)
    out = _onnx_dir(model_dir) / "model.onnx"
    if out.is_file():
        return out

    class Pooled(torch.nn.Module):
        def __init__(self, base: torch.nn.Module) -> None:
            super().__init__()
            self.base = base

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.base(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return torch.nn.functional.normalize(hidden[:, -1], dim=-1)

    # Eager attention exports to plain MatMul/Softmax, which ONNX Runtime fuses itself.
    base = AutoModel.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    wrapper = Pooled(base).eval()
    ids = torch.full((2, 9), 100, dtype=torch.int64)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    tmp = out.parent.with_name(out.parent.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with torch.inference_mode():
        torch.onnx.export(
            wrapper, (ids, mask), str(tmp / out.name), input_names=["input_ids", "attention_mask"],
            output_names=[_ONNX_OUTPUT], opset_version=_ONNX_OPSET, dynamo=True,
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
            external_data=True,
        )
    shutil.rmtree(out.parent, ignore_errors=True)
    os.replace(tmp, out.parent)
    return out


class OnnxEmbedder:
    """ONNX Runtime (CPU, fp32, all graph optimisations) on the exported model."""

    def __init__(self, gguf_path: str | os.PathLike[str], threads: int) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(hf_model_dir(gguf_path))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(onnx_model(gguf_path)), opts, providers=["CPUExecutionProvider"]
        )

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return _count_tokens(self.tokenizer, texts)

    def embed(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        out: np.ndarray | None = None
        for idx in _sorted_batches(texts, batch_size):
            enc = self.tokenizer([texts[i] for i in idx], padding=True, return_tensors="np")
            (vec,) = self.session.run(
                None, {"input_ids": enc["input_ids"].astype(np.int64),
                       "attention_mask": enc["attention_mask"].astype(np.int64)},
            )
            if out is None:
                out = np.empty((len(texts), vec.shape[1]), dtype=np.float32)
            out[idx] = vec
        assert out is not None
        return out
