"""Training jobs (`train:` in config), one module each, one contract (oversight.plugins.Trainer):

- `rrm`: reward models per recursive-reward-modeling level, from assisted labels (train=rrm);
- `debate_dpo`: debaters trained by DPO on their best-of-N debates, then evaluated (train=debate_dpo).

A new trainer is one module here (or anywhere importable) and one YAML file in conf/train/
(docs/extending.md). Trainers use the kernel (oversight/) and the protocols and strategies they
train; the app (oversight/app/train.py) builds them and hands them a TrainingRun.
"""
