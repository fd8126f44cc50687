//! `kl pages reembed` against the real stack and a local Ollama API: after a model and prefix change
//! every page is re-embedded, a run killed half way resumes without embedding a chunk twice, and
//! the function then finds the vectors current (no embedding on an unchanged page).

use std::process::{Command, Stdio};
use std::time::Duration;

use integration_tests::command::stdout_of;
use integration_tests::esm::{function_binary, wait_until};
use integration_tests::fixtures::pages::{Setup, batch, handler, rows, run, stack, unique, upsert};
use integration_tests::servers::embedding::{Api, EmbeddingServer, expected_vector};
use integration_tests::stack::{StackEnv, lit};
use page_embedder::chunk::ChunkLimits;
use page_embedder::hash::content_hash;

const NEW_PREFIX: &str = "passage: ";

/// `kl pages reembed` as the operator runs it, configured like the function with `model`.
fn kl(base_url: &str, model: &str, page_prefix: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(function_binary("kl"));
    cmd.args([
        "pages",
        "reembed",
        "--no-progress",
        "--page-prefix",
        page_prefix,
    ])
    .args(extra)
    .env("EMBED_PROVIDER", "ollama")
    .env("EMBED_BASE_URL", base_url)
    .env("EMBED_MODEL", model)
    .env("EMBED_DOC_PREFIX", NEW_PREFIX)
    .env("EMBED_MAX_CHARS", (200 + NEW_PREFIX.len()).to_string())
    .env("EMBED_OVERLAP_CHARS", "40")
    .env("EMBED_BATCH_SIZE", "2")
    .env("EMBED_RETRY_INITIAL_BACKOFF_MS", "10")
    .env("EMBED_TIMEOUT_MS", "5000")
    .env("KL_LOG", "error")
    .stdin(Stdio::null());
    cmd
}

// Multi-threaded: the embedding API keeps answering while the test waits on `kl` processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_change_reembeds_every_page_and_a_killed_run_resumes() {
    let (Some(client), Some(env)) = (stack("reembed"), StackEnv::get_or_skip("reembed")) else {
        return;
    };
    let old_model = unique("m1");
    let new_model = unique("m2");
    let fake = EmbeddingServer::start(Api::Ollama, &old_model, 768).await;
    let prefix = unique("kl_re");
    let mut setup = Setup::new(Api::Ollama, fake.base_url(), unique("kl_re_fn"));
    setup.model = old_model.clone();
    setup.limits = ChunkLimits::new(200, 40);
    // 24 pages, every third one long enough for several chunks.
    let page_ids: Vec<String> = (0..24).map(|i| format!("{prefix}-{i:02}")).collect();
    let records = page_ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let sentence = format!("Page {i} of {prefix} says something. ");
            let body = sentence.repeat(if i % 3 == 0 { 12 } else { 2 });
            upsert(i as i64, id, &body)
        })
        .collect();
    let h = handler(&setup).await;
    run(&h, &batch(records)).await;
    // A page that LIKE's `_` wildcard would take for one of the prefix's (`kl_re` ~ `klXre`):
    // the prefix must select it out.
    let decoy = format!("{}-decoy", prefix.replacen('_', "X", 1));
    run(&h, &batch(vec![upsert(99, &decoy, "A decoy page.")])).await;
    let before = rows(&client, &page_ids).await;
    let total = before.len();
    assert!(total > 24, "long pages have several chunks: {total}");
    assert!(before.iter().all(|r| r.model == old_model));
    let model_count = |m: &str| {
        env.count(&format!(
            "select count(*) from page_vectors where page_id like {} and model = {}",
            lit(&format!("{prefix}-%")),
            lit(m)
        )) as usize
    };

    fake.with_state(|s| s.models.push(new_model.clone()));
    let dry = stdout_of(&mut kl(
        &fake.base_url(),
        &new_model,
        &prefix,
        &["--dry-run"],
    ));
    assert!(
        dry.contains(&format!(
            "24 pages, {total} chunks; stale for {new_model} (768 dims, prefix \"{NEW_PREFIX}\"): {total} chunks of 24 pages"
        )),
        "{dry}"
    );
    assert_eq!(model_count(&new_model), 0, "a dry run writes nothing");
    let sent_before = fake.inputs().len();

    // Killed half way (SIGKILL: no cleanup of any kind).
    let mut child = kl(
        &fake.base_url(),
        &new_model,
        &prefix,
        &["--pages-per-batch", "2", "--pause-ms", "150"],
    )
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || model_count(&new_model) >= 6).await,
        "the first run re-embeds some pages"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let done_at_kill = model_count(&new_model);
    assert!(
        done_at_kill > 0 && done_at_kill < total,
        "killed half way: {done_at_kill} of {total}"
    );
    let sent_by_first = fake.inputs().len() - sent_before;

    // Run again: only what was left is embedded.
    let stdout = stdout_of(&mut kl(&fake.base_url(), &new_model, &prefix, &[]));
    let sent_by_second = fake.inputs().len() - sent_before - sent_by_first;
    assert_eq!(sent_by_second, total - done_at_kill, "{stdout}");
    assert!(
        stdout.contains(&format!("re-embedded {} chunk(s)", total - done_at_kill)),
        "{stdout}"
    );

    let after = rows(&client, &page_ids).await;
    assert_eq!(after.len(), total);
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(
            (&old.page_id, old.chunk_index, &old.chunk_text),
            (&new.page_id, new.chunk_index, &new.chunk_text)
        );
        let embedded = format!("{NEW_PREFIX}{}", new.chunk_text.as_deref().unwrap());
        assert_eq!(new.model, new_model);
        assert_eq!(new.content_hash, content_hash(&new_model, 768, &embedded));
        assert_eq!(new.vector(), expected_vector(&embedded, 768));
    }

    assert_eq!(
        env.count(&format!(
            "select count(*) from page_vectors where page_id = {} and model = {}",
            lit(&decoy),
            lit(&old_model)
        )),
        1,
        "a page outside the prefix keeps its vectors"
    );

    // Nothing left: another run embeds nothing, and the function itself, configured with the
    // new model, finds an unchanged page current.
    let sent = fake.inputs().len();
    let again = kl(&fake.base_url(), &new_model, &prefix, &[])
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(fake.inputs().len(), sent);
    let mut new_setup = setup.clone();
    new_setup.model = new_model.clone();
    new_setup.prefix = NEW_PREFIX.to_owned();
    let h = handler(&new_setup).await;
    let body = format!("Page 1 of {prefix} says something. ").repeat(2);
    run(&h, &batch(vec![upsert(100, &page_ids[1], &body)])).await;
    assert_eq!(fake.inputs().len(), sent, "the function re-embeds nothing");
}

/// A model that answers another number of dimensions than `EMBED_DIM` is the configuration's
/// fault, not a page's: `kl pages reembed` stops at once naming `EMBED_DIM`, and writes nothing,
/// instead of counting every page as refused and going on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_of_another_dimension_stops_the_run_naming_the_setting() {
    let (Some(client), Some(_env)) = (
        stack("reembed_dimension"),
        StackEnv::get_or_skip("reembed_dimension"),
    ) else {
        return;
    };
    let old_model = unique("d1");
    let fake = EmbeddingServer::start(Api::Ollama, &old_model, 768).await;
    let prefix = unique("kl_dim");
    let mut setup = Setup::new(Api::Ollama, fake.base_url(), unique("kl_dim_fn"));
    setup.model = old_model.clone();
    let page_ids: Vec<String> = (0..3).map(|i| format!("{prefix}-{i}")).collect();
    let records = page_ids
        .iter()
        .enumerate()
        .map(|(i, id)| upsert(i as i64, id, &format!("Page {i} of {prefix}.")))
        .collect();
    run(&handler(&setup).await, &batch(records)).await;
    let before = rows(&client, &page_ids).await;
    assert_eq!(before.len(), 3);

    // The new model answers 512 values; EMBED_DIM stays at its default, 768.
    let new_model = unique("d2");
    let other = EmbeddingServer::start(Api::Ollama, &new_model, 512).await;
    let out = kl(&other.base_url(), &new_model, &prefix, &[])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("embed_wrong_dimension") && stderr.contains("EMBED_DIM is 768"),
        "{stderr}"
    );
    let after = rows(&client, &page_ids).await;
    assert!(
        after.iter().all(|r| r.model == old_model),
        "nothing written"
    );
    assert_eq!(after.len(), 3);
}
