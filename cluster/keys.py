"""Every Redis key raylane uses, in one place.

All keys share a prefix so one Redis can hold several raylane clusters (and
tests can run side by side). Lua scripts build per-job keys from `job_prefix`;
they never invent other names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "raylane"

    def queue(self, model: str, pool: str | None = None) -> str:
        """Sorted set of queued job members (score = priority, FIFO by member): the model's
        shared queue, or the queue of jobs the router sent to one of its pools."""
        return f"{self.prefix}:q:{model}" if pool is None else f"{self.prefix}:q:{model}@{pool}"

    def fair(self, model: str, pool: str | None = None) -> str:
        """Hash of a queue's fair-share clocks: per priority, the virtual time (`v:<p>`, the
        tag of the last job leased) and each tenant's last tag (`t:<p>:<tenant>`)."""
        return f"{self.queue(model, pool)}:fair"

    def leases(self, model: str) -> str:
        """Sorted set of leased job ids, scored by lease expiry (ms)."""
        return f"{self.prefix}:leases:{model}"

    def wake(self, model: str, pool: str) -> str:
        """List of wake-up tokens the idle workers of one pool of `model` block on."""
        return f"{self.prefix}:wake:{model}@{pool}"

    def dead(self, model: str) -> str:
        """Sorted set of dead-lettered job ids, scored by time of death (ms)."""
        return f"{self.prefix}:dead:{model}"

    def draining(self) -> str:
        """Set while raylane is stopping: routers refuse new requests, running ones finish."""
        return f"{self.prefix}:draining"

    def seq(self) -> str:
        """Counter giving queued jobs their FIFO order."""
        return f"{self.prefix}:seq"

    @property
    def job_prefix(self) -> str:
        """Prefix of the per-job hash `<prefix>:job:<id>`."""
        return f"{self.prefix}:job:"

    def job(self, job_id: str) -> str:
        return f"{self.job_prefix}{job_id}"

    def inbox(self, router_id: str) -> str:
        """Stream of events for the requests one router replica waits on."""
        return f"{self.prefix}:inbox:{router_id}"

    @staticmethod
    def alive(inbox: str) -> str:
        """Set while the router replica owning `inbox` lives (Lua derives it the same way)."""
        return f"{inbox}:alive"

    def done(self, model: str, bucket: int, pool: str | None = None) -> str:
        """Jobs of `model` (or of one of its pools) finished in one second (`bucket` = epoch
        second): the drain rate."""
        return f"{self.prefix}:done:{self._of(model, pool)}:{bucket}"

    def busy(self, model: str, bucket: int, pool: str | None = None) -> str:
        """Milliseconds of work in the jobs of `model` (or of one of its pools) finished in
        one second: the service time."""
        return f"{self.prefix}:busy:{self._of(model, pool)}:{bucket}"

    @staticmethod
    def _of(model: str, pool: str | None) -> str:
        return model if pool is None else f"{model}@{pool}"

    def workers(self, model: str) -> str:
        """Hash of worker replica id -> its last heartbeat (JSON)."""
        return f"{self.prefix}:workers:{model}"

    def scale(self, model: str) -> str:
        """Hash of pool name -> the autoscaling policy's last decision for it (JSON)."""
        return f"{self.prefix}:scale:{model}"

    def metrics(self) -> str:
        """Hash of the cluster's metric sums: JSON [metric, [label values], part] -> count."""
        return f"{self.prefix}:metrics"

    def api_key(self, digest: str) -> str:
        """Hash of one API key's record, named by the SHA-256 (hex) of the key."""
        return f"{self.prefix}:apikey:{digest}"

    def api_key_names(self) -> str:
        """Hash of API key name -> the SHA-256 (hex) of its key (list and revoke by name)."""
        return f"{self.prefix}:apikeys"

    def key_limits(self, name: str) -> str:
        """Hash of one key's token buckets (requests and tokens per minute) and budget."""
        return f"{self.prefix}:keylimit:{name}"

    def key_usage(self, name: str) -> str:
        """Hash of one key's usage counters: requests, prompt_tokens, completion_tokens."""
        return f"{self.prefix}:keyusage:{name}"
