"""Local backend vectors against the numpy reference, in both GGUF flavours."""

import asyncio
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

from qwen3_embed_core import ConfigurationError, Qwen3Embedder, TextTooLongError
from qwen3_embed_core._packing import plan_packs

from .conftest import COS_MIN, cosines
from .texts import DECOMPOSED, MIXED, SHORT, long_text

LONG = long_text(1000)  # about 2,500 tokens on the tiny vocabulary
ALL = [*SHORT, *MIXED, DECOMPOSED, LONG]


def test_long_text_is_really_long(flavour_reference):
    assert len(flavour_reference.tokenize(LONG)) > 2000


def test_documents_batched_match_reference(flavour_embedder, flavour_reference):
    got = flavour_embedder.embed_documents(ALL)
    assert got.dtype == np.float32 and got.shape == (len(ALL), 64)
    cos = cosines(got, [flavour_reference.embed(t) for t in ALL])
    assert cos.min() >= COS_MIN, cos


def test_documents_one_at_a_time_match_reference(flavour_embedder, flavour_reference):
    for text in ALL:
        vec = flavour_embedder.embed_documents([text])[0]
        assert float(vec @ flavour_reference.embed(text)) >= COS_MIN, text[:40]


def test_queries_match_reference_on_formatted_string(flavour_embedder, flavour_reference):
    qs = [*SHORT[:2], MIXED[1], LONG]
    got = flavour_embedder.embed_queries(qs)
    expected = [flavour_reference.embed(flavour_embedder.format_query(q)) for q in qs]
    assert cosines(got, expected).min() >= COS_MIN
    single = flavour_embedder.embed_query(qs[0])
    assert single.shape == (64,)
    assert float(single @ expected[0]) >= COS_MIN


@pytest.mark.parametrize("dims", [32, 48])
def test_reduced_dimensions_truncate_then_renormalise(flavour, flavour_reference, dims):
    with Qwen3Embedder.local(flavour, dimensions=dims) as emb:
        got = emb.embed_documents(ALL)
        assert emb.dimensions == dims and got.shape == (len(ALL), dims)
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
        cos = cosines(got, [flavour_reference.embed(t, dimensions=dims) for t in ALL])
        assert cos.min() >= COS_MIN


@pytest.mark.parametrize("bad", [31, 65, 0, -1, 1024])
def test_out_of_range_dimensions_rejected_with_the_range(tiny_model, bad):
    with pytest.raises(ConfigurationError, match="32 to 64"):
        Qwen3Embedder.local(tiny_model, dimensions=bad)


@pytest.mark.parametrize("bad", ["64", 1.5, True])
def test_non_integer_dimensions_rejected(tiny_model, bad):
    with pytest.raises(ConfigurationError, match="integer"):
        Qwen3Embedder.local(tiny_model, dimensions=bad)


def test_every_sequence_ends_in_exactly_one_eos(flavour_embedder):
    backend = flavour_embedder.backend
    for text in [SHORT[0], "ends with <|endoftext|>", "<|endoftext|>"]:
        ids = backend.tokenize(text)
        assert ids[-1] == backend.eos_id
        assert ids.count(backend.eos_id) == 1
        assert flavour_embedder.count_tokens(text) == len(ids)


def test_literal_eos_text_is_embedded_as_text(flavour_embedder, flavour_reference):
    text = "a document that spells <|endoftext|> in the middle"
    vec = flavour_embedder.embed_documents([text])[0]
    assert float(vec @ flavour_reference.embed(text)) >= COS_MIN


def test_missing_eos_would_be_detected(flavour_embedder, flavour_reference):
    """The oracle tells a vector pooled without EOS from the right one."""
    ids = flavour_reference.tokenize(SHORT[0])
    without_eos = flavour_reference.embed_ids(ids[:-1])
    vec = flavour_embedder.embed_documents([SHORT[0]])[0]
    assert float(vec @ without_eos) < 0.99


def test_file_without_add_eos_token_fools_plain_llama_cpp(tiny_model_no_eos, reference):
    """The trap we avoid: llama-cpp-python's own embed() pools the wrong token on such files."""
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(
        str(tiny_model_no_eos), embedding=True, pooling_type=3, n_ctx=512, verbose=False
    )
    plain = np.asarray(llm.embed(SHORT[0], normalize=True))
    llm.close()
    assert float(plain @ reference.embed(SHORT[0])) < 0.99
    with Qwen3Embedder.local(tiny_model_no_eos) as emb:
        assert float(emb.embed_documents([SHORT[0]])[0] @ reference.embed(SHORT[0])) >= COS_MIN


def test_long_input_is_not_cut_at_the_batch_size(tiny_model, reference):
    """batch_tokens=128 forces a 2,000-token text through many decode chunks."""
    with Qwen3Embedder.local(tiny_model, batch_tokens=128, ubatch_tokens=64) as emb:
        vec = emb.embed_documents([LONG])[0]
    assert float(vec @ reference.embed(LONG)) >= COS_MIN


def test_over_context_input_raises_with_index_and_counts(tiny_model):
    with Qwen3Embedder.local(tiny_model, max_tokens=600) as emb:
        with pytest.raises(TextTooLongError) as info:
            emb.embed_documents([SHORT[0], LONG])
    err = info.value
    assert err.index == 1 and err.limit == 600 and err.n_tokens > 2000
    assert "index 1" in str(err) and "600" in str(err) and "truncate=True" in str(err)


def test_default_limit_is_the_model_context(embedder, reference):
    huge = long_text(3500, seed=3)
    n = len(reference.tokenize(huge))
    assert n > reference.context_length
    with pytest.raises(TextTooLongError, match=f"{n} tokens .* limit is {reference.context_length}"):
        embedder.embed_documents([huge])


def test_truncate_cuts_keeps_eos_and_warns(tiny_model, reference):
    with Qwen3Embedder.local(tiny_model, max_tokens=600, truncate=True) as emb:
        with pytest.warns(UserWarning, match="index 0 has .* truncated to 600"):
            vec = emb.embed_documents([LONG])[0]
    ids = reference.tokenize(LONG)
    expected = reference.embed_ids([*ids[:599], reference.eos_id])
    assert float(vec @ expected) >= COS_MIN


def test_packed_equals_unpacked_and_keeps_order(tiny_model):
    texts = [LONG, *SHORT, *MIXED, DECOMPOSED, long_text(300, seed=5), SHORT[0]]
    with Qwen3Embedder.local(tiny_model, batch_tokens=256, max_sequences=4) as packed:
        a = packed.embed_documents(texts)
    with Qwen3Embedder.local(tiny_model, max_sequences=1) as alone:
        b = alone.embed_documents(texts)
    assert cosines(a, list(b)).min() >= COS_MIN
    assert float(a[0] @ a[-1]) < 0.99  # different texts really differ
    assert np.allclose(a[1], a[-1], atol=1e-5)  # same text, same vector, wherever it sits


def test_plan_packs_covers_every_text_once_within_budget():
    rng = np.random.default_rng(0)
    lengths = [int(n) for n in rng.integers(2, 900, size=300)]
    seqs = [rng.integers(0, 500, size=n).astype(np.int32) for n in lengths]
    plan = plan_packs(seqs, budget=512, max_sequences=16)
    seen = sorted(i for p in plan.packs for i in p.indices)
    assert seen == list(range(300))
    for p in plan.packs:
        assert len(p.indices) <= 16
        assert p.n_tokens == sum(lengths[i] - plan.prefix_of(i) for i in p.indices)
        assert p.alone or p.n_tokens <= 512
        if p.n_tokens > 512:
            assert len(p.indices) == 1


def test_threads_get_the_vectors_they_would_get_alone(embedder):
    jobs = [[*SHORT, LONG], MIXED, [DECOMPOSED, *SHORT[::-1]], [long_text(400, seed=9)]] * 2
    alone = [embedder.embed_documents(j) for j in jobs]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = embedder.embed_documents(jobs[i])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, expected in enumerate(alone):
        assert np.allclose(results[i], expected, atol=1e-5)


async def test_async_matches_sync_and_leaves_the_loop_free(embedder):
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    docs = await embedder.aembed_documents([LONG] * 3)
    q, qs = await asyncio.gather(embedder.aembed_query(SHORT[0]), embedder.aembed_queries(SHORT))
    done.set()
    await task
    assert ticks > 3  # the loop kept running while llama.cpp worked
    assert np.allclose(docs, embedder.embed_documents([LONG] * 3), atol=1e-5)
    assert np.allclose(q, embedder.embed_query(SHORT[0]), atol=1e-5)
    assert np.allclose(qs, embedder.embed_queries(SHORT), atol=1e-5)


def test_nfd_input_is_normalised_like_the_hf_tokenizer(embedder, reference):
    import unicodedata

    nfc = unicodedata.normalize("NFC", DECOMPOSED)
    assert nfc != DECOMPOSED
    got = embedder.embed_documents([DECOMPOSED, nfc])
    assert float(got[0] @ got[1]) >= 0.999999
    assert float(got[0] @ reference.embed(DECOMPOSED)) >= COS_MIN


def test_closed_embedder_says_so(tiny_model):
    emb = Qwen3Embedder.local(tiny_model)
    emb.close()
    with pytest.raises(Exception, match="closed"):
        emb.embed_documents(["x"])


def test_no_warnings_on_the_happy_path(embedder):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        embedder.embed_documents(SHORT)


# llama.cpp multiplies Q8_0 weights with activations quantized to 8 bits too,
# which the float reference does not do: a looser bound for that file type.
@pytest.mark.parametrize(("dtype", "bound"), [("F16", COS_MIN), ("Q8_0", 0.999)])
def test_half_and_8bit_files_match_their_reference(tmp_path, dtype, bound):
    """Quantized files, short and long inputs, in a child process.

    A child process because the failure this guards against is a crash: on
    AMX CPUs llama.cpp's repacked Q8_0 kernels segfault on short inputs, which
    the default (repack=False) avoids.
    """
    import subprocess
    import sys

    from qwen3_embed_core.testing import build_model

    path = build_model(tmp_path / f"tiny-{dtype}.gguf", dtype=dtype)
    code = (
        "import sys, numpy as np\n"
        "from qwen3_embed_core import Qwen3Embedder\n"
        "from qwen3_embed_core.testing import Reference\n"
        "from tests.texts import SHORT, long_text\n"
        f"path = {str(path)!r}\n"
        "texts = ['hi', SHORT[0], long_text(300)]\n"
        "ref = Reference(path)\n"
        "with Qwen3Embedder.local(path) as emb:\n"
        "    got = emb.embed_documents(texts)\n"
        "    q = emb.embed_query('hi')\n"
        "cos = [float(v @ ref.embed(t)) for v, t in zip(got, texts)]\n"
        "cos.append(float(q @ ref.embed(emb.format_query('hi'))))\n"
        "print(min(cos))\n"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.strip().splitlines()[-1]) >= bound
