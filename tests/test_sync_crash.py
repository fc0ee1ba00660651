"""SIGKILL an incremental and a full sync at random moments, re-run it: the collection is exact.

The syncing process is a real child running ``qwen3-embed ingest`` on real files into
a real store (embedded Qdrant, Chroma persistent, Qdrant Edge). The corpus is ingested,
then edited (chunk counts kept, shrunk and grown; files deleted and renamed for the full sync); the
sync of the edit is killed at a random moment, the store reopened (a dead process's
lock must not block it) and checked for duplicates, then the same command re-run. The
collection must then hold exactly the current sources' chunks: 0 stale, 0 missing,
0 duplicated.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from qwen3_embed_core import check_text
from qwen3_embed_core.adapters import Chunker

from .stores import THREADS, child_env, local_embedder, tally
from .texts import long_text

CHUNK, OVERLAP, FILES = 24, 4, 20
KILLS = 2  # random moments per store and mode

# The child: the real command line, reporting each write and delete it makes to the store
# (a line on stdout after the call returns), so the parent can kill it mid-sync.
CHILD = textwrap.dedent("""
    import sys
    import qwen3_embed_cli

    opened = qwen3_embed_cli.open_collection

    def reporting(uri, create=False):
        col = opened(uri, create=create)
        for name in ("write", "delete"):
            def call(*args, _f=getattr(col, name), _n=name):
                _f(*args)
                print(_n, flush=True)
            setattr(col, name, call)
        return col

    qwen3_embed_cli.open_collection = reporting
    sys.exit(qwen3_embed_cli.main(sys.argv[1:]))
""")


@pytest.fixture(scope="module")
def emb(tiny_model):
    yield from local_embedder(tiny_model)


def _corpus(root, rng):
    root.mkdir(parents=True)
    for i in range(FILES):
        (root / f"f{i:02d}.md").write_text(long_text(rng.randrange(20, 90), seed=i),
                                           encoding="utf-8")


def _edit(root, rng, full):
    names = sorted(p.name for p in root.iterdir())
    for i, name in enumerate(names):
        path = root / name
        words = path.read_text(encoding="utf-8").split()
        kind = i % 4
        if kind == 0:  # same chunk count, other words
            path.write_text(" ".join(["changed", *words[1:]]), encoding="utf-8")
        elif kind == 1:  # shrink
            path.write_text(" ".join(words[: max(3, len(words) // 3)]), encoding="utf-8")
        elif kind == 2:  # grow
            path.write_text(" ".join(words + words), encoding="utf-8")
        if full and i % 9 == 3:
            path.unlink()
        elif full and i % 9 == 5:
            path.rename(root / f"renamed-{name}")


def _expected(emb, root):
    chunker = Chunker.of(emb, CHUNK, OVERLAP)
    return {f"{root.name}/{p.name}": chunker.cut(check_text(p.read_text(encoding="utf-8")))
            for p in sorted(root.iterdir())}


def _command(script, tiny_model, root, uri, full):
    return [sys.executable, str(script), "ingest", str(root), "--into", uri, "--model",
            str(tiny_model), "--chunk-tokens", str(CHUNK), "--overlap-tokens", str(OVERLAP),
            "--batch-size", "8", "--no-progress", "--option", f"n_threads={THREADS}",
            *(["--prune"] if full else [])]


def _never_deleted_before_written(uri, old, new):
    """A source whose stale chunks were deleted holds every one of its new chunks.

    A file's chunk ids are positional (``{source}#{i}``), so writing new chunk i
    replaces old chunk i in place: that is the write, not a delete. What only a
    delete removes is the old tail past the new chunk count, and the sync deletes
    a source's stale chunks only after all its new ones are written."""
    from qwen3_embed_core.stores import open_collection

    col = open_collection(uri)
    try:
        held: dict[str, set[str]] = {}
        for p in col.points():
            held.setdefault(p.source, set()).add(p.text)
    finally:
        col.close()
    for source, texts in new.items():
        gone = set(old.get(source, ())[len(texts):]) - set(texts) - held.get(source, set())
        if gone:
            assert set(texts) <= held.get(source, set()), (source, "deleted before written")


def _run(cmd):
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=child_env())
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("full", [False, True], ids=["incremental", "full"])
@pytest.mark.parametrize("kind", ["qdrant", "chroma", "qdrant-edge"])
def test_sigkill_at_random_moments_then_rerun_is_exact(tmp_path, tiny_model, emb, kind, full):
    rng = random.Random(17 + full)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    counts = []
    for attempt in range(KILLS):
        root = tmp_path / f"run{attempt}" / "docs"
        uri = f"{kind}:{tmp_path}/run{attempt}/db/docs"
        _corpus(root, rng)
        _run(_command(script, tiny_model, root, uri, full))
        assert tally(uri, _expected(emb, root)).exact
        before = _expected(emb, root)
        _edit(root, rng, full)
        cmd = _command(script, tiny_model, root, uri, full)

        # The sync of the edit, killed at a random moment.
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=child_env())
        # After a random number of store calls, and a random instant into the next one.
        calls, delay = rng.randint(1, 14), rng.uniform(0.0, 0.05)
        seen = 0
        for line in child.stdout:
            seen += line.strip() in ("write", "delete")
            if seen >= calls:
                break
        time.sleep(delay)
        killed = child.poll() is None
        if killed:
            os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
        after_kill = tally(uri, _expected(emb, root))  # reopens: the lock is free
        assert after_kill.duplicated == 0, after_kill
        _never_deleted_before_written(uri, before, _expected(emb, root))

        out = _run(cmd)  # the re-run finishes the job
        final = tally(uri, _expected(emb, root))
        counts.append((f"after {seen} store calls + {delay * 1000:.0f} ms", killed, after_kill,
                       final))
        assert (final.stale, final.missing, final.duplicated) == (0, 0, 0), (out, final)
        assert final.points == sum(len(v) for v in _expected(emb, root).values())
    mode = "full" if full else "incremental"
    for delay, killed, at_kill, final in counts:
        print(f"\n{kind} {mode}: kill {delay} ({'killed' if killed else 'had ended'});"
              f" at the kill {at_kill.stale} stale, {at_kill.missing} not yet written, "
              f"{at_kill.duplicated} duplicated; after the re-run {final.points} points: "
              f"{final.stale} stale, {final.missing} missing, {final.duplicated} duplicated")
    # The kills landed mid-sync: some of the edit was written, not all of it.
    assert any(k and 0 < at.missing for _, k, at, _ in counts), "no kill landed mid-sync"
