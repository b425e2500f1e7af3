# Ray Serve's throughput settings, sourced before `ray start` on every node of a raylane
# cluster: each Ray process reads them when it starts. `raylane serve` gives the same ones
# to a Ray it starts itself (THROUGHPUT_ENV in cluster/runtime.py; a test keeps the two
# alike). What each does and what it is worth: docs/operating.md and docs/benchmarks.md.
export RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD=0
export RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP=0
export RAY_SERVE_USE_GRPC_BY_DEFAULT=1
