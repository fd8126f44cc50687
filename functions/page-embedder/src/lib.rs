//! `page-embedder`: embeds `cdc.pages` changes delivered by a Kafka event source mapping into
//! chunk vectors (Ollama or an OpenAI-compatible API), stores them (Supabase `page_vectors`
//! through PostgREST) and notifies a RAG refresh hook.
//!
//! Pipeline: [`handler`] (invocation, dead letters, partial batch response) ->
//! [`pipeline`] (decode -> [`plan`] -> [`chunk`] + [`hash`] -> [`embedding`] -> [`store`] ->
//! [`rag`]). `main.rs` only wires the clients from [`config`].

pub mod chunk;
pub mod config;
pub mod embed;
pub mod embedding;
pub mod handler;
pub mod hash;
pub mod pipeline;
pub mod plan;
pub mod rag;
pub mod store;
