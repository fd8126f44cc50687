//! The `kl` command line (clap) and what each command prints.
//!
//! The Supabase connection comes from the same variables as the functions' own:
//! `SUPABASE_URL` or `SUPABASE_REST_URL`, and `SUPABASE_SECRET_KEY` (or a Secrets Manager id in
//! `SUPABASE_SECRET_KEY_SECRET_ID`; legacy `SUPABASE_SERVICE_ROLE_KEY`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use esm_local::invoke::{FunctionSpec, HttpInvoker, Invoker};
use lambda_kit::config::Env;
use lambda_kit::postgrest::{PostgrestClient, PostgrestConfig, resolve_key};
use time::OffsetDateTime;

use crate::letters::{
    DeadLetterRow, DeadLetters, ReplayOutcome, Selection, counts_by_code, parse_time,
};
use crate::replay::{PageCheck, ReplaySettings, Summary, replay};
use crate::target::Target;

/// Exit status of a replay that left rows `failed` (the function reported them for
/// redelivery): run it again once the environment is fixed.
pub const EXIT_SOME_FAILED: u8 = 2;

/// `kl`: operate the Kafka functions (dead letters, re-embedding).
#[derive(Debug, Parser)]
#[command(name = "kl", version, args_override_self = true)]
pub struct Cli {
    /// Dead-letter table.
    #[arg(
        long,
        global = true,
        value_name = "T",
        env = "DEAD_LETTER_TABLE",
        default_value = "dead_letters"
    )]
    pub dead_letter_table: String,
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Dead letters: list them, replay them.
    #[command(subcommand)]
    DeadLetters(Box<DeadLettersCommand>),
    /// Page vectors (page-embedder).
    #[command(subcommand)]
    Pages(PagesCommand),
    /// Batches the event source mapping discarded to its on-failure destination.
    #[command(subcommand)]
    Failures(FailuresCommand),
}

/// `kl failures ...`.
#[derive(Debug, Subcommand)]
pub enum FailuresCommand {
    /// Sends discarded batches to the function again: S3 objects and Kafka-topic messages carry
    /// the records; SQS messages carry offsets, read back from Kafka (`--bootstrap-servers`).
    Replay(FailuresArgs),
}

/// `kl failures replay`.
#[derive(Debug, Clone, Args)]
pub struct FailuresArgs {
    /// Files of invocation records (`aws s3 cp` objects, `aws sqs receive-message` output, JSON
    /// lines); `-` reads stdin.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Function name told to a local binary.
    #[arg(long, value_name = "NAME", default_value = "function")]
    pub function_name: String,
    /// Kafka `host:port` list to read SQS records' offsets from (plaintext listeners only).
    #[arg(long, value_name = "H:P,...", env = "KAFKA_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: Option<String>,
    /// Records per event at most when reading offsets back from Kafka.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub batch_size: usize,
}

/// `kl pages ...`.
#[derive(Debug, Subcommand)]
pub enum PagesCommand {
    /// Re-embeds the chunks whose model, dimension or prefix differs from the current
    /// page-embedder settings (`EMBED_*`, `VECTORS_TABLE`, read like the function reads them).
    Reembed(ReembedArgs),
}

/// `kl pages reembed`.
#[derive(Debug, Clone, Args)]
pub struct ReembedArgs {
    /// Count stale pages and chunks and estimate the embedding calls (and the cost for OpenAI
    /// models); embed and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Pages per batch: one read, one embedding pass (`EMBED_BATCH_SIZE` texts per call,
    /// `EMBED_CONCURRENCY` calls in flight), one write.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub pages_per_batch: usize,
    /// Wait between batches, to stay under a provider's rate limit (429 and `Retry-After` are
    /// honoured in any case).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub pause_ms: u64,
    /// Only pages whose id starts with this (`*` is refused: PostgREST reads it as a wildcard).
    #[arg(long, value_name = "P", value_parser = crate::reembed::check_page_prefix)]
    pub page_prefix: Option<String>,
    /// No progress bar (it is drawn on stderr when that is a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

/// `kl dead-letters ...`.
#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// Rows of the selection (oldest first) and counts by error code.
    List(ListArgs),
    /// Sends the selected dead letters' records to the function again and marks each row with
    /// the replay time and outcome (stored / dead_lettered / failed / superseded).
    Replay(ReplayArgs),
}

/// Which dead letters (every flag narrows the selection).
#[derive(Debug, Clone, Args)]
pub struct SelectionArgs {
    /// Function name as stored (gift-persister, page-embedder, table-sink).
    #[arg(long, value_name = "NAME")]
    pub function: Option<String>,
    /// Error code (`kl dead-letters list` counts them).
    #[arg(long, value_name = "CODE")]
    pub code: Option<String>,
    /// Source topic.
    #[arg(long, value_name = "T")]
    pub topic: Option<String>,
    /// Dead-lettered at or after: RFC 3339 or an age (90m, 6h, 2d).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Dead-lettered before: RFC 3339 or an age.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only this row id; repeatable.
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<i64>,
}

impl SelectionArgs {
    fn selection(&self) -> Result<Selection, String> {
        let now = OffsetDateTime::now_utc();
        let time = |s: &Option<String>, flag: &str| {
            s.as_deref()
                .map(|s| parse_time(s, now).map_err(|e| format!("--{flag}: {e}")))
                .transpose()
        };
        Ok(Selection {
            function: self.function.clone(),
            error_code: self.code.clone(),
            topic: self.topic.clone(),
            since: time(&self.since, "since")?,
            until: time(&self.until, "until")?,
            ids: self.ids.clone(),
        })
    }
}

/// `kl dead-letters list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Only rows no replay has settled (never replayed, refused again, or failed).
    #[arg(long)]
    pub pending: bool,
    /// Counts by error code only.
    #[arg(long)]
    pub counts: bool,
}

/// Whether page dead letters are checked against `page_state` before they are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PagesMode {
    /// When `--function` is page-embedder.
    Auto,
    /// Always.
    On,
    /// Never (the function still ignores changes older than a page's stored version).
    Off,
}

/// The function a replay invokes: exactly one of `--binary`, `--invoke-url`, `--aws-function`.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Local function binary, driven through an emulated Lambda Runtime API; it inherits kl's
    /// environment plus `--env`.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["invoke_url", "aws_function"])]
    pub binary: Option<PathBuf>,
    /// Local invoke URL (`cargo lambda watch`).
    #[arg(long, value_name = "URL", conflicts_with = "aws_function")]
    pub invoke_url: Option<String>,
    /// Deployed function (name, ARN or name:alias), invoked through Lambda's Invoke API with the
    /// default AWS credentials and region.
    #[arg(long, value_name = "NAME")]
    pub aws_function: Option<String>,
    /// Environment variable of the local binary; repeatable.
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// File of K=V lines for the local binary; repeatable.
    #[arg(long = "env-file", value_name = "F")]
    pub env_files: Vec<PathBuf>,
    /// Timeout of one invocation of a local function.
    #[arg(long, value_name = "S", default_value_t = 60)]
    pub timeout_s: u64,
}

impl TargetArgs {
    /// The target; `name` is the function name a local binary is told.
    pub async fn target(&self, name: &str) -> Result<Target, Box<dyn std::error::Error>> {
        let timeout = Duration::from_secs(self.timeout_s);
        Ok(match (&self.binary, &self.invoke_url, &self.aws_function) {
            (Some(path), None, None) => Target::local(FunctionSpec {
                path: path.clone(),
                env: esm_local::cli::env_pairs(&self.env_files, &self.env)?,
                name: name.to_owned(),
                timeout,
                memory_mb: 512,
            }),
            (None, Some(url), None) => {
                Target::Local(Invoker::Http(HttpInvoker::new(url, timeout)?))
            }
            (None, None, Some(function)) => Target::aws(function.clone()).await,
            _ => {
                return Err(
                    "give exactly one of --binary PATH, --invoke-url URL or --aws-function NAME"
                        .into(),
                );
            }
        })
    }
}

/// `kl dead-letters replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Records per event at most (events also stay under Lambda's 6 MB payload limit).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub batch_size: usize,
    /// Replay rows an earlier replay already stored or superseded too.
    #[arg(long)]
    pub include_resolved: bool,
    /// Count what would be sent (and which pages are superseded); send and mark nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Check page dead letters against the page's stored version (`PAGE_ID_FIELD`,
    /// `PAGE_STATE_TABLE` as the function reads them).
    #[arg(long, value_enum, default_value_t = PagesMode::Auto)]
    pub pages: PagesMode,
}

/// Runs `cli`; errors are printed, never a secret.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::DeadLetters(command) => match *command {
            DeadLettersCommand::List(args) => list(&cli.dead_letter_table, args).await,
            DeadLettersCommand::Replay(args) => replay_command(&cli.dead_letter_table, args).await,
        },
        Command::Pages(PagesCommand::Reembed(args)) => reembed_command(args).await,
        Command::Failures(FailuresCommand::Replay(args)) => failures_command(args).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kl: {e}");
            ExitCode::FAILURE
        }
    }
}

type CliResult = Result<ExitCode, Box<dyn std::error::Error>>;

/// The PostgREST client of the functions' own settings.
pub async fn client_from_env(env: &Env) -> Result<PostgrestClient, Box<dyn std::error::Error>> {
    let key = resolve_key(env).await?;
    Ok(PostgrestClient::new(PostgrestConfig::from_env(env, key)?)?.with_max_answer(KL_MAX_ANSWER))
}

/// Largest PostgREST answer `kl` reads: a page of 1000 dead letters carries whole records (up to
/// the broker's 1 MB default each), more than the functions ever read
/// ([`lambda_kit::postgrest::MAX_ANSWER`]).
const KL_MAX_ANSWER: usize = 1 << 30;

async fn list(table: &str, args: ListArgs) -> CliResult {
    let selection = args.selection.selection()?;
    let letters = DeadLetters::new(client_from_env(&Env::process()).await?, table);
    let mut rows = letters.list(&selection).await?;
    if args.pending {
        rows.retain(|r| !r.is_resolved());
    }
    if !args.counts {
        print!("{}", render_rows(&rows));
    }
    print!("{}", render_counts(&rows));
    Ok(ExitCode::SUCCESS)
}

/// One line per row: id, time, function, position, code, last replay, message.
pub fn render_rows(rows: &[DeadLetterRow]) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        return out;
    }
    out.push_str("id\tcreated_at\tfunction\tposition\terror_code\treplay\tmessage\n");
    for r in rows {
        let replay = match (&r.replay_outcome, &r.replayed_at) {
            (Some(o), Some(at)) => format!("{o}@{at}"),
            _ => "-".to_owned(),
        };
        let message: String = r
            .error_message
            .as_deref()
            .unwrap_or("")
            .chars()
            .take(120)
            .collect();
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            r.id,
            r.created_at,
            r.function_name,
            r.position(),
            r.error_code,
            replay,
            message
        ));
    }
    out
}

/// `N dead letters` and one line per error code.
pub fn render_counts(rows: &[DeadLetterRow]) -> String {
    let mut out = format!("{} dead letter(s)\n", rows.len());
    for (code, n) in counts_by_code(rows) {
        out.push_str(&format!("  {n:>8}  {code}\n"));
    }
    out
}

async fn replay_command(table: &str, args: ReplayArgs) -> CliResult {
    let selection = args.selection.selection()?;
    let Some(function) = selection.function.clone() else {
        return Err("--function is required: a replay sends records to one function".into());
    };
    let env = Env::process();
    let client = client_from_env(&env).await?;
    let letters = DeadLetters::new(client.clone(), table);
    let mut target = args.target.target(&function).await?;
    let check_pages = match args.pages {
        PagesMode::On => true,
        PagesMode::Off => false,
        PagesMode::Auto => function == page_embedder::config::FUNCTION_NAME,
    };
    let pages = if check_pages {
        let config = page_embedder::config::PageSettings::from_env(&env)?;
        Some(PageCheck {
            page_id_field: config.page_id_field,
            state_table: config.page_state_table,
        })
    } else {
        None
    };
    let settings = ReplaySettings {
        batch_size: args.batch_size,
        include_resolved: args.include_resolved,
        dry_run: args.dry_run,
        pages,
    };
    let summary = replay(&letters, &client, &selection, &mut target, &settings).await?;
    print!("{}", render_summary(&summary, args.dry_run));
    Ok(if summary.count(ReplayOutcome::Failed) > 0 {
        ExitCode::from(EXIT_SOME_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// The replay's closing lines.
pub fn render_summary(s: &Summary, dry_run: bool) -> String {
    let mut out = format!(
        "{} selected, {} already settled by an earlier replay",
        s.selected, s.already_resolved
    );
    if dry_run {
        out.push_str(&format!(
            "; dry run: {} would be sent, {} superseded by a newer page version\n",
            s.count(ReplayOutcome::Stored),
            s.count(ReplayOutcome::Superseded)
        ));
    } else {
        out.push_str(&format!(
            "; {} event(s) sent: {} stored, {} dead-lettered again, {} failed (replay later), {} superseded\n",
            s.invocations,
            s.count(ReplayOutcome::Stored),
            s.count(ReplayOutcome::DeadLettered),
            s.count(ReplayOutcome::Failed),
            s.count(ReplayOutcome::Superseded)
        ));
    }
    for (id, why) in &s.unrebuildable {
        out.push_str(&format!("  id {id}: not replayed: {why}\n"));
    }
    out
}

async fn reembed_command(args: ReembedArgs) -> CliResult {
    use page_embedder::config::{PageSettings, StoreConfig};
    use page_embedder::store::AnyStore;

    use crate::reembed::{EmbedPlan, ReembedSettings, Reembedder};

    let env = Env::process();
    let config = PageSettings::from_env(&env)?;
    let StoreConfig::Supabase { table } = &config.store else {
        return Err(
            "kl pages reembed reads the chunk texts from the Supabase vectors table \
                    (VECTOR_STORE=supabase); for Qdrant or Stargate, touch the pages in the source"
                .into(),
        );
    };
    let client = client_from_env(&env).await?;
    let http = lambda_kit::http::client_builder()
        .connect_timeout(Duration::from_secs(5))
        .build()?;
    let embedder = config
        .embed
        .embedder(config.embed.credential(&env).await?, &http)?;
    let store_key = AnyStore::credential(&config.store, &env).await?;
    let store = AnyStore::from_config(&config.store, store_key, client.clone(), &http)?;
    let e = &config.embed;
    let plan = EmbedPlan {
        prefix: e.doc_prefix.clone(),
        max_chars: e.limits.max_chars,
        settings: e.settings(),
    };
    let settings = ReembedSettings {
        pages_per_batch: args.pages_per_batch,
        dry_run: args.dry_run,
        pause: Duration::from_millis(args.pause_ms),
        page_prefix: args.page_prefix.clone(),
    };
    let progress = reembed_progress(args.no_progress || args.dry_run);
    let reembedder = Reembedder {
        client: &client,
        table,
        embedder: &embedder,
        store: &store,
        plan: &plan,
    };
    let summary = reembedder.run(&settings, &progress).await;
    progress.finish_and_clear();
    print_reembed_summary(table, &summary?, e, args.dry_run);
    Ok(ExitCode::SUCCESS)
}

/// A bar counting pages; `hidden` when asked, or in a dry run (nothing to wait for).
fn reembed_progress(hidden: bool) -> indicatif::ProgressBar {
    if hidden {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} pages, eta {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar
}

/// What a re-embed of `table` found and did (or, in a dry run, would do and cost) with the
/// embedding settings `e`.
fn print_reembed_summary(
    table: &str,
    s: &crate::reembed::ReembedSummary,
    e: &page_embedder::config::EmbedConfig,
    dry_run: bool,
) {
    use crate::reembed::estimate;
    use page_embedder::config::Provider;

    println!(
        "{table}: {} pages, {} chunks; stale for {} ({} dims, prefix {:?}): {} chunks of {} pages",
        s.pages, s.chunks, e.model, e.dimensions, e.doc_prefix, s.stale_chunks, s.stale_pages
    );
    if s.needs_source > 0 {
        println!(
            "  {} chunk(s) cannot be re-embedded here (no stored text, or longer than the current \
             limit): touch their pages in the source",
            s.needs_source
        );
    }
    if dry_run {
        let est = estimate(s, &e.model, e.provider == Provider::OpenAi);
        print!(
            "  dry run: about {} embedding call(s) ({} texts per call), about {} tokens",
            est.calls, e.batch_size, est.tokens
        );
        match est.cost_usd {
            Some(usd) => println!(", about ${usd:.4} at OpenAI's list price for {}", e.model),
            None => println!(),
        }
    } else {
        println!(
            "  re-embedded {} chunk(s) of {} page(s) in {} call(s); {} page(s) changed meanwhile (left to the function); {} refused",
            s.chunks_written,
            s.pages_written,
            s.embed_requests,
            s.changed_meanwhile,
            s.refused.len()
        );
        for (page, code) in &s.refused {
            println!("  page {page}: not re-embedded, its text was refused ({code})");
        }
    }
}

async fn failures_command(args: FailuresArgs) -> CliResult {
    use crate::failures::{parse_input, replay_failures};

    let mut batches = Vec::new();
    for file in &args.files {
        let text = if file.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())?
        } else {
            std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?
        };
        batches.extend(parse_input(&text).map_err(|e| format!("{}: {e}", file.display()))?);
    }
    let kafka = args.bootstrap_servers.as_deref().map(|s| {
        esm_local::kafka::KafkaConfig::new(s.split(',').map(|s| s.trim().to_owned()).collect())
    });
    let mut target = args.target.target(&args.function_name).await?;
    let s = replay_failures(&batches, kafka.as_ref(), &mut target, args.batch_size).await?;
    println!(
        "{} discarded batch(es): {} record(s) sent in {} event(s), {} reported for redelivery again",
        s.discarded_batches, s.records_sent, s.invocations, s.records_failed
    );
    for m in &s.missing {
        println!("  not in Kafka any more (retention?): {m}");
    }
    Ok(if s.records_failed > 0 {
        ExitCode::from(EXIT_SOME_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_prefix_with_postgrest_s_unescapable_wildcard_is_refused_on_the_command_line() {
        // Refused on the command line, before any request (`reembed::check_page_prefix`).
        let parsed = Cli::try_parse_from(["kl", "pages", "reembed", "--page-prefix", "a*"]);
        let Err(e) = parsed else {
            panic!("a prefix with `*` was accepted")
        };
        let e = e.to_string();
        assert!(e.contains("wildcard"), "{e}");
    }
}
