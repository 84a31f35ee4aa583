"""Training from what the protocols produce: generic pieces, no protocol or judge knowledge.

- `features`: frozen-model features of texts (hidden states, continuation log-likelihoods), cached
  on disk by the weights' content;
- `reward_head`: a logistic-regression reward model on those features, trained on a judge's labels;
- `dpo`: preference pairs -> a LoRA adapter trained with trl's DPOTrainer, checkpointed, resumable;
- `provenance`: the data, config and library versions saved beside every checkpoint.

The training jobs that use them are plugins in trainers/ (oversight.plugins.Trainer). Imports of
torch, sklearn, trl and peft are lazy so the kernel stays cheap to import.
"""
