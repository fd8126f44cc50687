//! The configuration's unit tests: defaults, and errors that name the variable.

use super::*;

#[test]
fn defaults_match_the_seed_worker() {
    let c = PageSettings::from_env(&Env::from_pairs::<&str, &str>([])).unwrap();
    assert_eq!(c.embed.provider, Provider::Ollama);
    assert_eq!(c.embed.base_url, "http://localhost:11434");
    assert_eq!(c.embed.model, "nomic-embed-text");
    assert_eq!(c.embed.dimensions, 768);
    assert!(!c.embed.dimensions_explicit);
    assert_eq!(c.embed.doc_prefix, "search_document: ");
    assert_eq!(c.embed.limits.max_chars, 4000 - "search_document: ".len());
    assert_eq!(c.page_id_field, "page_id");
    assert_eq!(c.body_field, "body");
    assert!(matches!(&c.store, StoreConfig::Supabase { table } if table == "page_vectors"));
    assert!(c.rag.is_none());
    assert_eq!(c.embed.api_key, KeySource::None);
}

#[test]
fn bad_settings_name_the_variable() {
    for (var, value) in [
        ("EMBED_PROVIDER", "cohere"),
        ("EMBED_BASE_URL", "localhost:11434"),
        ("EMBED_DIM", "-1"),
        ("EMBED_MAX_CHARS", "10"),
        ("EMBED_OVERLAP_CHARS", "3000"),
        ("EMBED_BATCH_SIZE", "0"),
        ("VECTOR_STORE", "pinecone"),
        ("RAG_REFRESH_URL", "ftp://x"),
        ("PAGE_ID_FIELD", "page id; drop"),
    ] {
        let err = PageSettings::from_env(&Env::from_pairs([(var, value)])).unwrap_err();
        assert_eq!(err.var, var, "{value}: {err}");
    }
}

#[test]
fn urls_receiving_a_key_are_https_and_no_url_carries_userinfo() {
    let openai = |url: &'static str, key: (&'static str, &'static str)| {
        PageSettings::from_env(&Env::from_pairs([
            ("EMBED_PROVIDER", "openai"),
            ("EMBED_BASE_URL", url),
            key,
        ]))
    };
    for key in [
        ("OPENAI_API_KEY", "sk-1"),
        ("OPENAI_API_KEY_SECRET_ID", "id"),
    ] {
        let err = openai("http://vllm.internal:8000/v1", key).unwrap_err();
        assert_eq!(err.var, "EMBED_BASE_URL");
        assert!(err.problem.contains("https://"), "{err}");
        assert!(openai("http://127.0.0.1:8000/v1", key).is_ok());
        assert!(openai("https://api.openai.com", key).is_ok());
    }
    // No key, nothing to protect: an Ollama or a keyless server in the VPC.
    assert!(openai("http://vllm.internal:8000/v1", ("EMBED_MODEL", "m")).is_ok());
    assert!(
        PageSettings::from_env(&Env::from_pairs([(
            "EMBED_BASE_URL",
            "http://ollama:11434"
        )]))
        .is_ok()
    );
    for (var, url) in [
        ("EMBED_BASE_URL", "https://me:pa55word@ollama.example"),
        ("RAG_REFRESH_URL", "https://me:pa55word@rag.example/refresh"),
    ] {
        let err = PageSettings::from_env(&Env::from_pairs([(var, url)])).unwrap_err();
        assert_eq!(err.var, var);
        assert!(!err.to_string().contains("pa55word"), "{err}");
    }
    assert!(
        PageSettings::from_env(&Env::from_pairs([(
            "RAG_REFRESH_URL",
            "http://rag:8080/refresh"
        )]))
        .is_ok()
    );
}

#[test]
fn local_provider_and_other_stores() {
    let err = PageSettings::from_env(&Env::from_pairs([("EMBED_PROVIDER", "local")])).unwrap_err();
    assert_eq!(err.var, "LOCAL_MODEL_DIR");
    let c = PageSettings::from_env(&Env::from_pairs([
        ("EMBED_PROVIDER", "local"),
        ("LOCAL_MODEL_DIR", "model"),
    ]))
    .unwrap();
    assert_eq!(c.embed.provider, Provider::Local);
    assert_eq!(
        (c.embed.model.as_str(), c.embed.dimensions),
        ("all-MiniLM-L6-v2", 384)
    );
    assert!(matches!(&c.store, StoreConfig::Supabase { table } if table == "page_vectors_minilm"));
    assert_eq!(c.embed.doc_prefix, "");
    assert_eq!(c.embed.limits.max_chars, 1000);

    let err = PageSettings::from_env(&Env::from_pairs([("VECTOR_STORE", "qdrant")])).unwrap_err();
    assert_eq!(err.var, "QDRANT_URL");
    let c = PageSettings::from_env(&Env::from_pairs([
        ("VECTOR_STORE", "Qdrant"),
        ("QDRANT_URL", "http://127.0.0.1:6333"),
    ]))
    .unwrap();
    assert!(matches!(&c.store, StoreConfig::Qdrant(q) if q.collection == "page_vectors"));
    let c = PageSettings::from_env(&Env::from_pairs([
        ("VECTOR_STORE", "stargate"),
        ("STARGATE_URL", "http://127.0.0.1:8082"),
        ("STARGATE_AUTH_TOKEN", "tok"),
    ]))
    .unwrap();
    assert!(matches!(c.store, StoreConfig::Stargate(_)));
}

#[test]
fn openai_defaults_to_a_model_it_serves_with_the_table_dimension() {
    let c = PageSettings::from_env(&Env::from_pairs([("EMBED_PROVIDER", "openai")])).unwrap();
    assert_eq!(c.embed.model, "text-embedding-3-small");
    assert_eq!(c.embed.dimensions, 768);
    assert!(c.embed.dimensions_explicit, "dimensions is sent");
    assert_eq!(c.embed.doc_prefix, "");
    // A model the user names gets `dimensions` only when EMBED_DIM is set.
    let c = PageSettings::from_env(&Env::from_pairs([
        ("EMBED_PROVIDER", "openai"),
        ("EMBED_MODEL", "nomic-embed-text-v1.5"),
    ]))
    .unwrap();
    assert!(!c.embed.dimensions_explicit);
}

#[tokio::test]
async fn truncate_setting_is_checked_and_needs_a_store_that_can_delete_everything() {
    let err = PageSettings::from_env(&Env::from_pairs([("CDC_ON_TRUNCATE", "drop")])).unwrap_err();
    assert_eq!(err.var, "CDC_ON_TRUNCATE");
    let pairs = [
        ("CDC_ON_TRUNCATE", "delete-all"),
        ("VECTOR_STORE", "qdrant"),
        ("QDRANT_URL", "http://127.0.0.1:9"),
        ("SUPABASE_REST_URL", "http://127.0.0.1:9"),
        ("SUPABASE_SECRET_KEY", "sb_secret_test"),
        ("METRICS_ENABLED", "false"),
    ];
    let env = Env::from_pairs(pairs);
    let c = Config::load(&env).await.unwrap();
    assert!(c.settings.truncate_deletes_all);
    let err = c.build().unwrap_err().to_string();
    assert!(err.contains("CDC_SOURCE_TABLE"), "{err}");
    let pairs = Env::from_pairs(
        pairs
            .into_iter()
            .chain([("CDC_SOURCE_TABLE", "public.pages")]),
    );
    let c = Config::load(&pairs).await.unwrap();
    assert_eq!(c.settings.source_table.as_deref(), Some("public.pages"));
    let err = c.build().unwrap_err().to_string();
    assert!(err.contains("CDC_ON_TRUNCATE"), "{err}");
}

#[test]
fn key_sources_and_prefix_forms() {
    let c = PageSettings::from_env(&Env::from_pairs([
        ("OPENAI_API_KEY", "sk-abc"),
        ("EMBED_DOC_PREFIX", "none"),
    ]))
    .unwrap();
    assert!(matches!(c.embed.api_key, KeySource::Plain(_)));
    assert!(!format!("{c:?}").contains("sk-abc"));
    assert_eq!(c.embed.doc_prefix, "");
    let c = PageSettings::from_env(&Env::from_pairs([
        ("OPENAI_API_KEY_SECRET_ID", "prod/openai"),
        ("EMBED_DOC_PREFIX", "passage:"),
    ]))
    .unwrap();
    assert_eq!(c.embed.api_key, KeySource::SecretId("prod/openai".into()));
    assert_eq!(c.embed.doc_prefix, "passage: ");
    assert!(
        PageSettings::from_env(&Env::from_pairs([
            ("OPENAI_API_KEY", "a"),
            ("OPENAI_API_KEY_SECRET_ID", "b")
        ]))
        .is_err()
    );
}
