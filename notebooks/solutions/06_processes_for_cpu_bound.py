from throughput_lab import available_cores

# Pure Python holds the GIL, so each worker process keeps at most one core busy: one
# process per core uses them all. More processes add memory (tens of MB each), not speed.
processes_for_cpu_bound = max(1, round(available_cores()))
