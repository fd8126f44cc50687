//! Embed: the chunks that changed (and chunk 0 of a page to notify) are embedded in requests
//! grouped by [`EmbedSettings`](crate::embed::EmbedSettings); a page whose chunk the provider
//! refuses as too long is chunked again, smaller, down to a floor.

use lambda_kit::error::{Classify, ErrorClass};
use lambda_kit::fate::Fate;
use lambda_kit::retry::Deadline;

use super::plan::PageWork;
use super::{Pipeline, Stats};
use crate::embed::{EmbedError, Embedder, embed_all};
use crate::rag::RagNotifier;
use crate::store::VectorStore;

/// Smallest chunk size tried when the provider keeps refusing inputs as too long.
const MIN_CHUNK_CHARS: usize = 64;

impl<E: Embedder, S: VectorStore, R: RagNotifier> Pipeline<E, S, R> {
    /// Chunks, compares hashes and embeds, re-chunking smaller the pages whose chunks the
    /// provider refuses as too long.
    pub(super) async fn embed_pages(
        &self,
        pages: &mut [PageWork],
        deadline: &Deadline,
        stats: &mut Stats,
    ) {
        let mut to_chunk: Vec<usize> = (0..pages.len())
            .filter(|&i| pages[i].is_pending())
            .collect();
        while !to_chunk.is_empty() {
            let mut items: Vec<(usize, usize)> = Vec::new();
            for &pi in &to_chunk {
                let page = &mut pages[pi];
                self.chunk_page(page);
                let notify =
                    self.settings.rag_enabled && (page.is_changed() || page.needs_refresh());
                for (ci, c) in page.chunks.iter().enumerate() {
                    // Chunk 0 of a page to notify is needed for the RAG notification's `vector`.
                    if c.changed || (ci == 0 && notify) {
                        items.push((pi, ci));
                    }
                }
            }
            stats.chunks_unchanged += to_chunk
                .iter()
                .map(|&pi| pages[pi].chunks.iter().filter(|c| !c.changed).count())
                .sum::<usize>();
            let texts: Vec<String> = items
                .iter()
                .map(|&(pi, ci)| pages[pi].chunks[ci].embedded.clone())
                .collect();
            let embedded = if texts.is_empty() {
                None
            } else {
                Some(embed_all(&self.embedder, &texts, &self.settings.embed, deadline).await)
            };
            let mut rechunk = Vec::new();
            if let Some(embedded) = embedded {
                stats.embed_requests += embedded.requests;
                let mut too_long: Vec<usize> = Vec::new();
                for (&(pi, ci), result) in items.iter().zip(embedded.results) {
                    let page = &mut pages[pi];
                    match result {
                        Ok(v) => {
                            stats.chunks_embedded += 1;
                            page.chunks[ci].vector = Some(v);
                        }
                        Err(EmbedError::InputTooLong { .. })
                            if page.max_chars / 2 >= MIN_CHUNK_CHARS =>
                        {
                            if !too_long.contains(&pi) {
                                too_long.push(pi);
                            }
                        }
                        Err(e) if e.class() == ErrorClass::Data => {
                            if page.is_pending() {
                                page.settle(&e);
                            }
                        }
                        Err(e) => page.fail(&e),
                    }
                }
                for pi in too_long {
                    let page = &mut pages[pi];
                    if page.is_pending() {
                        page.max_chars /= 2;
                        tracing::info!(page_id = %page.page_id, max_chars = page.max_chars, "provider refused a chunk as too long; splitting smaller");
                        rechunk.push(pi);
                    }
                }
            }
            for &pi in &to_chunk {
                if pages[pi].is_pending() && !rechunk.contains(&pi) {
                    pages[pi].fate = Some(Fate::Stored);
                }
            }
            to_chunk = rechunk;
        }
    }
}
