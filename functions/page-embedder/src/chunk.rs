//! Splitting a page body into overlapping chunks that each fit the embedding model's input, on
//! paragraph, line, sentence or word boundaries, so that no text is ever lost to truncation.
//!
//! Every chunk is a slice of the original text (nothing is trimmed or rewritten) and consecutive
//! chunks touch or overlap, so the chunks always cover the whole body.
//!
//! Why not `text-splitter` (0.33.1, released 2026-10-25, well kept): it gives other chunks, and a
//! chunk's text and `content_hash` are what a page's stored vectors are keyed and compared on, so
//! adopting it would re-embed and rewrite the stored chunks of every page on its next change.
//! Measured 2026-12-07 with `ChunkConfig::new(max).with_overlap(overlap).with_trim(false)` (so
//! chunks are slices, as here) against [`chunk_ranges`] at the same limits, on this file's test
//! cases and on the workspace's Markdown (6 texts, 189 KB): at the defaults, 3,983 characters
//! with 200 of overlap (4,000 less a nomic prefix), 5 of our 55 chunks come out the same and it
//! makes 59; at the local model's 1,000/100, 19 of 241 (259). The unit cases without overlap
//! agree; where they differ it starts a chunk with the separator (`" façade — "`) where ours ends
//! the previous one with it, repeats overlap inside one long word (`0..1000, 900..1900, ..`; ours
//! cuts `0..1000, 1000..2000, ..`, counting overlap in whole pieces) and makes a blank body one
//! whitespace chunk (ours gives none: nothing to embed). It would also add 19 crates (`cargo
//! tree -e normal`; ICU segmentation and its data, 8 of them new to the workspace) and 3.2 MB to
//! a minimal Lambda binary (lambda_runtime, tokio, reqwest with rustls, serde_json; the
//! workspace's release profile): 5,419,496 -> 8,615,968 bytes, +59%.

use std::ops::Range;

/// Chunking limits, in Unicode scalar values (`char`s), not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Longest chunk, in characters. At least 1.
    pub max_chars: usize,
    /// How many characters of the previous chunk the next one repeats (at boundary granularity,
    /// never more than this). Must be smaller than `max_chars`.
    pub overlap_chars: usize,
}

impl ChunkLimits {
    /// Limits with `max_chars` at least 1 and overlap below half of it (so chunking progresses).
    pub fn new(max_chars: usize, overlap_chars: usize) -> Self {
        let max_chars = max_chars.max(1);
        Self {
            max_chars,
            overlap_chars: overlap_chars.min(max_chars / 2),
        }
    }
}

/// Where a piece of text may be cut, from the most to the least preferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Paragraph,
    Line,
    Sentence,
    Word,
    Char,
}

impl Level {
    fn finer(self) -> Self {
        match self {
            Level::Paragraph => Level::Line,
            Level::Line => Level::Sentence,
            Level::Sentence => Level::Word,
            Level::Word | Level::Char => Level::Char,
        }
    }
}

/// Splits `text` into chunks of at most `limits.max_chars` characters.
///
/// A text that fits is returned whole; a blank text gives no chunk (there is nothing to embed).
/// Longer texts are cut at the coarsest boundary that makes the pieces fit (blank line, line
/// break, end of sentence, whitespace, and only for a single "word" longer than the limit, between
/// characters), pieces are packed greedily and each chunk after the first starts with up to
/// `overlap_chars` characters of whole pieces from the end of the previous one.
///
/// ```
/// use page_embedder::chunk::{chunk_text, ChunkLimits};
/// let text = "First sentence here. Second one follows. Third closes.";
/// let chunks = chunk_text(text, ChunkLimits::new(30, 0));
/// assert_eq!(chunks, vec!["First sentence here. ", "Second one follows. ", "Third closes."]);
/// ```
pub fn chunk_text(text: &str, limits: ChunkLimits) -> Vec<&str> {
    chunk_ranges(text, limits)
        .into_iter()
        .map(|r| &text[r])
        .collect()
}

/// Like [`chunk_text`], returning byte ranges into `text`.
pub fn chunk_ranges(text: &str, limits: ChunkLimits) -> Vec<Range<usize>> {
    let limits = ChunkLimits::new(limits.max_chars, limits.overlap_chars);
    if text.trim().is_empty() {
        return Vec::new();
    }
    if char_len(text) <= limits.max_chars {
        return std::iter::once(0..text.len()).collect();
    }
    let mut pieces = Vec::new();
    split_into(
        text,
        0..text.len(),
        limits.max_chars,
        Level::Paragraph,
        &mut pieces,
    );
    pack(text, &pieces, limits)
}

fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// Appends to `out` contiguous pieces covering `range`, each at most `max` characters.
fn split_into(
    text: &str,
    range: Range<usize>,
    max: usize,
    level: Level,
    out: &mut Vec<Range<usize>>,
) {
    let slice = &text[range.clone()];
    if char_len(slice) <= max {
        out.push(range);
        return;
    }
    if level == Level::Char {
        let mut start = range.start;
        let mut count = 0;
        for (i, _) in slice.char_indices() {
            if count == max {
                out.push(start..range.start + i);
                start = range.start + i;
                count = 0;
            }
            count += 1;
        }
        out.push(start..range.end);
        return;
    }
    let cuts = cut_points(slice, level);
    if cuts.is_empty() {
        split_into(text, range, max, level.finer(), out);
        return;
    }
    let mut start = range.start;
    for cut in cuts
        .into_iter()
        .map(|c| range.start + c)
        .chain(std::iter::once(range.end))
    {
        if cut > start {
            split_into(text, start..cut, max, level.finer(), out);
            start = cut;
        }
    }
}

/// Byte offsets (relative to `s`, strictly inside it) where a piece may end at `level`. The
/// separator stays with the preceding piece, so the next piece starts with content.
fn cut_points(s: &str, level: Level) -> Vec<usize> {
    let bytes = s.as_bytes();
    let mut cuts = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let after = i + c.len_utf8();
        let cut = match level {
            Level::Paragraph => {
                // End of a run of two or more line breaks (blank lines may hold spaces).
                if c == '\n' {
                    let rest = &s[after..];
                    let run_end =
                        rest.find(|ch: char| ch != '\n' && ch != ' ' && ch != '\t' && ch != '\r');
                    let run = &rest[..run_end.unwrap_or(rest.len())];
                    if run.contains('\n') {
                        let end = after + run.len();
                        // Skip the rest of the run so it is not cut again.
                        while chars.peek().is_some_and(|&(j, _)| j < end) {
                            chars.next();
                        }
                        Some(end)
                    } else {
                        None
                    }
                } else {
                    None
                }
            }
            Level::Line => (c == '\n').then_some(after),
            Level::Sentence => {
                if matches!(c, '。' | '！' | '？' | '؟' | '।') {
                    Some(after)
                } else if matches!(c, '.' | '!' | '?' | '…') {
                    // Sentence end: punctuation (plus closing quotes/brackets) then whitespace.
                    let mut end = after;
                    while end < bytes.len() && matches!(bytes[end], b'"' | b'\'' | b')' | b']') {
                        end += 1;
                    }
                    let ws = s[end..]
                        .chars()
                        .take_while(|ch| ch.is_whitespace())
                        .map(char::len_utf8)
                        .sum::<usize>();
                    (ws > 0).then_some(end + ws)
                } else {
                    None
                }
            }
            Level::Word => {
                if c.is_whitespace() {
                    let ws = s[after..]
                        .chars()
                        .take_while(|ch| ch.is_whitespace())
                        .map(char::len_utf8)
                        .sum::<usize>();
                    let end = after + ws;
                    while chars.peek().is_some_and(|&(j, _)| j < end) {
                        chars.next();
                    }
                    Some(end)
                } else {
                    None
                }
            }
            Level::Char => None,
        };
        if let Some(cut) = cut
            && cut > 0
            && cut < s.len()
            && cuts.last() != Some(&cut)
        {
            cuts.push(cut);
        }
    }
    cuts
}

/// Greedily packs contiguous pieces (each at most `max_chars`) into chunks with overlap.
fn pack(text: &str, pieces: &[Range<usize>], limits: ChunkLimits) -> Vec<Range<usize>> {
    let lens: Vec<usize> = pieces.iter().map(|r| char_len(&text[r.clone()])).collect();
    let mut chunks = Vec::new();
    let mut first = 0; // first piece of the current chunk
    while first < pieces.len() {
        let mut last = first; // exclusive
        let mut len = 0;
        while last < pieces.len() && (last == first || len + lens[last] <= limits.max_chars) {
            len += lens[last];
            last += 1;
        }
        chunks.push(pieces[first].start..pieces[last - 1].end);
        if last == pieces.len() {
            break;
        }
        // Start the next chunk with whole trailing pieces of this one, within the overlap budget,
        // leaving room for the next new piece and always moving forward.
        let mut next = last;
        let mut overlap = 0;
        while next > first + 1
            && overlap + lens[next - 1] <= limits.overlap_chars
            && overlap + lens[next - 1] + lens[last] <= limits.max_chars
        {
            overlap += lens[next - 1];
            next -= 1;
        }
        first = next;
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Chunks start at 0, end at the end, each starts no later than the previous one ends (so
    /// nothing is skipped) and strictly after the previous one starts (progress).
    fn assert_covers(text: &str, ranges: &[Range<usize>], limits: ChunkLimits) {
        if text.trim().is_empty() {
            assert!(ranges.is_empty());
            return;
        }
        assert_eq!(ranges.first().unwrap().start, 0);
        assert_eq!(ranges.last().unwrap().end, text.len());
        for w in ranges.windows(2) {
            assert!(
                w[1].start <= w[0].end,
                "gap between {:?} and {:?}",
                w[0],
                w[1]
            );
            assert!(w[1].start > w[0].start, "no progress");
            assert!(w[1].end > w[0].end, "chunk contained in previous");
        }
        for r in ranges {
            assert!(
                char_len(&text[r.clone()]) <= limits.max_chars,
                "chunk over limit: {r:?}"
            );
        }
    }

    #[test]
    fn short_text_is_one_chunk_and_blank_is_none() {
        assert_eq!(chunk_text("hello", ChunkLimits::new(10, 2)), vec!["hello"]);
        assert!(chunk_text("", ChunkLimits::new(10, 2)).is_empty());
        assert!(chunk_text(" \n\t ", ChunkLimits::new(10, 2)).is_empty());
    }

    #[test]
    fn prefers_paragraph_boundaries() {
        let text = "Alpha beta gamma.\n\nDelta epsilon zeta.\n\nEta theta.";
        let chunks = chunk_text(text, ChunkLimits::new(25, 0));
        assert_eq!(
            chunks,
            vec![
                "Alpha beta gamma.\n\n",
                "Delta epsilon zeta.\n\n",
                "Eta theta."
            ]
        );
    }

    #[test]
    fn falls_back_to_sentences_then_words() {
        let text = "One two three. Four five six. Seven";
        assert_eq!(
            chunk_text(text, ChunkLimits::new(16, 0)),
            vec!["One two three. ", "Four five six. ", "Seven"]
        );
        let words = "aaaa bbbb cccc dddd";
        assert_eq!(
            chunk_text(words, ChunkLimits::new(10, 0)),
            vec!["aaaa bbbb ", "cccc dddd"]
        );
    }

    #[test]
    fn overlap_repeats_trailing_sentences() {
        let text = "S1 is here. S2 is here. S3 is here. S4 is here.";
        let limits = ChunkLimits::new(24, 12);
        let chunks = chunk_text(text, limits);
        assert_eq!(
            chunks,
            vec![
                "S1 is here. S2 is here. ",
                "S2 is here. S3 is here. ",
                "S3 is here. S4 is here."
            ]
        );
        assert_covers(text, &chunk_ranges(text, limits), limits);
    }

    #[test]
    fn huge_single_sentence_is_cut_between_characters() {
        let text = "x".repeat(2_500);
        let limits = ChunkLimits::new(1_000, 100);
        let ranges = chunk_ranges(&text, limits);
        assert_covers(&text, &ranges, limits);
        assert_eq!(ranges.len(), 3);
    }

    #[test]
    fn unicode_is_counted_in_chars_and_never_split_inside_one() {
        let text =
            "Ünïcödé façade — naïve café. 日本語の文です。次の文です。最後の文。 🎉🎉🎉🎉🎉🎉";
        let limits = ChunkLimits::new(12, 4);
        let ranges = chunk_ranges(text, limits);
        assert_covers(text, &ranges, limits);
        // Slicing would have panicked on a non-boundary; check the CJK sentence cut was used.
        assert!(chunk_text(text, limits).iter().any(|c| c.ends_with('。')));
    }

    #[test]
    fn long_page_gives_several_chunks_covering_everything() {
        let para = "This is a sentence of a long page. ".repeat(20);
        let text = format!("{para}\n\n{para}\n\n{para}");
        let limits = ChunkLimits::new(300, 60);
        let ranges = chunk_ranges(&text, limits);
        assert!(ranges.len() >= 8, "{}", ranges.len());
        assert_covers(&text, &ranges, limits);
    }

    proptest! {
        #[test]
        fn no_text_lost(text in "(?s)[a-zé日 .!?\n]{0,400}", max in 1usize..80, overlap in 0usize..40) {
            let limits = ChunkLimits::new(max, overlap);
            let ranges = chunk_ranges(&text, limits);
            assert_covers(&text, &ranges, limits);
        }
    }
}
