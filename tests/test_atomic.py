"""Atomic writes: whole or absent, and safe when several processes write the same file."""

import multiprocessing

import pytest

from ml4ge.atomic import atomic_path, write_text


def _write_many(path: str, text: str, start) -> None:
    start.wait()  # both processes write at the same time
    for _ in range(2000):
        write_text(path, text)


def test_processes_writing_the_same_file_each_leave_a_whole_copy(tmp_path):
    """The workers of a multi-worker run all write arguments.json: none may fail, and the file is one whole copy."""
    path = tmp_path / "arguments.json"
    texts = ["a" * 50_000, "b" * 50_000]
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(len(texts))
    writers = [context.Process(target=_write_many, args=(str(path), text, start)) for text in texts]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=60)
    assert [writer.exitcode for writer in writers] == [0, 0]
    assert path.read_text() in texts
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arguments.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_text(tmp_path / "table.tsv", "old")
    with pytest.raises(RuntimeError), atomic_path(path) as temporary:
        temporary.write_text("half")
        raise RuntimeError("writer failed")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.tsv"]
