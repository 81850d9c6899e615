# The peak needs 600 req/s x about 0.11 s = about 66 requests in flight. The downstream takes
# 80 at once, so per-instance concurrency x maximum instances must lie between about 70
# (some headroom for bursts) and 80. At most 12 instances means at least 6 per instance,
# and a def handler with 16 pool threads overlaps up to 16 without slowing: 8 x 10 = 80.
scale_settings = dict(per_instance_concurrency=8, max_instances=10)
