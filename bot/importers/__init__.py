"""Bringing data in: the operator's CSV imports (experts, workshops, members of the network) and
the network's member feed."""
