"""Oversight protocols and turn strategies: plugins of `oversight.plugins`, one module each.

A protocol is an `oversight.plugins.Protocol` (its fields are its config) with `async def run(self,
question, ctx) -> list[Transcript]` (one transcript per episode: consultancy has one per assigned
side) and optionally `extra_metrics(records)`. Model calls go through `ctx`, so each becomes a node
of the question's call graph and is batched across questions by the engine. A new protocol is one
new module plus one YAML in conf/protocol/ naming it with `_target_`.
"""
