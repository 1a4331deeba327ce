"""One function per pipeline step, shared by the jobs (one step per spark-submit) and by anything that runs
several steps in one Spark application.

Each step takes a `catalog.Tables` (where and how tables are read and written), the validated settings, the
run's identity (`runtime.RunInfo`, for commit metadata and the run record) and plain values (the date, the
pseudonymisation key); it reads, transforms and writes through `Tables`, and returns what it did. Steps never
build a SparkSession, parse arguments or read conf/: the jobs do, at the edge.
"""
