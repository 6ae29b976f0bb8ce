"""The session layer: the one flow for every runtime (validate -> plan -> audit -> run ->
clean up), signals, the audit log, and what is built on the Runtime protocol once for
all runtimes (ps/gc)."""
