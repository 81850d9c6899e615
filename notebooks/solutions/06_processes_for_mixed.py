import math

from throughput_lab import MAX_PROCESSES, available_cores

# Measured alone (mixed_alone): about 67 ms of CPU in a request of about 170 ms, so CPU
# time / wall time is 0.4. With one thread, a process computes 40% of its time: it keeps
# 0.4 of a core busy, and waits for the upstream the rest. Every core busy takes
# cores / 0.4 processes (5 on 2 cores), rounded up, at most the host's 10. One process per
# core, the rule for work that only computes, would leave 60% of each core idle.
processes_for_mixed = min(MAX_PROCESSES, math.ceil(available_cores() / 0.4))
