"""Query Sacred experiment records: list runs, compare algorithms, plot learning curves, aggregate over maps,
profile where a run's wall-clock went.

Run as `python -m tools.results {list,compare,plot,aggregate,profile} ...` with `src/` on the path (docs/results.md).
Records come from a FileStorageObserver tree (`records.load_file_runs`) or a MongoDB database written by
Sacred's MongoObserver (`records.load_mongo_runs`); both give the same `records.Run` objects.
"""
