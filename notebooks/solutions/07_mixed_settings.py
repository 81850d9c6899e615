import math

from throughput_lab import available_cores

# The CPU part holds the GIL: one process per core. Round-robin gives each process
# 16 / processes of the requests in flight, and each of them holds a pool thread while it
# waits for the upstream: that many threads per process, and no more.
processes = max(1, round(available_cores()))
mixed_settings = dict(processes=processes, threads=math.ceil(16 / processes))
