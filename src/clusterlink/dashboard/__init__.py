"""``clusterlink dashboard``: the fabric at a glance, in a browser, for one gateway's operator.

A small local web server (``server``) serves one page (``static/``) and two read-only JSON
routes that it fills from the gateway's admin API with this peer's admin certificate, so the
browser needs no certificate and never sees one. The page polls them every second and draws
the peers as a map (reachability, round-trip time, peered or not), the imports with their
sources and balancing scheme, the exports, and the recent tunnels with their decision and the
policy that made it, refusals highlighted.

What it must never do: change anything (no route writes), serve a key or certificate, or
listen beyond the loopback unless told to.
"""
