"""Locust users that speak the OpenAI API through the official SDK, as raylane's users do.

    locust -f loadtest/locustfile.py --headless -u 32 -r 8 -t 60s \\
        --host http://127.0.0.1:8000 --csv out/run --html out/run.html

Each user is a closed loop: it sends one request, waits for the whole answer, sends the
next. What it sends is drawn per request from these options (each also an environment
variable, or a key of a locust.conf file):

  --model            model or alias (LOCUST_MODEL, default smollm2-135m)
  --embedding-model  model for embeddings (LOCUST_EMBEDDING_MODEL, default: --model)
  --mix              weights of chat, stream (chat streamed), completion, embedding
                     (LOCUST_MIX, default "chat=2,stream=6,completion=1,embedding=1")
  --priorities       raylane's `priority` field, drawn uniformly from the list; a value
                     repeated weighs more; "" sends none (LOCUST_PRIORITIES, default "")
  --prompt-words     prompt length in words, N or MIN-MAX (LOCUST_PROMPT_WORDS, 8-64)
  --output-tokens    max_tokens, N or MIN-MAX (LOCUST_OUTPUT_TOKENS, 16-64)
  --ignore-eos       chat and completions carry vLLM's `ignore_eos`: a real model's
                     answers then run to the drawn max_tokens, as with the sim engine
                     (LOCUST_IGNORE_EOS, default off)
  --api-keys         comma-separated keys, given to users in turn (LOCUST_API_KEYS)
  --expected-status  HTTP statuses that are an expected answer, not a failure, e.g. "429"
                     under deliberate overload (LOCUST_EXPECTED_STATUS, default none)
  --request-timeout  seconds before the client gives up (LOCUST_REQUEST_TIMEOUT, 120)

Statistics, one locust entry each (so they get percentiles in the CSV and HTML reports):

  POST  <kind>[ p<priority>]  the whole request; "Average Content Size" is the mean
                              number of output tokens (usage.completion_tokens)
  ttft  chat stream[...]      time to the first text chunk, ms
  itl   chat stream[...]      mean gap between text chunks of one answer, ms
  tok/s chat stream[...]      output tokens per second after the first one (a rate, not
                              ms, in the time columns)

With several priorities the entry names carry the priority, so each gets its own row.
Failures are named by HTTP status and error code (e.g. `429 rate_limit_error/queue_full`),
a stream's error event as `stream error <code>`, a dropped connection as `connection
error <Exception>`. Locust exits 1 on any failure. The "Aggregated" row mixes requests
with the metric entries: read the rows by name.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import openai
from locust import User, constant, events, task
from locust.env import Environment

KINDS = ("chat", "stream", "completion", "embedding")
NAMES = {"chat": "chat", "stream": "chat stream", "completion": "completion",
         "embedding": "embedding"}
WORDS = ["river", "stone", "lamp", "orange", "winter", "violin", "garden", "paper", "cloud",
         "engine", "harbor", "window", "silver", "forest", "candle", "ladder", "meadow",
         "compass", "velvet", "thunder"]


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    add = parser.add_argument
    add("--model", default="smollm2-135m", env_var="LOCUST_MODEL", help="model or alias")
    add("--embedding-model", default="", env_var="LOCUST_EMBEDDING_MODEL",
        help="model of embedding requests (default: --model)")
    add("--mix", default="chat=2,stream=6,completion=1,embedding=1", env_var="LOCUST_MIX",
        help="weights of chat, stream, completion, embedding")
    add("--priorities", default="", env_var="LOCUST_PRIORITIES",
        help="comma-separated priorities drawn per request ('' sends none)")
    add("--prompt-words", default="8-64", env_var="LOCUST_PROMPT_WORDS",
        help="prompt length in words: N or MIN-MAX")
    add("--output-tokens", default="16-64", env_var="LOCUST_OUTPUT_TOKENS",
        help="max_tokens: N or MIN-MAX")
    add("--ignore-eos", action="store_true", default=False, env_var="LOCUST_IGNORE_EOS",
        help="answers run to max_tokens (vLLM's ignore_eos)")
    add("--api-keys", default="none", env_var="LOCUST_API_KEYS", is_secret=True,
        help="comma-separated API keys, one per user in turn")
    add("--expected-status", default="", env_var="LOCUST_EXPECTED_STATUS",
        help="comma-separated HTTP statuses counted as expected answers, not failures")
    add("--request-timeout", type=float, default=120.0, env_var="LOCUST_REQUEST_TIMEOUT",
        help="seconds before a request is given up")


@dataclass(frozen=True)
class Traffic:
    """What the users send, from the command line options."""

    model: str
    embedding_model: str
    mix: dict[str, float]
    priorities: list[int | None]
    prompt_words: tuple[int, int]
    output_tokens: tuple[int, int]
    ignore_eos: bool
    keys: list[str]
    expected: frozenset[int]
    timeout_s: float

    @classmethod
    def from_options(cls, options: Any) -> Traffic:
        return cls(model=options.model, embedding_model=options.embedding_model or options.model,
                   mix=_mix(options.mix), priorities=_ints(options.priorities, "--priorities")
                   or [None], prompt_words=_span(options.prompt_words, "--prompt-words"),
                   output_tokens=_span(options.output_tokens, "--output-tokens"),
                   ignore_eos=bool(options.ignore_eos),
                   keys=[k.strip() for k in options.api_keys.split(",") if k.strip()] or ["none"],
                   expected=frozenset(_ints(options.expected_status, "--expected-status")),
                   timeout_s=options.request_timeout)


def _mix(text: str) -> dict[str, float]:
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, weight = part.partition("=")
        if kind not in KINDS:
            raise SystemExit(f"--mix: unknown kind '{kind}' (one of {', '.join(KINDS)})")
        try:
            mix[kind] = float(weight or 1)
        except ValueError:
            raise SystemExit(f"--mix: '{part}' needs a number after '='") from None
    if not any(w > 0 for w in mix.values()):
        raise SystemExit("--mix: give at least one kind a positive weight")
    return mix


def _ints(text: str, option: str) -> list[Any]:
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise SystemExit(f"{option}: '{text}' is not a comma-separated list of integers") from None


def _span(text: str, option: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        span = int(low), int(high or low)
    except ValueError:
        raise SystemExit(f"{option}: '{text}' is not N or MIN-MAX") from None
    if not 1 <= span[0] <= span[1]:
        raise SystemExit(f"{option}: '{text}' needs 1 <= MIN <= MAX")
    return span


@events.init.add_listener
def _check(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if options is None:
        return
    OpenAIUser.traffic = Traffic.from_options(options)
    for client_logger in ("httpx", "httpx2", "openai"):  # a line per request otherwise
        logging.getLogger(client_logger).setLevel(logging.WARNING)
    if options.headless and not environment.host:
        raise SystemExit("--host is required: the router's URL, e.g. http://127.0.0.1:8000")


class OpenAIUser(User):
    """One OpenAI SDK client sending the configured mix, one request at a time."""

    wait_time = constant(0)
    traffic: Traffic
    _numbers = itertools.count()

    def on_start(self) -> None:
        number = next(self._numbers)
        self.rng = random.Random()
        keys = self.traffic.keys
        self.client = openai.OpenAI(base_url=f"{(self.host or '').rstrip('/')}/v1",
                                    api_key=keys[number % len(keys)], max_retries=0,
                                    timeout=self.traffic.timeout_s)

    def on_stop(self) -> None:
        self.client.close()

    @task
    def one_request(self) -> None:
        traffic = self.traffic
        kind = self.rng.choices(list(traffic.mix), weights=list(traffic.mix.values()))[0]
        priority = self.rng.choice(traffic.priorities)
        name = NAMES[kind] + (f" p{priority}" if len(set(traffic.priorities)) > 1 else "")
        extra: dict[str, object] = {} if priority is None else {"priority": priority}
        if traffic.ignore_eos and kind != "embedding":
            extra["ignore_eos"] = True
        prompt = " ".join(self.rng.choices(WORDS, k=self.rng.randint(*traffic.prompt_words)))
        max_tokens = self.rng.randint(*traffic.output_tokens)
        began = time.perf_counter()
        try:
            tokens = getattr(self, f"_{kind}")(prompt, max_tokens, extra, name, began)
        except openai.APIError as exc:
            self._answered_with_error(name, began, exc)
        else:
            self._fire("POST", name, _ms(began), tokens)

    def _chat(self, prompt: str, max_tokens: int, extra: dict, name: str, began: float) -> int:
        reply = self.client.chat.completions.create(
            model=self.traffic.model, messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens, extra_body=extra)
        return reply.usage.completion_tokens if reply.usage else 0

    def _completion(self, prompt: str, max_tokens: int, extra: dict, name: str,
                    began: float) -> int:
        reply = self.client.completions.create(model=self.traffic.model, prompt=prompt,
                                               max_tokens=max_tokens, extra_body=extra)
        return reply.usage.completion_tokens if reply.usage else 0

    def _embedding(self, prompt: str, max_tokens: int, extra: dict, name: str,
                   began: float) -> int:
        self.client.embeddings.create(model=self.traffic.embedding_model, input=prompt,
                                      extra_body=extra)
        return 0

    def _stream(self, prompt: str, max_tokens: int, extra: dict, name: str, began: float) -> int:
        arrivals: list[float] = []
        tokens = 0
        stream = self.client.chat.completions.create(
            model=self.traffic.model, messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens, extra_body=extra, stream=True,
            stream_options={"include_usage": True})
        with stream:
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    arrivals.append(time.perf_counter())
                if chunk.usage:
                    tokens = chunk.usage.completion_tokens
        end = time.perf_counter()
        if arrivals:
            self._fire("ttft", name, (arrivals[0] - began) * 1000)
        if len(arrivals) > 1:
            self._fire("itl", name, (arrivals[-1] - arrivals[0]) * 1000 / (len(arrivals) - 1))
        if arrivals and tokens > 1 and end > arrivals[0]:
            self._fire("tok/s", name, (tokens - 1) / (end - arrivals[0]))
        return tokens

    def _answered_with_error(self, name: str, began: float, exc: openai.APIError) -> None:
        if isinstance(exc, openai.APIStatusError):
            if exc.status_code in self.traffic.expected:
                self._fire("POST", f"{name} [{exc.status_code}]", _ms(began))
                return
            error = f"{exc.status_code} {exc.type}/{exc.code}"
        elif isinstance(exc, openai.APIConnectionError):
            error = f"connection error {type(exc.__cause__ or exc).__name__}"
        else:
            error = f"stream error {exc.code}"
        self._fire("POST", name, _ms(began), error=error)

    def _fire(self, kind: str, name: str, value: float, length: int = 0,
              error: str | None = None) -> None:
        self.environment.events.request.fire(request_type=kind, name=name, response_time=value,
                                             response_length=length, exception=error,
                                             context={})


def _ms(began: float) -> float:
    return (time.perf_counter() - began) * 1000
