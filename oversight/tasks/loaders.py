"""Loaders for real multiple-choice datasets from local files: QuALITY, GPQA, MMLU, BoolQ, and
generic JSONL/CSV with a field mapping.

Every loader returns a `Loaded` list of `Question`s (id, question, options, correct index, context
for passage tasks, metadata with family and split). Files are read from disk only; `datasets` is
used for parquet/arrow files when it is installed (the `data` extra), plain csv/json otherwise.

Bad input stops with a `DataError` naming the file, line and field. With `skip_malformed=True`
bad rows are skipped instead, and never silently: the count and reasons are on `Loaded.skipped`
and logged as a warning. A file that yields no question at all is an error either way.

Common options:
- `n`: keep a seeded random subset of n questions (in file order); None keeps all;
- `n_options`: keep the correct option and the n_options - 1 best distractors, in their original
  relative order. QuALITY ranks distractors by the annotators' `untimed_best_distractor` votes,
  then by how many speed annotators chose them, then by a seeded draw; the other datasets have no
  such votes and draw distractors at random (seeded by `seed` and the question id). None keeps
  every option;
- `seed`: drives the subset, distractor draws and GPQA's option order.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from oversight.errors import ConfigError, DataError
from oversight.tasks.rows import (
    LETTERS, _cell, _csv_dicts, _csv_rows, _existing, _field, _int_in, _jsonl, _letter, _options, _reject,
    _RowError, _split_from_name, _table_rows, _text,
)
from typing import ClassVar

from pydantic import Field

from oversight.plugins import Task
from oversight.types import Question

log = logging.getLogger(__name__)


class Loaded(list):
    """A list of Questions that also says what was skipped and where it came from."""

    def __init__(self, questions: Iterable[Question], skipped: Sequence[str] = (), source: str = ""):
        super().__init__(questions)
        self.skipped: list[str] = list(skipped)
        self.source = source


def load(name: str, **kwargs: Any) -> Loaded:
    """Load a dataset by family name: quality, gpqa, mmlu, boolq, jsonl or csv."""
    if name not in LOADERS:
        raise ConfigError(f"task loader {name!r} is unknown; valid: {sorted(LOADERS)}")
    return LOADERS[name](**kwargs)


# ---- QuALITY --------------------------------------------------------------------------------


def load_quality(
    path: str, n: int | None = None, n_options: int | None = 2, seed: int = 0, skip_malformed: bool = False,
    hard: bool = False, split: str | None = None,
) -> Loaded:
    """QuALITY's released JSONL: one article per line with `article` and `questions[]` (question,
    options, 1-based gold_label, difficult flag, `validation` and `speed_validation` annotations).

    `hard=True` keeps the HARD subset (difficult == 1), the one the debate papers use. The article
    is the question's hidden context."""
    _check_counts(n, n_options)
    file = _existing(path)
    split = split or _split_from_name(file)
    questions: list[Question] = []
    skipped: list[str] = []
    for line, record in _jsonl(file, skipped if skip_malformed else None):
        try:
            article = _field(record, "article", str)
            raw_questions = _field(record, "questions", list)
        except _RowError as err:
            _reject(file, line, err, skipped, skip_malformed)
            continue
        article_id = str(record.get("article_id") or record.get("set_unique_id") or f"line{line}")
        for k, item in enumerate(raw_questions):
            try:
                question = _quality_question(item, k, article, article_id, record, split, n_options, seed)
            except _RowError as err:
                _reject(file, line, err, skipped, skip_malformed)
                continue
            if hard and not question.metadata["hard"]:
                continue
            questions.append(question)
    return _finish(questions, skipped, file, n, seed)


def _quality_question(item, k, article, article_id, record, split, n_options, seed) -> Question:
    where = f"questions[{k}]"
    if not isinstance(item, dict):
        raise _RowError(where, "must be an object")
    text = _field(item, "question", str, where)
    options = _options(_field(item, "options", list, where), f"{where}.options")
    if "gold_label" not in item or item["gold_label"] is None:
        raise _RowError(f"{where}.gold_label", "is missing (QuALITY's test split has no labels)")
    gold = _int_in(item["gold_label"], 1, len(options), f"{where}.gold_label") - 1
    qid = str(item.get("question_unique_id") or f"{article_id}-q{k}")
    best_votes: Counter = Counter()
    for v in item.get("validation") or []:
        choice = v.get("untimed_best_distractor") if isinstance(v, dict) else None
        if isinstance(choice, int) and 1 <= choice <= len(options) and choice - 1 != gold:
            best_votes[choice - 1] += 1
    speed_votes: Counter = Counter()
    for v in item.get("speed_validation") or []:
        choice = v.get("speed_answer") if isinstance(v, dict) else None
        if isinstance(choice, int) and 1 <= choice <= len(options) and choice - 1 != gold:
            speed_votes[choice - 1] += 1
    rng = random.Random(f"{seed}:{qid}")
    wrong = [i for i in range(len(options)) if i != gold]
    draw = {i: rng.random() for i in wrong}
    ranked = sorted(wrong, key=lambda i: (-best_votes[i], -speed_votes[i], draw[i]))
    kept, correct = _reduce(options, gold, n_options, ranked)
    untimed = [v.get("untimed_answer") for v in item.get("validation") or [] if isinstance(v, dict)]
    speed = [v.get("speed_answer") for v in item.get("speed_validation") or [] if isinstance(v, dict)]
    return Question(
        id=qid, question=text, options=kept, correct=correct, context=article,
        metadata={
            "family": "quality", "split": split, "article_id": article_id, "title": record.get("title"),
            "hard": bool(item.get("difficult")),
            "untimed_accuracy": _accuracy(untimed, gold), "speed_accuracy": _accuracy(speed, gold),
            "distractor_rule": "untimed_best_distractor votes" if best_votes else (
                "speed_validation votes" if speed_votes else "seeded draw"),
        },
    )


def _accuracy(answers: list[Any], gold: int) -> float | None:
    answers = [a for a in answers if isinstance(a, int)]
    return sum(a - 1 == gold for a in answers) / len(answers) if answers else None


# ---- GPQA -----------------------------------------------------------------------------------

GPQA_COLUMNS = ("Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")


def load_gpqa(
    path: str, n: int | None = None, n_options: int | None = None, seed: int = 0, skip_malformed: bool = False,
    split: str | None = None,
) -> Loaded:
    """GPQA's CSV (Question, Correct Answer, Incorrect Answer 1..3, Record ID, domains). The file
    lists the correct answer first, so options are shuffled (seeded by `seed` and the record id)."""
    _check_counts(n, n_options)
    file = _existing(path)
    split = split or _split_from_name(file)
    questions: list[Question] = []
    skipped: list[str] = []
    for line, row in _csv_dicts(file, GPQA_COLUMNS):
        try:
            if isinstance(row, _RowError):
                raise row
            text = _cell(row, "Question")
            correct_text = _cell(row, "Correct Answer")
            wrong_texts = [_cell(row, f"Incorrect Answer {i}") for i in (1, 2, 3)]
            qid = (row.get("Record ID") or "").strip() or f"gpqa-line{line}"
            rng = random.Random(f"{seed}:{qid}")
            ranked = rng.sample(range(1, 4), 3)
            kept, correct = _reduce([correct_text, *wrong_texts], 0, n_options, ranked)
            order = rng.sample(range(len(kept)), len(kept))
        except _RowError as err:
            _reject(file, line, err, skipped, skip_malformed)
            continue
        questions.append(Question(
            id=qid, question=text, options=[kept[i] for i in order], correct=order.index(correct),
            metadata={
                "family": "gpqa", "split": split, "domain": (row.get("High-level domain") or "").strip() or None,
                "subdomain": (row.get("Subdomain") or "").strip() or None,
            },
        ))
    return _finish(questions, skipped, file, n, seed)


# ---- MMLU -----------------------------------------------------------------------------------


def load_mmlu(
    path: str, n: int | None = None, n_options: int | None = None, seed: int = 0, skip_malformed: bool = False,
    subjects: Sequence[str] | None = None, split: str | None = None,
) -> Loaded:
    """MMLU: the original header-less CSVs (question, A, B, C, D, answer letter), one file per
    subject (`<subject>_<split>.csv`; `path` may be one file or a directory of them), or a
    parquet/arrow file with columns question, choices, answer (0-based), subject (needs the `data`
    extra, i.e. `datasets`)."""
    _check_counts(n, n_options)
    root = _existing(path)
    wanted = set(subjects) if subjects else None
    questions: list[Question] = []
    skipped: list[str] = []
    if root.is_dir():
        files = sorted(p for p in root.rglob("*.csv"))
        if not files:
            raise DataError(f"{root}: no .csv files in this directory (task.path)")
    else:
        files = [root]
    for file in files:
        if file.suffix in (".parquet", ".arrow"):
            rows: Iterator[tuple[int, Any]] = _table_rows(file)
            subject_default = None
        else:
            rows = _csv_rows(file)
            subject_default = _subject_from_name(file)
        file_split = split or _split_from_name(file)
        for line, row in rows:
            try:
                if isinstance(row, dict):
                    text = _field(row, "question", str)
                    options = _options(_field(row, "choices", list), "choices")
                    correct = _int_in(row.get("answer"), 0, len(options) - 1, "answer")
                    subject = str(row.get("subject") or subject_default or "")
                else:
                    if len(row) == 6 and [c.strip().lower() for c in row] == ["question", "a", "b", "c", "d", "answer"]:
                        continue  # a header row
                    if len(row) != 6:
                        raise _RowError("row", f"has {len(row)} columns, expected 6 (question, A, B, C, D, answer)")
                    text = row[0].strip()
                    if not text:
                        raise _RowError("question", "is empty")
                    options = _options(row[1:5], "A-D")
                    correct = _letter(row[5], len(options), "answer")
                    subject = subject_default or ""
                if wanted is not None and subject not in wanted:
                    continue
                qid = f"mmlu-{subject or file.stem}-{line}"
                kept, correct = _reduce(options, correct, n_options, random.Random(f"{seed}:{qid}").sample(
                    [i for i in range(len(options)) if i != correct], len(options) - 1))
            except _RowError as err:
                _reject(file, line, err, skipped, skip_malformed)
                continue
            questions.append(Question(
                id=qid, question=text, options=kept, correct=correct,
                metadata={"family": "mmlu", "split": file_split, "subject": subject or None},
            ))
    return _finish(questions, skipped, root, n, seed)


def _subject_from_name(file: Path) -> str:
    stem = file.stem
    for suffix in ("_test", "_dev", "_val", "_validation", "_train", "_auxiliary_train"):
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


# ---- BoolQ ----------------------------------------------------------------------------------


def load_boolq(
    path: str, n: int | None = None, n_options: int | None = 2, seed: int = 0, skip_malformed: bool = False,
    split: str | None = None,
) -> Loaded:
    """BoolQ's JSONL (question, passage, answer: bool; SuperGLUE's copy calls it `label`). Options
    are ("yes", "no"); the passage is the hidden context."""
    if n_options not in (None, 2):
        raise ConfigError(f"task.n_options={n_options}: BoolQ questions have exactly 2 options (yes, no)")
    _check_counts(n, n_options)
    file = _existing(path)
    split = split or _split_from_name(file)
    questions: list[Question] = []
    skipped: list[str] = []
    for line, record in _jsonl(file, skipped if skip_malformed else None):
        try:
            text = _field(record, "question", str)
            passage = _field(record, "passage", str)
            key = "answer" if "answer" in record else "label"
            answer = record.get(key)
            if isinstance(answer, int) and not isinstance(answer, bool) and answer in (0, 1):
                answer = bool(answer)
            if not isinstance(answer, bool):
                raise _RowError(key, f"must be true or false, got {answer!r}")
        except _RowError as err:
            _reject(file, line, err, skipped, skip_malformed)
            continue
        qid = str(record.get("idx", f"line{line}"))
        questions.append(Question(
            id=f"boolq-{qid}", question=text, options=["yes", "no"], correct=0 if answer else 1, context=passage,
            metadata={"family": "boolq", "split": split, "title": record.get("title")},
        ))
    return _finish(questions, skipped, file, n, seed)


# ---- generic JSONL / CSV --------------------------------------------------------------------

ANSWER_FORMATS = ("auto", "index", "index1", "letter", "text")


def load_jsonl(
    path: str, n: int | None = None, n_options: int | None = None, seed: int = 0, skip_malformed: bool = False,
    question_field: str = "question", options_field: str | Sequence[str] = "options", answer_field: str = "answer",
    answer_format: str = "auto", context_field: str | None = None, id_field: str | None = None,
    metadata_fields: Sequence[str] = (), family: str = "jsonl", split: str | None = None,
) -> Loaded:
    """Any JSONL of multiple-choice questions. `options_field` names a list-valued field, or a list
    of fields (one per option). `answer_format`: index (0-based), index1 (1-based), letter (A, B,
    ...), text (equal to one option), or auto (an integer is 0-based, a string matching exactly one
    option is that option, a single letter is a letter)."""
    _check_counts(n, n_options)
    file = _existing(path)
    _check_answer_format(answer_format)
    skipped: list[str] = []
    records = _jsonl(file, skipped if skip_malformed else None)
    mapping = _Mapping(question_field, options_field, answer_field, answer_format, context_field, id_field,
                       tuple(metadata_fields), family, split or _split_from_name(file))
    return _generic(file, records, mapping, n, n_options, seed, skip_malformed, skipped)


def load_csv(
    path: str, n: int | None = None, n_options: int | None = None, seed: int = 0, skip_malformed: bool = False,
    question_field: str = "question", options_field: str | Sequence[str] = "options", answer_field: str = "answer",
    answer_format: str = "auto", context_field: str | None = None, id_field: str | None = None,
    metadata_fields: Sequence[str] = (), family: str = "csv", split: str | None = None,
) -> Loaded:
    """Any CSV with a header row. `options_field` is a list of columns (one per option) or one
    column holding a JSON list; other fields as in `load_jsonl`."""
    _check_counts(n, n_options)
    file = _existing(path)
    _check_answer_format(answer_format)
    fields = [options_field] if isinstance(options_field, str) else list(options_field)
    required = [question_field, *fields, answer_field] + ([context_field] if context_field else [])
    mapping = _Mapping(question_field, options_field, answer_field, answer_format, context_field, id_field,
                       tuple(metadata_fields), family, split or _split_from_name(file))
    return _generic(file, _csv_dicts(file, required), mapping, n, n_options, seed, skip_malformed, [])


class _Mapping:
    def __init__(self, question, options, answer, answer_format, context, id_field, metadata, family, split):
        self.question, self.options, self.answer = question, options, answer
        self.answer_format, self.context, self.id_field = answer_format, context, id_field
        self.metadata, self.family, self.split = metadata, family, split


def _generic(file: Path, records, m: _Mapping, n, n_options, seed, skip_malformed, skipped: list[str]) -> Loaded:
    questions: list[Question] = []
    first_line: dict[str, int] = {}  # question id -> the line that gave it
    for line, record in records:
        try:
            if isinstance(record, _RowError):
                raise record
            if not isinstance(record, dict):
                raise _RowError("(line)", "must be a JSON object")
            text = _text(record.get(m.question), m.question)
            if isinstance(m.options, str):
                raw = record.get(m.options)
                if isinstance(raw, str):
                    try:
                        raw = json.loads(raw)
                    except json.JSONDecodeError:
                        raise _RowError(m.options, "must hold a JSON list of options") from None
                if not isinstance(raw, list):
                    raise _RowError(m.options, f"must be a list of options, got {type(raw).__name__}")
                options = _options(raw, m.options)
            else:
                options = [_text(record.get(f), f) for f in m.options]
            correct = _answer(record.get(m.answer), options, m.answer_format, m.answer)
            qid = f"{m.family}-line{line}"
            if m.id_field:
                qid = _text(record.get(m.id_field), m.id_field)
            if qid in first_line:
                raise _RowError(m.id_field or "(id)", f"question id {qid!r} is also the id of line {first_line[qid]}; "
                                "ids must be unique")
            context = _text(record.get(m.context), m.context) if m.context else None
            ranked = random.Random(f"{seed}:{qid}").sample(
                [i for i in range(len(options)) if i != correct], len(options) - 1)
            kept, correct = _reduce(options, correct, n_options, ranked)
        except _RowError as err:
            _reject(file, line, err, skipped, skip_malformed)
            continue
        first_line[qid] = line
        metadata = {"family": m.family, "split": m.split}
        metadata.update({f: record.get(f) for f in m.metadata})
        questions.append(Question(id=qid, question=text, options=kept, correct=correct, context=context,
                                  metadata=metadata))
    return _finish(questions, skipped, file, n, seed)


def _check_answer_format(answer_format: str) -> None:
    if answer_format not in ANSWER_FORMATS:
        raise ConfigError(f"task.answer_format={answer_format!r} is unknown; valid: {list(ANSWER_FORMATS)}")


def _answer(value: Any, options: list[str], answer_format: str, field: str) -> int:
    if value is None:
        raise _RowError(field, "is missing")
    if answer_format == "index" or (answer_format == "auto" and isinstance(value, int) and not isinstance(value, bool)):
        return _int_in(value, 0, len(options) - 1, field)
    if answer_format == "index1":
        return _int_in(value, 1, len(options), field) - 1
    if answer_format == "letter":
        return _letter(value, len(options), field)
    if not isinstance(value, str):
        raise _RowError(field, f"must be a string or an integer, got {value!r}")
    matches = [i for i, option in enumerate(options) if option == value.strip()]
    if len(matches) == 1:
        return matches[0]
    if answer_format == "auto" and len(value.strip()) == 1 and value.strip().upper() in LETTERS[: len(options)]:
        return _letter(value, len(options), field)
    raise _RowError(field, f"{value!r} matches {len(matches)} of the options {options}, expected exactly 1")


# ---- shared helpers -------------------------------------------------------------------------


def _finish(questions: list[Question], skipped: list[str], source: Path, n: int | None, seed: int) -> Loaded:
    if skipped:
        log.warning("%s: skipped %d malformed row(s); first: %s", source, len(skipped), skipped[0])
    if not questions:
        detail = f" ({len(skipped)} malformed row(s) skipped; first: {skipped[0]})" if skipped else ""
        raise DataError(f"{source}: no questions loaded{detail}")
    ids = Counter(q.id for q in questions)
    duplicates = [qid for qid, count in ids.items() if count > 1]
    if duplicates:
        raise DataError(f"{source}: question ids are not unique, e.g. {duplicates[:3]}")
    if n is not None and n < len(questions):
            keep = sorted(random.Random(seed).sample(range(len(questions)), int(n)))
            questions = [questions[i] for i in keep]
    return Loaded(questions, skipped, str(source))


def _reduce(options: list[str], correct: int, n_options: int | None, ranked: list[int]) -> tuple[list[str], int]:
    """Keep the correct option and the best n_options - 1 distractors, in original order."""
    if n_options is None or n_options == len(options):
        return list(options), correct
    if n_options > len(options):
        raise _RowError("options", f"has {len(options)} options, fewer than n_options={n_options}")
    keep = sorted([correct, *ranked[: n_options - 1]])
    return [options[i] for i in keep], keep.index(correct)


def _check_counts(n: int | None, n_options: int | None) -> None:
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ConfigError(f"task.n={n!r} must be an integer >= 1 (or null for all questions)")
    if n_options is not None and (not isinstance(n_options, int) or isinstance(n_options, bool) or n_options < 2):
        raise ConfigError(f"task.n_options={n_options!r} must be an integer >= 2 (or null for all options)")


LOADERS: dict[str, Callable[..., Loaded]] = {
    "quality": load_quality, "gpqa": load_gpqa, "mmlu": load_mmlu, "boolq": load_boolq,
    "jsonl": load_jsonl, "csv": load_csv,
}


# ---- the task plugins (conf/task/*.yaml) ------------------------------------------------------------


class FileTask(Task):
    """A dataset read from local files; `questions()` calls the family's loader."""

    path: str
    n: int | None = Field(default=None, ge=1)
    n_options: int | None = Field(default=None, ge=2)
    seed: int = 0
    skip_malformed: bool = False
    split: str | None = None
    family: str = ""

    def questions(self) -> list[Question]:
        loader = LOADERS[type(self).loader_name]
        return loader(**self.model_dump(exclude={"name", "family"} if type(self).loader_name not in ("jsonl", "csv")
                                         else {"name"}))

    loader_name: ClassVar[str] = ""


class Quality(FileTask):
    loader_name: ClassVar[str] = "quality"
    name: str = "quality"
    n_options: int | None = Field(default=2, ge=2)
    hard: bool = False


class GPQA(FileTask):
    loader_name: ClassVar[str] = "gpqa"
    name: str = "gpqa"


class MMLU(FileTask):
    loader_name: ClassVar[str] = "mmlu"
    name: str = "mmlu"
    subjects: list[str] | None = None


class BoolQ(FileTask):
    loader_name: ClassVar[str] = "boolq"
    name: str = "boolq"
    n_options: int | None = Field(default=2, ge=2)


class JSONL(FileTask):
    """Any JSONL (or, as CSV, any CSV) of multiple-choice questions with a field mapping."""

    loader_name: ClassVar[str] = "jsonl"
    name: str = "jsonl"
    family: str = "jsonl"
    question_field: str = "question"
    options_field: str | list[str] = "options"
    answer_field: str = "answer"
    answer_format: str = "auto"
    context_field: str | None = None
    id_field: str | None = None
    metadata_fields: list[str] = Field(default_factory=list)


class CSV(JSONL):
    loader_name: ClassVar[str] = "csv"
    name: str = "csv"
    family: str = "csv"
