"""How remote endpoints talk: HTTP on one background event loop (:mod:`.http`), the
incremental SSE parser (:mod:`.sse`) and the run driver that joins an exchange to a run
(:mod:`.driver`). Shared by the gateway endpoint and the provider endpoints; it knows no
wire format of either (``sipp.gateway.profile``, ``sipp.providers``)."""
