"""Endpoints: what the client hands a validated request to. :mod:`.base` is the contract,
:mod:`.kinds` the descriptor table, and :mod:`.local`, :mod:`.gateway`, :mod:`.provider` the
three kinds (imported when first registered)."""
