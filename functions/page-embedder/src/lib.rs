//! `page-embedder`: embeds `cdc.pages` changes delivered by a Kafka event source mapping into
//! chunk vectors (Ollama or an OpenAI-compatible API), stores them (Supabase `page_vectors`
//! through PostgREST) and notifies a RAG refresh hook.
//!
//! [`handler`]: the page [`pipeline`] as lambda-kit's batch function (the runner does grouping,
//! dead letters, partial batch response, logs, metrics). The pipeline decodes a record into a
//! page change and writes the last change of each page: [`chunk`] + [`hash`] -> [`embed`] ->
//! [`store`] -> [`rag`]. [`config`] builds the handler (`Config::load(..).await?.build()`;
//! API keys as [`keys`] says); `main.rs` only wires.

pub mod chunk;
pub mod config;
pub mod embed;
pub mod handler;
pub mod hash;
pub mod keys;
pub mod page_state;
pub mod pipeline;
pub mod rag;
pub mod store;

#[cfg(test)]
mod tests;
