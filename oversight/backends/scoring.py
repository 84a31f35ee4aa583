"""The one scoring primitive for in-process torch models: token ids in, log-probabilities out.

Used by the hf backend (its continuation tails), the dev server's token-level endpoints
(`oversight-serve`: prompt log-probabilities and top-k for echo) and the reward-model feature
extractor (`oversight.train.features`), so the three read log-probabilities the same way:

- `left_pad`: token rows as one right-aligned batch, its attention mask and position ids that
  follow the mask (so a row's numbers do not depend on the padding its batch needed);
- `target_logprobs`: hidden states -> log P(target) (and the top-k), through the LM head in
  slices that bound the [positions, vocabulary] logits held at once;
- `score_rows`: a padded batched forward pass over whole rows, giving every position's
  log-probability of the next token of the row, the top-k there, and (optionally) hidden states.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: floats of [positions, vocabulary] logits held at once
MAX_LOGITS = 32_000_000


@dataclass
class RowScores:
    """Scores of one token row of length n."""

    #: log P(row[t] | row[:t]) for t = 1 .. n-1 (so index t-1 holds position t)
    logprobs: list[float]
    #: top-k (token id, log-prob) predicting position t, for t = 1 .. n (the last predicts the
    #: token after the row); empty lists when k = 0
    top: list[list[tuple[int, float]]] = field(default_factory=list)
    #: last-layer hidden states [n, hidden] (after the final norm), when asked for
    hidden: Any = None


def left_pad(rows: list[list[int]], pad: int, device: str):
    """(ids, mask, position ids) for token rows, right-aligned: every row ends at the last column."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def target_logprobs(head, hidden, targets, top_k: int = 0):
    """log P(target) at each row of `hidden` [N, H] (targets [N]), and with top_k > 0 the top-k
    (values, indices) of the same log-softmax; computed in slices of at most MAX_LOGITS logits."""
    import torch

    vocab = head.weight.shape[0]
    step = max(1, MAX_LOGITS // vocab)
    picked, values, indices = [], [], []
    for start in range(0, hidden.shape[0], step):
        logits = head(hidden[start:start + step]).float()
        norm = torch.logsumexp(logits, dim=-1)
        picked.append(logits.gather(1, targets[start:start + step, None])[:, 0] - norm)
        if top_k:
            v, i = logits.topk(min(top_k, vocab), dim=-1)
            values.append(v - norm[:, None])
            indices.append(i)
    if not top_k:
        return torch.cat(picked), None, None
    return torch.cat(picked), torch.cat(values), torch.cat(indices)


def score_rows(model, rows: list[list[int]], pad: int, device: str, *, top_k: int = 0,
               hidden: bool = False) -> list[RowScores]:
    """One padded forward pass over the rows (a batch: the caller sizes it)."""
    import torch

    base, head = model.get_decoder(), model.get_output_embeddings()
    ids, mask, positions = left_pad(rows, pad, device)
    width = ids.shape[1]
    with torch.inference_mode():
        states = base(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state
        # every real position of every row, row-major; its target is the row's next token (0 after the end)
        real = mask.bool()
        flat = states[real]
        nexts = torch.cat([ids[:, 1:], ids.new_zeros(len(rows), 1)], dim=1)[real]
        picked, values, indices = target_logprobs(head, flat, nexts, top_k)
    picked_list = picked.tolist()
    values_list = values.tolist() if top_k else None
    indices_list = indices.tolist() if top_k else None
    out, at = [], 0
    for row_index, row in enumerate(rows):
        n = len(row)
        top = [list(zip(indices_list[at + t], values_list[at + t])) for t in range(n)] if top_k else []
        out.append(RowScores(
            logprobs=picked_list[at:at + n - 1], top=top,
            hidden=states[row_index, width - n:].float().cpu() if hidden else None,
        ))
        at += n
    return out
