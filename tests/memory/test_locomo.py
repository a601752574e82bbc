"""The LoCoMo-format reader, on a tiny synthetic file in LoCoMo's format written by each test."""

from __future__ import annotations

import doctest
import json
from datetime import UTC, datetime

import pytest

import lumina_lab.memory.locomo as locomo_module
from lumina_lab.errors import ValidationError
from lumina_lab.memory.locomo import (
    CATEGORIES,
    LoCoMoError,
    compression_examples,
    default_path,
    load_locomo,
    normalise_evidence,
    session_time,
)


def sample(sample_id: str = "tiny-1") -> dict:
    conv = {
        "speaker_a": "Ann",
        "speaker_b": "Bob",
        "session_1_date_time": "1:56 pm on 8 May, 2023",
        "session_2_date_time": "10:00 am on 20 June, 2023",
        "session_1": [
            {"speaker": "Ann", "dia_id": "D1:1", "text": "I adopted a beagle called Rex yesterday!"},
            {"speaker": "Bob", "dia_id": "D1:2", "text": "Congrats! How old is he?"},
            {"speaker": "Ann", "dia_id": "D1:3", "text": "", "blip_caption": "a photo of a beagle"},
            {"speaker": "Bob", "dia_id": "D1:4", "text": "  "},  # nothing to remember: dropped
        ],
        "session_2": [
            {"speaker": "Bob", "dia_id": "D2:1", "text": "We went camping at the lake."},
            {"speaker": "Ann", "dia_id": "D2:2", "text": "Rex loved the beach trip.", "blip_caption": "a dog"},
        ],
        "session_3": [{"speaker": "Ann", "dia_id": "D3:1", "text": "No date on this session."}],
    }
    qa = [
        {"question": "When did Ann adopt Rex?", "answer": "7 May 2023", "evidence": ["D1:1"], "category": 2},
        {"question": "What has Ann done with Rex?", "answer": "beach", "evidence": ["D1:1; D2:2"], "category": 1},
        {"question": "What did Bob ask?", "answer": "age", "evidence": ["D:1:02", "D1:2"], "category": 4},
        {"question": "Where did Bob camp?", "answer": "lake", "evidence": ["D2:01", "D9:9"], "category": 3},
        {"question": "What did Ann bake?", "adversarial_answer": "bread", "evidence": ["D2:1"], "category": 5},
        {"question": "Unanswerable?", "answer": "n/a", "evidence": [], "category": 3},
        {"question": "Only a dropped turn?", "answer": "n/a", "evidence": ["D1:4"], "category": 4},
        {"question": "   ", "answer": "n/a", "evidence": ["D1:1"], "category": 4},
    ]
    return {"sample_id": sample_id, "conversation": conv, "qa": qa}


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny_locomo.json"
    path.write_text(json.dumps([sample("tiny-1"), sample("tiny-2")]), encoding="utf-8")
    return path


def test_docstring_examples():
    assert doctest.testmod(locomo_module, optionflags=doctest.ELLIPSIS).failed == 0


def test_evidence_ids_are_split_repaired_and_deduplicated():
    assert normalise_evidence(["D8:6; D9:17", "D:11:26", "D30:05"]) == ["D8:6", "D9:17", "D11:26", "D30:5"]
    assert normalise_evidence(["D1:2, D1:2", "D1:3 D1:4"]) == ["D1:2", "D1:3", "D1:4"]
    assert normalise_evidence(["D1:1", "D7:7", "junk", 5], known={"D1:1"}) == ["D1:1"]
    assert normalise_evidence([]) == []


def test_session_dates_are_utc_epoch_seconds():
    assert session_time("1:56 pm on 8 May, 2023") == datetime(2023, 5, 8, 13, 56, tzinfo=UTC).timestamp()
    assert session_time("10:00 am on 20 June, 2023") == datetime(2023, 6, 20, 10, 0, tzinfo=UTC).timestamp()
    with pytest.raises(ValidationError):
        session_time("sometime in spring")


def test_load_reads_turns_sessions_and_questions(tiny):
    convs = load_locomo(tiny)
    assert [c.id for c in convs] == ["tiny-1", "tiny-2"]
    c = convs[0]
    assert c.speakers == ["Ann", "Bob"]
    assert [t.dia_id for t in c.turns] == ["D1:1", "D1:2", "D1:3", "D2:1", "D2:2", "D3:1"]
    assert sorted(c.sessions()) == [1, 2, 3] and [t.index for t in c.sessions()[2]] == [0, 1]
    may8 = datetime(2023, 5, 8, 13, 56, tzinfo=UTC).timestamp()
    assert c.turns[0].ts == may8 and c.turns[3].ts > may8
    assert c.turns[-1].ts == 3 * 86400.0  # no date: day N after the epoch keeps the order
    assert c.session_dates == {1: "1:56 pm on 8 May, 2023", 2: "10:00 am on 20 June, 2023"}
    # an image-only turn is kept with a placeholder; a caption is appended
    assert c.turns[2].line() == "Ann: (shared an image) [a photo of a beagle]"
    assert c.turns[4].line("shared image: ") == "Ann: Rex loved the beach trip. [shared image: a dog]"
    item = c.turns[4].as_item()
    assert item == {
        "speaker": "Ann",
        "text": "Rex loved the beach trip.",
        "dia_id": "D2:2",
        "blip_caption": "a dog",
        "session": "2",
        "ts": c.turns[4].ts,
    }
    qs = {q.question: q for q in c.questions}
    assert len(c.questions) == 5 and c.skipped == 3
    assert qs["What has Ann done with Rex?"].evidence == ["D1:1", "D2:2"]
    assert qs["What has Ann done with Rex?"].category_name == "multi-hop"
    assert qs["What did Bob ask?"].evidence == ["D1:2"]
    assert qs["Where did Bob camp?"].evidence == ["D2:1"]  # D9:9 names no turn
    assert qs["What did Ann bake?"].answer == "bread" and qs["What did Ann bake?"].category_name == "adversarial"
    assert {q.category_name for q in c.questions} <= set(CATEGORIES.values())
    assert load_locomo(tiny, limit=1)[0].id == "tiny-1" and len(load_locomo(tiny, limit=1)) == 1
    assert "6 turns in 3 sessions" in repr(c)


def test_compression_examples_hold_the_evidence_sessions(tiny):
    convs = load_locomo(tiny)
    exs = compression_examples(convs)
    assert len(exs) == 10
    question, items, evidence = exs[1]
    assert question == "What has Ann done with Rex?" and evidence == ["D1:1", "D2:2"]
    assert [i["id"] for i in items] == ["D1:1", "D1:2", "D1:3", "D2:1", "D2:2"]
    assert items[1]["ts"] == items[0]["ts"] + 1  # session date plus the turn's index
    assert items[4]["text"].endswith("[shared image: a dog]")
    assert len(compression_examples(convs, limit=3)) == 3


def test_missing_file_names_the_path_and_the_fix(tmp_path):
    missing = tmp_path / "nowhere.json"
    with pytest.raises(LoCoMoError) as err:
        load_locomo(missing)
    assert str(missing) in str(err.value) and "locomo7.json" in str(err.value) and err.value.hint
    assert isinstance(err.value, ValidationError)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "invalid JSON"),
        ('{"not": "a list"}', "expected a list of samples"),
        ('[{"qa": []}]', "sample 0 has no 'conversation'"),
        ('[{"conversation": {"session_1": "oops"}}]', "session_1 is not a list of turns"),
        ('[{"conversation": {"session_1": [{"text": "hi"}]}}]', "lacks 'speaker' or 'dia_id'"),
        (
            '[{"conversation": {"session_1_date_time": "whenever", "session_1": []}}]',
            "session_1_date_time 'whenever' is not a date",
        ),
        ('[{"conversation": {}, "qa": {"a": 1}}]', "'qa' is not a list"),
        (
            '[{"conversation": {"session_1": [{"speaker": "A", "dia_id": "D1:1", "text": "x"}]}, '
            '"qa": [{"question": "q?", "evidence": ["D1:1"], "category": "many"}]}]',
            "has category 'many'",
        ),
    ],
)
def test_malformed_files_are_refused_with_the_path(tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content, encoding="utf-8")
    with pytest.raises(LoCoMoError, match="not a LoCoMo file") as err:
        load_locomo(bad)
    assert message in str(err.value) and str(bad) in str(err.value)


def test_bad_limit_and_default_path(tmp_path, monkeypatch, tiny):
    with pytest.raises(ValidationError, match="limit"):
        load_locomo(tiny, limit=0)
    monkeypatch.setenv("LUMINA_LOCOMO", str(tiny))
    assert default_path() == tiny and len(load_locomo()) == 2
    monkeypatch.delenv("LUMINA_LOCOMO")
    assert default_path().parts[-4:] == ("shared", "datasets", "locomo", "locomo7.json")


def test_the_benchmarks_read_files_through_the_loader(tmp_path):
    """Both LoCoMo benchmarks run on a tiny file; the recall one reports the dev / held-out split."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    path = tmp_path / "four.json"
    path.write_text(json.dumps([sample(f"tiny-{i}") for i in range(4)]), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "locomo_recall.py"), "--data", str(path), "--embedder", "hashing"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["questions"] == 20 and out["questions_skipped"] == 12
    assert out["embedder_identity"].startswith("hashing")
    assert {"multiquery", "intent"} <= set(out["steps"])
    dev, held = out["by_split"]["dev"], out["by_split"]["heldout"]
    assert dev["conversations"] == "0-2" and held["conversations"] == "3-3"
    for part in (dev, held):
        assert {"recall@5", "recall@10", "recall@20", "by_category"} <= set(part)
    assert out["dev_recall@10"] == dev["recall@10"] and out["heldout_recall@10"] == held["recall@10"]
    interval = out["heldout_multi-hop_interval"]
    assert interval["n"] == held["by_category"].get("multi-hop", {}).get("n", 0)
    if interval["n"]:
        lo, hi = interval["ci95"]
        assert lo <= out["heldout_multi-hop_recall@10"] <= hi
    proc = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "compression_quality.py"), "--data", str(path), "--ratios", "1,0.5"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["questions"] == 20
    bad = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "compression_quality.py"), "--data", str(tmp_path / "none.json")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
    )
    assert bad.returncode != 0 and "no LoCoMo file at" in bad.stderr and "fix:" in bad.stderr
