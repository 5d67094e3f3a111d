"""Every setting of newswatch, declared once with its default, description and NEWSWATCH_* variable.

The settings are grouped by the part of the pipeline they tune; `settings_markdown()` writes the
tables of docs/settings.md from these declarations (`python -m flows.settings`).
"""

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from extract.cluster import ClusterRules
from extract.dedupe import DedupeRules
from extract.rewrites import load_model
from extract.translations import TranslationRules
from extract.embed import check_backend_and_device
from warehouse.connection import DEFAULT_MEMORY_LIMIT

# An IPv4 or IPv6 address or a host name to listen on.
HOST_PATTERN = r"^[A-Za-z0-9.:-]{1,253}$"
# A value that can be sent as an HTTP header: printable ASCII, no line breaks.
HEADER_PATTERN = r"^[ -~]{1,512}$"

# Upper bounds that make sense for durations and sizes (a poll interval of at most a year, say):
# beyond them a value is a mistake, and datetime arithmetic or a timer would overflow or hang.
HOUR = 3600.0
DAY = 24 * HOUR
YEAR_MINUTES = 366 * 24 * 60
GIB = 1024**3
_BYTES_PER_UNIT = {"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


class Settings(BaseSettings):
    """newswatch settings; each field is read from the environment variable NEWSWATCH_<NAME>."""

    # allow_inf_nan: "inf" or "nan" would pass every bound check and break a run later.
    model_config = SettingsConfigDict(env_prefix="NEWSWATCH_", extra="ignore", allow_inf_nan=False)

    # --- Warehouse ---
    db: Path = Field(Path("newswatch.duckdb"), description="DuckDB file the pipeline writes and the commands read.")
    duckdb_memory_limit: str = Field(DEFAULT_MEMORY_LIMIT, pattern=r"^(\d+(\.\d+)?\s*[KMGT]i?B)?$", description="Memory DuckDB may use per connection, 16MB to 1024TB (e.g. `512MB`, `2GB`; empty: DuckDB's default of 80% of RAM).")

    # --- Runs ---
    batch_size: int = Field(500, ge=1, le=100_000, description="Articles decided and stored together: a run commits each batch in its own transaction, so a stopped run keeps every batch it stored and the next run resumes. Articles of one batch can still be re-placed and their new stories merged; a later batch meets them as stored stories (larger batches: better stories, less frequent commits).")
    fixture_max_bytes: int = Field(10 * 1024 * 1024, ge=1, le=GIB, description="Largest article file read by `run --fixtures`; a bigger one is skipped with a warning naming it.")
    extract_workers: int = Field(0, ge=0, le=256, description="Processes extracting pages as they arrive (0: one per CPU core; 1: in the flow's process, after fetching). Runs of fewer than 16 new pages extract in the flow's process.")

    # --- Embedding ---
    model: str = Field(
        "all-MiniLM-L6-v2",
        description="Sentence-transformers model name or local path; the default is the bundled MiniLM.",
    )
    chunk_tokens: int = Field(128, ge=16, le=512, description="Word pieces per embedded chunk; articles are embedded whole, chunk by chunk.")
    embed_lead_chunks: int = Field(3, ge=0, le=64, description="Chunks of an article's beginning that make its everyday vector (neighbours, stories, search, semantic watches); its whole-article vector is computed only when a possible rewrite needs it (0: every article is embedded whole).")
    embed_max_chunks: int = Field(0, ge=0, le=100_000, description="Embed only the first this many chunks of an article (0: the whole article); faster on long articles, and part of the vectors' model key.")
    embed_max_characters: int = Field(100_000, ge=1000, le=100_000_000, description="Embed only the first this many characters of a longer text (a bound for pathological input; news articles are far shorter).")
    embed_batch_size: int = Field(32, ge=1, le=4096, description="Chunks per embedding batch.")
    embed_threads: int = Field(0, ge=0, le=1024, description="Torch threads for embedding (0: torch's default).")
    embed_backend: str = Field("auto", description="Embedding runtime: `auto` (OpenVINO when installed, else torch), `torch`, `openvino` (torch's vectors, about twice as fast) or `openvino-int8` (faster still, cosine ≥ 0.99 to torch, stored under its own key); OpenVINO needs the `openvino` extra, else torch is used.")
    embed_device: str = Field("auto", description="Where PyTorch embeds: `auto` (a CUDA GPU when torch sees one, else the CPU), `cpu`, `cuda` or `cuda:N`; on a GPU, backend `auto` means PyTorch there.")

    # --- Duplicates ---
    copy_jaccard: float = Field(0.5, ge=0, le=1, description="Word 5-shingle Jaccard from which two articles are copies.")
    rewrite_gate: float = Field(0.7, ge=0, le=1, description="Everyday-vector cosine from which two articles are compared as possible copies or rewrites (a loose first gate; the rewrite model decides).")
    rewrite_similarity: float = Field(0.93, ge=0, le=1, description="Whole-article embedding cosine from which a pair that shares most names and numbers (`rewrite_term_overlap`) and stands out is a rewrite, whatever the rewrite model says.")
    rewrite_term_overlap: float = Field(0.5, ge=0, le=1, description="Share (Jaccard) of names and numbers such a pair must have in common.")
    rewrite_probability: float = Field(0.4, ge=0, le=1, description="Probability (of the rewrite model) from which a pair that stands out is a rewrite.")
    rewrite_margin: float = Field(0.05, ge=0, le=1, description="How much closer a rewrite must be to its original than either is to any third article.")
    rewrite_model: Path | None = Field(None, description="A rewrite model file (JSON, as `bench/train_rewrites.py` writes it) to use instead of the packaged one.")
    translations: bool = Field(True, description="Link an article to the article it translates (duplicate kind `translation`), with a multilingual model that runs only once articles in two of its languages are within a story window of each other.")
    translation_similarity: float = Field(0.84, ge=0, le=1, description="Multilingual whole-text cosine from which two articles in different languages are one article translated.")
    translation_similarity_with_numbers: float = Field(0.7, ge=0, le=1, description="The same cosine for a pair of which the text with fewer numbers (at least 3) has 70 % of them in the other.")

    # --- Stories ---
    story_threshold: float = Field(0.3, ge=0, le=1, description="Minimum article-to-story similarity to join a story rather than open one.")
    story_embedding_weight: float = Field(0.1, ge=0, le=1, description="Share of the embedding cosine in story similarity; the rest is entity tf-idf cosine.")
    story_window_days: float = Field(7.0, gt=0, le=3660, description="A story takes new articles published within this many days of its own.")
    story_merge_threshold: float = Field(0.5, ge=0, le=1, description="Minimum story-to-story similarity to fold a story opened by this run into another.")
    story_refine_passes: int = Field(2, ge=0, le=100, description="Passes that re-place a batch's new articles against the updated stories.")
    term_prior_documents: int = Field(1000, ge=0, le=1_000_000_000, description="Weight, in pseudo-articles, of the general-language word frequencies in term weights.")
    term_language: str = Field("en", description="Language of the general word-frequency prior: a wordfreq code with full frequencies (`en`, `de`, `es`, `fr`, `tr`, `zh`, … 42 in all; an unknown code is refused and the error lists them).")

    # --- Comparing with the stored history ---
    history_neighbours: int = Field(20, ge=1, le=1000, description="Stored articles nearest to each new one that dedupe and clustering consider, with their whole stories.")
    vector_index_exact_limit: int = Field(50_000, ge=0, le=1_000_000_000, description="Up to this many stored vectors the index beside the warehouse searches exactly; beyond, an HNSW graph.")
    vector_index_search_depth: int = Field(512, ge=16, le=4096, description="Candidates the HNSW graph explores per search (efSearch): deeper finds more near-copies and costs more.")

    # --- Feeds and fetching ---
    feeds_file: Path | None = Field(None, description="OPML file whose feeds are added (when missing) before every feed run.")
    poll_interval_minutes: float = Field(15.0, gt=0, le=YEAR_MINUTES, description="Minutes between polls of a healthy feed.")
    feed_max_new_entries: int = Field(500, ge=1, le=1_000_000, description="New entries taken from one feed per run, newest first; the rest come in the next runs (the feed stays due), so one huge feed cannot starve the others.")
    fetch_pages: bool = Field(True, description="Fetch each new entry's page; off: keep the feed's own text (summary or full content).")
    silent_feed_days: float = Field(3.0, gt=0, le=3660, description="A feed that answers but brings nothing new for this many days is flagged as silent.")
    user_agent: str = Field("newswatch/0.1 (news monitoring)", pattern=HEADER_PATTERN, description="User-Agent sent with every request.")
    fetch_connect_timeout: float = Field(10.0, gt=0, le=HOUR, description="Seconds to connect to a host.")
    fetch_read_timeout: float = Field(20.0, gt=0, le=HOUR, description="Seconds to wait for the next bytes of a response.")
    fetch_total_timeout: float = Field(60.0, gt=0, le=DAY, description="Seconds one request may take in all, body included.")
    fetch_max_bytes: int = Field(10 * 1024 * 1024, gt=0, le=GIB, description="Largest feed or page body kept (decoded), enforced while streaming.")
    fetch_concurrency: int = Field(16, ge=1, le=1024, description="Requests in flight at once, over all hosts.")
    fetch_host_concurrency: int = Field(2, ge=1, le=256, description="Requests in flight at once to one host.")
    fetch_host_delay: float = Field(1.0, ge=0, le=HOUR, description="Minimum seconds between two requests to one host.")
    respect_robots: bool = Field(True, description="Obey robots.txt when fetching article pages.")
    allow_private_networks: bool = Field(False, description="Allow feeds and pages on loopback or private addresses (off: refused as SSRF).")

    # --- Watches and alerts ---
    watch_like_threshold: float = Field(0.55, ge=0, le=1, description="Cosine between an article's vector and a `--like` watch's description from which the watch matches the article (chosen on the ECB+ events: BENCHMARKS.md).")
    alert_developing_factor: float = Field(2.0, gt=1, le=1000, description="A story alerted before alerts again, as developing, once it has this many times the articles it had then (at most once a day).")
    notify_timeout: float = Field(10.0, gt=0, le=HOUR, description="Seconds one delivery attempt may wait to connect and for each answer of the endpoint.")
    alert_retry_seconds: float = Field(60.0, gt=0, le=DAY, description="Seconds before a failed delivery is tried again, on a later run; doubled after each further failure.")
    alert_retry_max_seconds: float = Field(6 * 3600.0, gt=0, le=30 * DAY, description="Longest wait between two attempts of a delivery.")
    alert_max_attempts: int = Field(10, ge=1, le=1000, description="Attempts after which a delivery is given up and marked failed (shown by `watches`, `status` and the dashboard).")

    # --- Digest ---
    digest_notify: Annotated[list[str], NoDecode] = Field([], description="Apprise URLs the daily digest of `serve` is sent to, separated by spaces (none: no digest unless NEWSWATCH_DIGEST_DIR is set).")
    digest_dir: Path | None = Field(None, description="Folder the daily digest of `serve` is written to, as Markdown, HTML and JSON files.")
    digest_cron: str = Field("0 7 * * *", description="Cron expression of the daily digest run (in NEWSWATCH_SERVE_TIMEZONE).")
    digest_hours: float = Field(24.0, gt=0, le=100 * YEAR_MINUTES / 60, description="Hours of news the daily digest covers (at most a century, for a digest of an archive).")
    digest_stories: int = Field(20, ge=1, le=1000, description="Stories in a digest, ranked by articles seen in its period, then by size.")

    # --- Service ---
    serve_interval_seconds: float = Field(900.0, ge=1, le=YEAR_MINUTES * 60, description="Seconds between scheduled feed runs of `newswatch serve` (unless a cron is set).")
    serve_cron: str | None = Field(None, description="Cron expression for scheduled feed runs instead of the interval, e.g. `*/10 * * * *`.")
    serve_warm_model: bool = Field(True, description="Keep the embedding model loaded in `newswatch serve` between runs; its flow runs embed through it instead of loading the model each time.")
    serve_timezone: str = Field("UTC", description="Time zone the cron expressions are read in (an IANA name, e.g. `Europe/Berlin`).")
    maintenance_cron: str = Field("30 3 * * *", description="Cron expression of the daily maintenance run (Parquet export, re-extraction, feed health).")
    export_dir: Path | None = Field(None, description="Folder for the maintenance run's Parquet exports (default: `exports/` beside the database).")
    prefect_home: Path | None = Field(None, description="PREFECT_HOME of the Prefect server `serve` starts (default: `prefect/` beside the database).")
    prefect_port: int = Field(4200, ge=1, le=65535, description="Port of the Prefect server `serve` starts when PREFECT_API_URL is not set.")
    prefect_host: str = Field("127.0.0.1", pattern=HOST_PATTERN, description="Address that Prefect server listens on: `127.0.0.1` (this machine only) or `0.0.0.0` (every interface, as in the container image; its UI and API have no login).")
    dashboard_host: str = Field("127.0.0.1", pattern=HOST_PATTERN, description="Address `newswatch dashboard` listens on unless `--host` is given: `127.0.0.1` (this machine only) or `0.0.0.0` (every interface, as in the container image; the dashboard is read-only and has no login).")

    # --- API ---
    api_host: str = Field("127.0.0.1", pattern=HOST_PATTERN, description="Address `newswatch api` listens on unless `--host` is given: a loopback address (this machine only), or any other (`0.0.0.0`: every interface) only with NEWSWATCH_API_TOKEN set.")
    api_port: int = Field(8000, ge=1, le=65535, description="Port `newswatch api` listens on unless `--port` is given.")
    api_token: SecretStr | None = Field(None, description="Secret the API asks for on every endpoint but `/health` (`Authorization: Bearer TOKEN`, or Basic with the token as password), 16 to 512 printable ASCII characters without spaces; required to listen on an address other than loopback.")
    api_lock_wait_seconds: float = Field(5.0, ge=0, le=HOUR, description="Seconds an API request waits while a run holds the database before it answers 503 with Retry-After.")

    # --- Dask ---
    task_runner: Literal["local", "dask"] = Field("local", description="Where extraction and embedding chunks run: `local` (the flow's process) or `dask` (prefect-dask).")
    dask_address: str | None = Field(None, description="Scheduler of an existing Dask cluster, e.g. `tcp://10.0.0.5:8786` (default: a local cluster per run).")
    dask_workers: int = Field(2, ge=1, le=256, description="Worker processes of the local Dask cluster started for a run when no address is given.")
    dask_chunk_size: int = Field(32, ge=1, le=100_000, description="Pages or texts per extraction or embedding task sent to Dask.")

    @field_validator("digest_notify", mode="before")
    @classmethod
    def _split_urls(cls, value):
        # Apprise URLs hold no spaces; a JSON list is accepted too.
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                return json.loads(text)
            return text.split()
        return value

    @field_validator("api_token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value):
        # An empty variable (compose's `${NEWSWATCH_API_TOKEN:-}`) means no token, not a short one.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("api_token")
    @classmethod
    def _token_is_long_and_printable(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"[!-~]{16,512}", value.get_secret_value()):
            # The value is a secret: the message never quotes it.
            raise ValueError("must be 16 to 512 printable ASCII characters without spaces (e.g. from `openssl rand -hex 32`)")
        return value

    @field_validator("duckdb_memory_limit")
    @classmethod
    def _memory_limit_in_range(cls, value: str) -> str:
        if value:
            number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]i?B)", value).groups()
            size = float(number) * _BYTES_PER_UNIT[unit]
            if not 16 * 1024**2 <= size <= 1024**5:
                raise ValueError(f"{value!r} is outside 16MB to 1024TB")
        return value

    @field_validator("rewrite_model")
    @classmethod
    def _rewrite_model_loads(cls, value: Path | None) -> Path | None:
        if value is not None:
            load_model(value)  # RewriteModelError is a ValueError: one line, naming the file
        return value

    @field_validator("term_language")
    @classmethod
    def _language_has_word_frequencies(cls, value: str) -> str:
        if value == "en":  # the default: known to have them, and importing wordfreq costs every command ~70 ms
            return value
        from wordfreq import available_languages

        languages = sorted(available_languages("best"))
        if value not in languages:
            raise ValueError(f"{value!r} is not a language with word frequencies; expected one of {', '.join(languages)}")
        return value

    @field_validator("serve_timezone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file name
            raise ValueError(f"{value!r} is not a known time zone (e.g. UTC, Europe/Berlin)") from None
        return value

    @model_validator(mode="after")
    def _backend_fits_device(self) -> "Settings":
        check_backend_and_device(self.embed_backend, self.embed_device, ("NEWSWATCH_EMBED_BACKEND=", "NEWSWATCH_EMBED_DEVICE="))
        return self

    def dedupe_rules(self) -> DedupeRules:
        """The thresholds of the near-duplicate tests."""
        return DedupeRules(
            copy_jaccard=self.copy_jaccard,
            rewrite_probability=self.rewrite_probability,
            rewrite_margin=self.rewrite_margin,
            rewrite_similarity=self.rewrite_similarity,
            rewrite_term_overlap=self.rewrite_term_overlap,
            candidate_similarity=self.rewrite_gate,
            language=self.term_language,
            model=load_model(self.rewrite_model) if self.rewrite_model else None,
        )

    def translation_rules(self) -> TranslationRules:
        """The cosine bars of a translation."""
        return TranslationRules(high=self.translation_similarity, low=self.translation_similarity_with_numbers)

    def cluster_rules(self) -> ClusterRules:
        """The knobs of story assignment."""
        return ClusterRules(
            embedding_weight=self.story_embedding_weight,
            threshold=self.story_threshold,
            window=timedelta(days=self.story_window_days),
            refine_passes=self.story_refine_passes,
            merge_threshold=self.story_merge_threshold,
        )


# Where each group of settings starts (in the order of the class): the headings of docs/settings.md.
GROUPS = {
    "db": "Warehouse",
    "batch_size": "Runs",
    "model": "Embedding",
    "copy_jaccard": "Duplicates",
    "story_threshold": "Stories",
    "history_neighbours": "Comparing with the stored history",
    "feeds_file": "Feeds and fetching",
    "watch_like_threshold": "Watches and alerts",
    "digest_notify": "Digest",
    "serve_interval_seconds": "Service",
    "api_host": "API",
    "task_runner": "Dask",
}


CRON_SETTINGS = ("serve_cron", "maintenance_cron", "digest_cron")


def check_cron_expressions(settings: Settings) -> None:
    """Raise ValueError, one sentence naming the setting, for a cron expression the schedules cannot use.

    Not part of the settings' own validation: it imports Prefect, which reads PREFECT_API_URL once,
    when first imported, and `serve` points that variable at its own server after reading the
    settings. The commands that schedule (`serve`, `deploy`) call it.
    """
    from prefect.schedules import Cron

    for name in CRON_SETTINGS:
        expression = getattr(settings, name)
        if expression is None:
            continue
        try:
            Cron(expression, timezone=settings.serve_timezone)
        except Exception as error:  # noqa: BLE001 - pydantic or croniter, both mean a bad expression
            reason = str(error).strip().splitlines()[-1][:120] if str(error).strip() else type(error).__name__
            raise ValueError(f"invalid cron expression {expression!r} (NEWSWATCH_{name.upper()}): {reason}") from None


def load_settings(**overrides) -> Settings:
    """Settings from the environment, with explicit (e.g. command-line) values on top."""
    return Settings(**{key: value for key, value in overrides.items() if value is not None})


def settings_error_message(error) -> str:
    """One sentence for an invalid setting (a pydantic ValidationError from `Settings`)."""
    first = error.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    if not first["loc"]:  # a check across settings, whose message names them
        return f"invalid settings: {message}"
    return f"invalid setting NEWSWATCH_{str(first['loc'][0]).upper()}: {message}"


def _allowed(field) -> str:
    """The bounds of a number setting, as `1 … 100`; empty for other settings."""
    low = high = None
    for item in field.metadata:
        low = getattr(item, "ge", None) if getattr(item, "ge", None) is not None else (f"> {item.gt:g}" if getattr(item, "gt", None) is not None else low)
        high = getattr(item, "le", None) if getattr(item, "le", None) is not None else high
    if low is None and high is None:
        return ""
    low = low if isinstance(low, str) else f"{low:,g}" if isinstance(low, float) else f"{low:,}"
    high = f"{high:,g}" if isinstance(high, float) else f"{high:,}"
    return f"{low} … {high}" if not low.startswith(">") else f"{low}, ≤ {high}"


def settings_markdown() -> str:
    """The settings as Markdown tables, one per group: variable, default, allowed values of numbers, meaning."""
    lines = []
    for name, field in Settings.model_fields.items():
        if name in GROUPS:
            lines += ["", f"### {GROUPS[name]}", "", "| variable | default | allowed | meaning |", "|---|---|---|---|"]
        default = "(none)" if field.default in (None, []) else f"`{field.default}`"
        lines.append(f"| `NEWSWATCH_{name.upper()}` | {default} | {_allowed(field)} | {field.description} |")
    return "\n".join(lines[1:]) + "\n"


if __name__ == "__main__":
    print(settings_markdown(), end="")
