"""Outside providers Nespay talks to: calls out (`client.py`) and their webhooks in
(`ingest.py`, handlers of the provider inbox)."""
