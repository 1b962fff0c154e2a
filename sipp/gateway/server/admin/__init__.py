"""The admin dashboard: session and control API (:mod:`.api`) plus the single-page app,
mounted on the management listener under the configured ``admin`` route. All state is in
memory."""
