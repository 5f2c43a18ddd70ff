"""Python client of a gateway's admin API: what the CLI and the demo use, and users can too.

Example::

    with AdminClient.from_peer_dir(Path("fab/a")) as client:
        client.apply([document])
        print(client.get("import", "echo")["status"])
"""

from clusterlink.client.admin import AdminClient, Changes, Document, format_address, parse_address

__all__ = ["AdminClient", "Changes", "Document", "format_address", "parse_address"]
