//! Hashtag index: the recent messages of each tag, so they can be fetched and replayed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use switchboard_proto::packet::Since;
use switchboard_proto::subject;

use super::message::StoredMessage;

/// Bytes of text handed to `subject::hashtags` at a time.
const SCAN_PIECE: usize = 1024;

/// The hashtags of a channel message, exactly as `subject::message_hashtags` finds them,
/// in time linear in the body.
///
/// `subject::hashtags` drops duplicates by searching the tags found so far, which is
/// quadratic in their number: a 1 MB body of distinct tags would hold a worker thread for
/// tens of seconds. So it only ever sees pieces of about `SCAN_PIECE` bytes, and the
/// pieces' tags are merged here.
pub fn message_hashtags(content_type: &str, body: &[u8]) -> Vec<String> {
    if !subject::is_text_content(content_type) {
        return Vec::new();
    }
    std::str::from_utf8(body).map_or_else(|_| Vec::new(), |text| hashtags(text, SCAN_PIECE))
}

fn hashtags(text: &str, piece: usize) -> Vec<String> {
    let mut tags = Vec::new();
    let mut seen = HashSet::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (head, tail) = rest.split_at(cut(rest, piece));
        for tag in subject::hashtags(head) {
            if seen.insert(tag.clone()) {
                tags.push(tag);
            }
        }
        rest = tail;
    }
    tags
}

/// Where to cut `text`: just after the first character at or past `piece` bytes that is
/// neither alphanumeric, '_' nor '#'. After such a character a '#' starts a tag exactly
/// as at the start of a text, and no tag runs across it, so the pieces have the tags of
/// the whole. Without one the rest is a single piece, which then holds at most one tag
/// past `piece` (every '#' there follows a tag character or a '#').
fn cut(text: &str, piece: usize) -> usize {
    text.char_indices()
        .skip_while(|&(index, _)| index < piece)
        .find(|&(_, c)| !(c.is_alphanumeric() || c == '_' || c == '#'))
        .map_or(text.len(), |(index, c)| index + c.len_utf8())
}

/// Recent messages per tag, newest last. Lock order: a channel's history, then this, then
/// the routes.
#[derive(Debug)]
pub struct TagIndex {
    per_tag: usize,
    map: Mutex<HashMap<String, VecDeque<Arc<StoredMessage>>>>,
}

/// The locked index.
pub struct TagGuard<'a> {
    per_tag: usize,
    map: MutexGuard<'a, HashMap<String, VecDeque<Arc<StoredMessage>>>>,
}

impl TagIndex {
    pub fn new(per_tag: usize) -> Self {
        TagIndex {
            per_tag: per_tag.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn lock(&self) -> TagGuard<'_> {
        TagGuard {
            per_tag: self.per_tag,
            map: self.map.lock(),
        }
    }
}

impl TagGuard<'_> {
    pub fn push(&mut self, message: &Arc<StoredMessage>) {
        for tag in message.tags() {
            let recent = self.map.entry(tag.clone()).or_default();
            recent.push_back(message.clone());
            if recent.len() > self.per_tag {
                recent.pop_front();
            }
        }
    }

    /// Messages of `tag`, oldest first, with the same range rules as a history.
    pub fn range(&self, tag: &str, since: Since, limit: Option<u64>) -> Vec<Arc<StoredMessage>> {
        let Some(recent) = self.map.get(tag) else {
            return Vec::new();
        };
        let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let start = match since {
            Since::All => recent.len().saturating_sub(limit),
            // Tag streams mix channels, so their seqs are not ordered; filter instead.
            Since::Seq(seq) => {
                return recent
                    .iter()
                    .filter(|m| m.seq() >= seq)
                    .take(limit)
                    .cloned()
                    .collect();
            }
            Since::Time(time) => recent.partition_point(|m| m.time_us() < time),
        };
        recent.iter().skip(start).take(limit).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Texts built from characters that matter to tags, cut at every small piece size.
    #[test]
    fn pieces_find_exactly_the_tags_of_the_whole_text() {
        let alphabet = [
            "#", "#", "a", "B", "_", " ", "(", ")", ".", "1", "Σ", "ß", "İ", "é", "\n", "#x", "-",
        ];
        let mut state = 0x2545_f491_u64;
        for _ in 0..2000 {
            let mut text = String::new();
            for _ in 0..(state % 60) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push_str(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            let whole = subject::hashtags(&text);
            for piece in [1, 2, 3, 5, 8, 1024] {
                assert_eq!(
                    hashtags(&text, piece),
                    whole,
                    "{text:?} in pieces of {piece}"
                );
            }
        }
        for text in [
            "I love #Rust and #tokio, #rust!",
            "C# and a#b and # alone",
            "##double",
            "#rust#go",
            "(#a)#b",
            "x #a.b",
            "#über_cool #1st #ΣΑΣ",
        ] {
            assert_eq!(hashtags(text, 1), subject::hashtags(text), "{text:?}");
        }
        assert_eq!(
            message_hashtags("application/json", b"#rust"),
            Vec::<String>::new()
        );
        assert_eq!(
            message_hashtags("text/plain", b"\xff #rust"),
            Vec::<String>::new()
        );
        assert_eq!(message_hashtags("TEXT/markdown", b"#Rust"), ["rust"]);
    }
}
