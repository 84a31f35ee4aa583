"""The plugin contract of a training job: `train._target_` names a TrainJob subclass whose fields are
the job's config (built and validated by oversight.plugins.build, errors naming `train.<field>`).
The app (oversight/app/train.py) wires each kind of job to the engine, judge and models it needs."""

from __future__ import annotations

from pydantic import Field

from oversight.plugins import Plugin


class TrainJob(Plugin):
    name: str = Field(description="the job's name, in its outputs")
