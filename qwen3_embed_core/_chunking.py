"""Split long text into chunks that fit a token budget, measured by the model itself.

The budget is a hard limit checked with the caller's ``count_tokens`` (for
:class:`Qwen3Embedder` that is the model's own tokenizer, EOS and any
document instruction included), so a chunk never exceeds what the model
will see. Chunks end on word boundaries (a word longer than the budget is
cut between characters), keep the source's own whitespace inside, and
overlap by whole words: each chunk starts with the last words of the
previous one, as many as fit in ``overlap_tokens``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ._errors import ConfigurationError

# A word with the whitespace in front of it. Qwen3's pre-tokenizer (like
# GPT-2's) attaches a leading space to the word after it, so cutting before
# the whitespace keeps token counts of the pieces close to additive.
_WORD = re.compile(r"\s*\S+")


def chunk_text(
    text: str,
    count_tokens: Callable[[str], int],
    max_tokens: int,
    overlap_tokens: int = 0,
) -> list[str]:
    """Cut ``text`` into chunks of at most ``max_tokens`` tokens each.

    ``count_tokens``: tokens a text costs as the model sees it (e.g.
    ``Qwen3Embedder.count_tokens``). ``max_tokens``: the budget per chunk, in
    those tokens. ``overlap_tokens``: how many tokens (at most) each chunk
    repeats from the end of the previous one, in whole words; 0 for none.
    Returns the chunks in order, stripped of surrounding whitespace; a text
    that is blank gives no chunks. Costs about ``2 * log2(max_tokens)`` calls
    of ``count_tokens`` per chunk (binary search over word boundaries).
    """
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 2:
        raise ConfigurationError(f"max_tokens must be an integer >= 2, not {max_tokens!r}")
    if not 0 <= overlap_tokens < max_tokens:
        raise ConfigurationError(
            f"overlap_tokens must be between 0 and max_tokens - 1 ({max_tokens - 1}), "
            f"not {overlap_tokens!r}"
        )
    if not text.strip():
        return []
    # Cut points: the start of every word, and the end of the text.
    cuts = [m.start() for m in _WORD.finditer(text)] + [len(text)]

    def cost(a: int, b: int) -> int:
        piece = text[cuts[a] : cuts[b]].strip()
        return count_tokens(piece) if piece else 0

    chunks: list[str] = []
    start = 0
    while start < len(cuts) - 1:
        if cost(start, start + 1) > max_tokens:
            _split_word(text, cuts, start, count_tokens, max_tokens)
            continue
        # Every word costs at least one token, so the answer lies within
        # max_tokens words: the search stays logarithmic in the budget.
        last = min(len(cuts) - 1, start + max_tokens)
        def fits(i: int, first: int = start) -> bool:
            return cost(first, i) <= max_tokens

        end = _last_fitting(start + 1, last, fits)
        chunks.append(text[cuts[start] : cuts[end]].strip())
        if end == len(cuts) - 1:
            break
        start = _next_start(start, end, cost, overlap_tokens, max_tokens)
    return chunks


def _first_fitting(lo: int, hi: int, fits: Callable[[int], bool]) -> int:
    """Smallest i in [lo, hi) with fits(i), for fits monotone in i; hi if none."""
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _last_fitting(lo: int, hi: int, fits: Callable[[int], bool]) -> int:
    """Largest i in [lo, hi] with fits(i), for fits true up to some i and false after;
    lo if none."""
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _next_start(
    start: int, end: int, cost: Callable[[int, int], int], overlap_tokens: int, max_tokens: int
) -> int:
    """Where the chunk after ``[start, end)`` begins: the last words that fit the overlap.

    The overlap also leaves room for the next new word, else a long word
    would make every following chunk repeat the overlap and advance by one.
    """
    if overlap_tokens == 0:
        return end
    first = _first_fitting(start + 1, end, lambda i: cost(i, end) <= overlap_tokens)
    return _first_fitting(first, end, lambda i: cost(i, end + 1) <= max_tokens)


def _split_word(
    text: str, cuts: list[int], start: int, count_tokens: Callable[[str], int], max_tokens: int
) -> None:
    """Add a cut inside the word at ``cuts[start]`` so its first part fits the budget."""
    a, b = cuts[start], cuts[start + 1]
    while text[a].isspace():  # the word proper, not the whitespace before it
        a += 1
    # The longest prefix that fits (checked: even one character may not).
    lo = _last_fitting(a + 1, b - 1, lambda i: count_tokens(text[a:i]) <= max_tokens)
    if count_tokens(text[a:lo]) > max_tokens:
        raise ConfigurationError(
            f"max_tokens={max_tokens} is too small: a single character costs more "
            "(the EOS token and any document instruction count too)"
        )
    cuts.insert(start + 1, lo)


def chunk_by_tokens(
    text: str,
    starts: list[int | None],
    count_tokens: Callable[[str], int],
    max_tokens: int,
    overlap_tokens: int = 0,
    overhead: int = 1,
) -> list[str]:
    """Cut ``text`` on its own token offsets: tokenized once, each chunk checked once.

    ``starts``: where each token of ``text`` (the text alone) begins, as a
    character offset, None for a token that begins inside a character (a
    byte-level piece). ``overhead``: tokens the model adds to every text (EOS,
    a document instruction). Chunks end before a token that starts or follows
    whitespace (a word boundary; a word longer than the budget is cut between
    its tokens), hold at most ``max_tokens`` tokens by ``count_tokens`` (the
    check, in case a cut changes how the edges tokenize), and overlap by the
    whole words of at most ``overlap_tokens`` tokens.
    """
    import bisect

    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 2:
        raise ConfigurationError(f"max_tokens must be an integer >= 2, not {max_tokens!r}")
    if not 0 <= overlap_tokens < max_tokens:
        raise ConfigurationError(
            f"overlap_tokens must be between 0 and max_tokens - 1 ({max_tokens - 1}), "
            f"not {overlap_tokens!r}")
    budget = max_tokens - overhead
    if budget < 1:
        raise ConfigurationError(
            f"max_tokens={max_tokens} is too small: the model adds {overhead} tokens to every "
            "text (the EOS token and any document instruction)")
    n = len(starts)
    if not text.strip() or n == 0:
        return []

    def pos(i: int) -> int:
        at = starts[i] if i < n else len(text)
        assert at is not None
        return at

    cuttable = [i for i in range(1, n) if starts[i] is not None]
    words = [i for i in cuttable if text[pos(i)].isspace() or text[pos(i) - 1].isspace()]
    cuttable.append(n)
    words.append(n)
    chunks: list[str] = []
    start = 0
    while start < n:
        end = min(start + budget, n)
        k = bisect.bisect_right(words, end) - 1
        if k < 0 or words[k] <= start:  # one word longer than the budget: cut inside it
            k2 = bisect.bisect_right(cuttable, end) - 1
            end = cuttable[k2] if k2 >= 0 and cuttable[k2] > start else end
        else:
            end = words[k]
        piece = text[pos(start) : pos(end)].strip()
        while piece and count_tokens(piece) > max_tokens:  # an edge tokenized otherwise
            k2 = bisect.bisect_left(cuttable, end) - 1
            if k2 < 0 or cuttable[k2] <= start:
                raise ConfigurationError(
                    f"max_tokens={max_tokens} is too small: a single token costs more")
            end = cuttable[k2]
            piece = text[pos(start) : pos(end)].strip()
        if piece:
            chunks.append(piece)
        if end >= n:
            break
        following = end
        if overlap_tokens:  # the last whole words of at most overlap_tokens tokens
            k = bisect.bisect_left(words, end - overlap_tokens)
            if k < len(words) and start < words[k] < end:
                following = words[k]
        start = following
    return chunks
