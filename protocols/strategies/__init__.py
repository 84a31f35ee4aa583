"""Turn strategies: how an arguer (debater, consultant) makes one turn.

Each is an `oversight.plugins.TurnStrategy` in its own module with a YAML in
conf/protocol/strategy/; debate and consultancy take one from config (`protocol/strategy=free`).
Strategies compose: one may hold another as a field (`inner: {_target_: ...}`) and call it.
"""
