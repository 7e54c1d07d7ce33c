from scrm_kit.settings import ServiceSettings


class Settings(ServiceSettings):
    """Profile service settings (``SCRM_*`` environment variables)."""

    consumer_group: str = "profile"
    # Partitions whose batches one consumer process applies at once (each partition stays in order): one
    # batch's database round trips overlap another's Python work. 1 applies one batch at a time.
    consumer_partitions_in_flight: int = 3
    lifecycle_sweep_seconds: float = 5.0
    segment_sweep_seconds: float = 60.0
    value_refresh_seconds: float = 3600.0
