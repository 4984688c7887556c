"""The dataset store: idempotent ingestion of valid results, releases and progress."""
