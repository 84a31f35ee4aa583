"""The data that flows through oversight: questions, model calls, transcripts, judgments, records.

Everything that is saved or configured is a pydantic model, so a record read back from disk is
validated the same way it was written.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}


class Claim(BaseModel):
    """A checkable step of a worked answer (reward questions): `question` + `prefix` is its cloze
    ("72 + 38 ="), `value` the claimed result, `alternatives` the values it is told apart from, and
    `claims` its easier parts, if any."""

    text: str
    question: str
    prefix: str
    value: str
    alternatives: list[str]
    claims: list["Claim"] = Field(default_factory=list)
    holds: bool | None = Field(default=None, description="ground truth when the task knows it: scores the "
                                                         "checks, never shown to a model")


class Question(BaseModel):
    """One datum: a question, its answer options and the ground truth."""

    model_config = ConfigDict(frozen=True)

    id: str
    question: str
    options: list[str]
    correct: int = Field(description="index of the correct option (ground truth)")
    context: str | None = Field(default=None, description="hidden passage, shown only to roles allowed to see it")
    answer_prefix: str | None = Field(default=None, description="the answer's cloze stem ('Alice lives in'): "
                                                                "options are scored as its continuations")
    reward_option: int | None = Field(default=None, description="reward questions: the option meaning "
                                                                "'the answer is right'")
    claims: list[Claim] = Field(default_factory=list, description="reward questions: the steps of the working")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def prefix(self) -> str:
        """The stem option texts continue: the task's cloze stem, else "Answer:"."""
        return self.answer_prefix or "Answer:"

    @model_validator(mode="after")
    def _check(self) -> "Question":
        if len(self.options) < 2:
            raise ValueError(f"question {self.id!r}: needs at least 2 options, got {len(self.options)}")
        if not 0 <= self.correct < len(self.options):
            raise ValueError(f"question {self.id!r}: correct={self.correct} is outside 0..{len(self.options) - 1}")
        if self.reward_option is not None and not 0 <= self.reward_option < len(self.options):
            raise ValueError(f"question {self.id!r}: reward_option={self.reward_option} is outside "
                             f"0..{len(self.options) - 1}")
        return self


class SamplingParams(BaseModel):
    """Everything about decoding that changes the answer (and so belongs in the cache key)."""

    model_config = ConfigDict(frozen=True)

    max_new_tokens: int = Field(default=64, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int = 0
    stop: tuple[str, ...] = ()


CallKind = Literal["generate", "next_token", "loglikelihood"]


class Call(BaseModel):
    """One model call, fully specified: the same Call on the same model gives the same result.

    - generate: sample a continuation of the rendered prompt;
    - next_token: log-probability of the first token of each candidate string as the next token;
    - loglikelihood: summed log-probability of each candidate string as a continuation.
    The prompt is `messages` rendered with the model's chat template, then `prefix` (the start of
    the assistant's reply, e.g. "Answer:").
    """

    model_config = ConfigDict(frozen=True)

    kind: CallKind
    messages: tuple[dict[str, str], ...]
    prefix: str = ""
    params: SamplingParams = SamplingParams()
    candidates: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> "Call":
        if self.kind != "generate" and not self.candidates:
            raise ValueError(f"a {self.kind} call needs at least one candidate")
        return self


class CallResult(BaseModel):
    """What a backend returned for one Call. A failed call has `error` set and no answer."""

    text: str | None = None
    logprobs: list[float] | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


class Quote(BaseModel):
    text: str
    verified: bool


class Turn(BaseModel):
    """One judge-visible contribution: an argument, a quote list, an answer to a question."""

    role: str = Field(description="model role that spoke, e.g. debater, consultant (bound to a model in config)")
    label: str = Field(default="", description="the speaker's name as the judge reads it; default: the role, "
                                               "capitalised")
    side: int | None = Field(default=None, description="index of the option the speaker argues for")
    round: int = 0
    text: str
    quotes: list[Quote] = Field(default_factory=list)
    node: str | None = Field(default=None, description="id of the graph node that produced this turn")

    @model_validator(mode="before")
    @classmethod
    def _earlier_records(cls, data: Any) -> Any:
        # records written before role and label were separate have one `speaker` field
        if isinstance(data, dict) and "speaker" in data and "role" not in data:
            data = {**data, "role": data["speaker"]}
            data.pop("speaker")
        return data

    @model_validator(mode="after")
    def _default_label(self) -> "Turn":
        if not self.label:
            self.label = self.role.capitalize()
        return self


class Transcript(BaseModel):
    """The judge-visible output of a protocol for one question (one episode)."""

    protocol: str
    turns: list[Turn] = Field(default_factory=list)
    passage: str | None = Field(default=None, description="hidden context, set only if the judge may see it")
    assigned_side: int | None = Field(default=None, description="consultancy: the side the consultant argued")
    episode: str = "main"
    sequential: bool = Field(default=False, description="turns were spoken in this order, each seeing the ones "
                                                        "before it: the judge reads them as spoken")
    info: dict[str, Any] = Field(default_factory=dict,
                                 description="protocol facts about this episode, never shown to the judge "
                                             "(e.g. which decomposer was used, which assistance a reward saw)")


class OrderJudgment(BaseModel):
    """The judge's view under one presentation order of the options."""

    order: list[int]
    p: list[float] = Field(description="probabilities in the ORIGINAL option order")
    parse_failed: bool = False
    raw: str | None = None
    node: str | None = Field(default=None, description="the call graph node of the judge's call for this order")


class Judgment(BaseModel):
    """A judge's verdict on one transcript."""

    judge: str
    source: Literal["model", "human", "mixed"] = "model"
    episode: str = "main"
    p: list[float] | None = Field(default=None, description="per-option probabilities, original order")
    chosen: int | None = None
    correct: float | None = Field(default=None, description="1 right, 0 wrong, 0.5 exact tie; None if pending/failed")
    parse_failed: bool = False
    position_flip: bool | None = Field(default=None, description="chosen option differs between orders")
    orders: list[OrderJudgment] = Field(default_factory=list)
    seconds: float = 0.0
    judge_id: str | None = None
    pending: bool = False
    machine: Judgment | None = Field(
        default=None, description="mixing judges: the weak model's own verdict, before any human")

    @field_validator("p")
    @classmethod
    def _probabilities(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and any(not 0.0 <= x <= 1.0 for x in value):
            raise ValueError(f"probabilities must lie in [0, 1], got {value}")
        return value


class Record(BaseModel):
    """One line of records.jsonl: everything about one question in one job."""

    question_id: str
    question: str
    options: list[str]
    correct_index: int
    reward_option: int | None = None
    protocol: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    context: str | None = Field(default=None, description="the question's hidden passage, kept so the record is "
                                "complete on its own (what the judge saw of it is in each transcript's `passage`)")
    transcripts: list[Transcript] = Field(default_factory=list)
    judgments: list[Judgment] = Field(default_factory=list)
    correct: float | None = Field(default=None, description="mean correctness over this question's episodes")
    error: str | None = None
    graph: dict[str, Any] = Field(default_factory=dict, description="node-link data of the call graph")

    @classmethod
    def of(cls, question: Question, protocol: str, **fields: Any) -> "Record":
        """The record of `question` (its id, text, options, ground truth, reward option, passage and
        metadata copied from it) with the job's `fields` (transcripts, judgments, correct, graph, ...);
        `metadata` given here is added to the question's."""
        metadata = {**question.metadata, **fields.pop("metadata", {})}
        return cls(question_id=question.id, question=question.question, options=question.options,
                   correct_index=question.correct, reward_option=question.reward_option, context=question.context,
                   protocol=protocol, metadata=metadata, **fields)
