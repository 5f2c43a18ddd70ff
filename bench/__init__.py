"""The benchmark: clusterlink against a direct connection, stunnel and HAProxy, side by side.

``python -m bench run`` measures, in one run, the same workloads (iperf3 throughput, 1-byte
ping-pong, new-connection rate, the memory of idle tunnels) through each setup, on loopback
and across two network namespaces, and writes a table, JSON and a chart. Ratios within one
run are what matter; absolute numbers depend on the machine.

How the parts fit (each module says why it exists):

- ``cli`` → ``plan`` (what to run) → ``runner`` (each topology, setup, workload) →
  ``output`` (``report`` table, ``results.json``, ``chart``), plus ``environment``.
- ``topology``: loopback, or two namespaces joined by a veth pair; ``servers``: echo and
  iperf3 on the server side; ``setups/``: how each setup is started; ``workloads``: how each
  workload runs, with ``procfs`` reading the tunnel processes' CPU and memory.
- ``loadgen.c`` (built by ``loadgen``): the echo server and the clients, in C so that they
  are never the bottleneck; ``mtls_check``: proof that every TLS setup really verifies.
- ``processes``: every process started is tracked by PID and stopped by PID, never by name.
"""
