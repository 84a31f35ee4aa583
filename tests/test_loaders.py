"""Dataset loaders on small files written in each dataset's real release format."""

from __future__ import annotations

import csv
import json
import logging

import pytest

from oversight.errors import ConfigError, DataError
from oversight.tasks import loaders


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _quality_question(gold, difficult=1, best=(), speed=(), **extra):
    return {
        "question": f"Why did the captain turn back? ({gold})",
        "options": ["The storm", "The mutiny", "The map was wrong", "He was ill"],
        "gold_label": gold, "writer_label": gold, "difficult": difficult,
        "validation": [
            {"untimed_annotator_id": str(i), "untimed_answer": gold, "untimed_eval1_answerability": 1,
             "untimed_eval2_context": 2, "untimed_best_distractor": b}
            for i, b in enumerate(best)
        ],
        "speed_validation": [{"speed_annotator_id": str(i), "speed_answer": a} for i, a in enumerate(speed)],
        **extra,
    }


def _quality_article(article_id, questions):
    return {
        "article_id": article_id, "set_unique_id": f"{article_id}_set", "batch_num": "22", "writer_id": "1001",
        "source": "Gutenberg", "title": f"Title {article_id}", "year": 1950, "author": "Anon", "topic": "sci-fi",
        "article": f"Article {article_id}. The captain turned back because of the storm.", "questions": questions,
    }


def test_quality_two_options_use_best_distractor_votes(tmp_path):
    path = _jsonl(tmp_path / "QuALITY.v1.0.1.htmlstripped.dev", [
        _quality_article("a1", [
            _quality_question(1, difficult=1, best=(3, 3, 2)),  # votes: option 3 twice -> kept
            _quality_question(2, difficult=0, best=(4,)),
        ]),
        _quality_article("a2", [
            _quality_question(4, difficult=1, speed=(2, 2, 1, 4)),  # no untimed votes: speed votes pick 2
            _quality_question(3, difficult=1, question_unique_id="a2-special"),  # no votes: seeded draw
        ]),
    ])
    questions = loaders.load_quality(str(path), n_options=2)
    assert [q.id for q in questions] == ["a1-q0", "a1-q1", "a2-q0", "a2-special"]
    first = questions[0]
    assert first.options == ["The storm", "The map was wrong"] and first.correct == 0
    assert first.context.startswith("Article a1") and first.metadata["family"] == "quality"
    assert first.metadata["split"] == "dev" and first.metadata["hard"] is True
    assert first.metadata["distractor_rule"] == "untimed_best_distractor votes"
    assert questions[1].options == ["The mutiny", "He was ill"] and questions[1].correct == 0
    third = questions[2]
    assert third.options == ["The mutiny", "He was ill"] and third.correct == 1
    assert third.metadata["distractor_rule"] == "speed_validation votes"
    assert third.metadata["speed_accuracy"] == pytest.approx(0.25)
    assert questions[3].options[questions[3].correct] == "The map was wrong"
    assert questions[3].metadata["distractor_rule"] == "seeded draw"
    # the seeded draw is reproducible, and all four options are kept with n_options=None
    again = loaders.load_quality(str(path), n_options=2)
    assert again[3].options == questions[3].options
    full = loaders.load_quality(str(path), n_options=None)
    assert all(len(q.options) == 4 for q in full) and full[2].correct == 3
    hard = loaders.load_quality(str(path), n_options=2, hard=True)
    assert [q.id for q in hard] == ["a1-q0", "a2-q0", "a2-special"]


def test_quality_malformed_rows_name_file_line_and_field(tmp_path):
    good = _quality_article("a1", [_quality_question(1)])
    bad = _quality_article("a2", [_quality_question(1), _quality_question(7)])  # gold_label out of range
    path = _jsonl(tmp_path / "quality.jsonl", [good, bad])
    with pytest.raises(DataError) as err:
        loaders.load_quality(str(path))
    message = str(err.value)
    assert str(path) in message and "line 2" in message and "questions[1].gold_label" in message

    unlabeled = _quality_article("t1", [{k: v for k, v in _quality_question(1).items() if k != "gold_label"}])
    path2 = _jsonl(tmp_path / "quality_test.jsonl", [good, unlabeled])
    (path2.open("a")).write("{not json\n")
    result = loaders.load_quality(str(path2), skip_malformed=True)
    assert len(result) == 1 and len(result.skipped) == 2
    assert "line 2" in result.skipped[0] and "gold_label" in result.skipped[0] and "test split" in result.skipped[0]
    assert "line 3" in result.skipped[1] and "not valid JSON" in result.skipped[1]


def _write_gpqa(path, rows):
    columns = ["Pre-Revision Question", "Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2",
               "Incorrect Answer 3", "Explanation", "Record ID", "High-level domain", "Subdomain"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row.get(c, "") for c in columns])
    return path


def test_gpqa_shuffles_options_and_reports_bad_rows(tmp_path):
    rows = [
        {"Question": f"What is the product of reaction {i}?\nConsider both steps.", "Correct Answer": f" right {i}\n",
         "Incorrect Answer 1": f"wrong {i}a", "Incorrect Answer 2": f"wrong {i}b", "Incorrect Answer 3": f"wrong {i}c",
         "Record ID": f"rec{i}", "High-level domain": "Chemistry", "Subdomain": "Organic"}
        for i in range(12)
    ]
    path = _write_gpqa(tmp_path / "gpqa_diamond.csv", rows)
    questions = loaders.load_gpqa(str(path))
    assert len(questions) == 12
    for i, q in enumerate(questions):
        assert q.id == f"rec{i}" and q.options[q.correct] == f"right {i}" and len(q.options) == 4
        assert q.question.endswith("Consider both steps.") and q.metadata["domain"] == "Chemistry"
    assert len({q.correct for q in questions}) > 1, "correct answers must not all sit at one position"
    two = loaders.load_gpqa(str(path), n_options=2, n=5, seed=3)
    assert len(two) == 5 and all(len(q.options) == 2 and q.options[q.correct].startswith("right") for q in two)
    assert [q.id for q in two] == [q.id for q in loaders.load_gpqa(str(path), n_options=2, n=5, seed=3)]

    rows[4]["Incorrect Answer 2"] = "   "
    path = _write_gpqa(tmp_path / "gpqa_bad.csv", rows)
    with pytest.raises(DataError) as err:
        loaders.load_gpqa(str(path))
    # each record spans three lines (newlines in the question and the answer) after a one-line
    # header, so record 4 starts on line 14
    assert f"{path}, line 14, field 'Incorrect Answer 2'" in str(err.value)
    result = loaders.load_gpqa(str(path), skip_malformed=True)
    assert len(result) == 11 and len(result.skipped) == 1

    (tmp_path / "no_cols.csv").write_text("Question,Answer\nq,a\n")
    with pytest.raises(DataError, match=r"line 1, field 'Correct Answer'"):
        loaders.load_gpqa(str(tmp_path / "no_cols.csv"))


def test_mmlu_directory_of_subject_csvs(tmp_path):
    root = tmp_path / "data" / "test"
    root.mkdir(parents=True)
    with (root / "abstract_algebra_test.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Find the degree of Q(sqrt(2)) over Q.", "0", "4", "2", "6", "C"])
        writer.writerow(["Is Z_4 cyclic?", "yes", "no", "only mod 2", "undefined", "A"])
    with (root / "virology_test.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "A", "B", "C", "D", "answer"])
        writer.writerow(["Which virus causes AIDS?", "HIV", "HPV", "HBV", "EBV", "A"])
    questions = loaders.load_mmlu(str(tmp_path / "data"))
    assert [q.metadata["subject"] for q in questions] == ["abstract_algebra", "abstract_algebra", "virology"]
    assert questions[0].options[questions[0].correct] == "2" and questions[0].metadata["split"] == "test"
    assert questions[2].options == ["HIV", "HPV", "HBV", "EBV"] and questions[2].correct == 0
    only = loaders.load_mmlu(str(tmp_path / "data"), subjects=["virology"], n_options=2)
    assert len(only) == 1 and only[0].options[only[0].correct] == "HIV" and len(only[0].options) == 2

    with (root / "virology_test.csv").open("a", newline="") as handle:
        csv.writer(handle).writerow(["Broken row", "a", "b", "c", "d", "E"])
    with pytest.raises(DataError) as err:
        loaders.load_mmlu(str(root / "virology_test.csv"))
    assert "virology_test.csv, line 3, field 'answer'" in str(err.value)
    assert "['A', 'B', 'C', 'D']" in str(err.value)


def test_mmlu_parquet_needs_datasets_or_reads_it(tmp_path):
    path = tmp_path / "test-00000-of-00001.parquet"
    try:
        import datasets  # noqa: F401
    except ImportError:
        path.write_bytes(b"PAR1")
        with pytest.raises(ConfigError, match=r"pip install -e '\.\[data\]'"):
            loaders.load_mmlu(str(path))
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({
        "question": ["2+2?"], "subject": ["elementary_mathematics"], "choices": [["3", "4", "5", "6"]], "answer": [1],
    }), path)
    (q,) = loaders.load_mmlu(str(path))
    assert q.options[q.correct] == "4" and q.metadata["subject"] == "elementary_mathematics"


def test_boolq_and_its_errors(tmp_path):
    path = _jsonl(tmp_path / "train.jsonl", [
        {"question": "do iran and afghanistan speak the same language", "title": "Persian language",
         "answer": True, "passage": "Persian is spoken in Iran and Afghanistan."},
        {"question": "is the moon made of cheese", "title": "Moon", "answer": False, "passage": "The Moon is rock."},
        {"question": "is water wet", "idx": 7, "label": 1, "passage": "Water wets things."},
    ])
    questions = loaders.load_boolq(str(path))
    assert [q.correct for q in questions] == [0, 1, 0]
    assert questions[0].options == ["yes", "no"] and questions[0].context.startswith("Persian")
    assert questions[2].id == "boolq-7" and questions[0].metadata == {
        "family": "boolq", "split": "train", "title": "Persian language"}

    bad = _jsonl(tmp_path / "dev.jsonl", [
        {"question": "q1", "passage": "p", "answer": True},
        {"question": "q2", "passage": "p", "answer": "maybe"},
        {"question": "q3", "answer": False},
    ])
    with pytest.raises(DataError) as err:
        loaders.load_boolq(str(bad))
    assert f"{bad}, line 2, field 'answer'" in str(err.value)
    result = loaders.load_boolq(str(bad), skip_malformed=True)
    assert len(result) == 1 and len(result.skipped) == 2 and "line 3, field 'passage'" in result.skipped[1]
    with pytest.raises(ConfigError, match="n_options"):
        loaders.load_boolq(str(path), n_options=4)


def test_generic_jsonl_and_csv_field_mapping(tmp_path):
    path = _jsonl(tmp_path / "my_val.jsonl", [
        {"uid": "x1", "prompt": "Capital of France?", "choices": ["Paris", "Rome", "Oslo"], "gold": "Paris",
         "doc": "France's capital is Paris.", "level": 1},
        {"uid": "x2", "prompt": "2+3?", "choices": ["4", "5"], "gold": 1, "doc": "Arithmetic.", "level": 2},
        {"uid": "x3", "prompt": "Largest planet?", "choices": ["Mars", "Jupiter", "Venus"], "gold": "B",
         "doc": "Jupiter is largest.", "level": 3},
    ])
    mapping = dict(question_field="prompt", options_field="choices", answer_field="gold", context_field="doc",
                   id_field="uid", metadata_fields=["level"])
    questions = loaders.load("jsonl", path=str(path), **mapping)
    assert [q.id for q in questions] == ["x1", "x2", "x3"]
    assert [q.options[q.correct] for q in questions] == ["Paris", "5", "Jupiter"]
    assert questions[0].context == "France's capital is Paris." and questions[2].metadata["level"] == 3
    assert questions[0].metadata["split"] == "validation"
    two = loaders.load("jsonl", path=str(path), n_options=2, **mapping)
    assert [len(q.options) for q in two] == [2, 2, 2] and two[0].options[two[0].correct] == "Paris"

    csv_path = tmp_path / "items.csv"
    csv_path.write_text("id,q,opt1,opt2,ans\na,Is ice cold?,yes,no,1\nb,Is fire cold?,yes,no,2\nc,Bad?,yes,no,3\n")
    kwargs = dict(question_field="q", options_field=["opt1", "opt2"], answer_field="ans",
                  answer_format="index1", id_field="id")
    with pytest.raises(DataError) as err:
        loaders.load("csv", path=str(csv_path), **kwargs)
    assert f"{csv_path}, line 4, field 'ans'" in str(err.value) and "1..2" in str(err.value)
    result = loaders.load("csv", path=str(csv_path), skip_malformed=True, **kwargs)
    assert [q.correct for q in result] == [0, 1] and len(result.skipped) == 1

    with pytest.raises(ConfigError, match="valid"):
        loaders.load("squad", path=str(path))
    with pytest.raises(ConfigError, match="answer_format"):
        loaders.load("jsonl", path=str(path), answer_format="roman")


def test_skipped_rows_are_logged_and_empty_results_are_errors(tmp_path, caplog):
    path = _jsonl(tmp_path / "boolq.jsonl", [
        {"question": "ok?", "passage": "p", "answer": True},
        {"question": "", "passage": "p", "answer": True},
    ])
    with caplog.at_level(logging.WARNING, logger="oversight.tasks.loaders"):
        result = loaders.load_boolq(str(path), skip_malformed=True)
    assert len(result) == 1 and "skipped 1 malformed row(s)" in caplog.text
    only_bad = _jsonl(tmp_path / "bad.jsonl", [{"question": "", "passage": "p", "answer": True}])
    with pytest.raises(DataError, match=r"no questions loaded \(1 malformed row\(s\) skipped"):
        loaders.load_boolq(str(only_bad), skip_malformed=True)
    with pytest.raises(DataError, match="no such file"):
        loaders.load_boolq(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ConfigError, match="task.n=0"):
        loaders.load_boolq(str(path), n=0)
