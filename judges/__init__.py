"""Judges: plugins of `oversight.plugins.Judge` that read the judge-visible transcript and return
per-option probabilities.

- `judges.model.ModelJudge`: weak-model judges (`likelihood`, `logprob`, `generative`);
- `judges.human.HumanJudge`: people, in the terminal UI (`judges.tui`), durable in `judges.store`;
- `judges.mixing.MixingJudge`: route / ensemble / augmented / approval (`judges.policies`);
- `judges.view`: what a judge reads; `judges.verdicts`: per-order views into one Judgment;
  `judges.agreement`: agreement between people.
"""
