//! Reading part of a history back while the server runs: the messages a history no
//! longer keeps in memory, for a fetch or a replay that reaches past what it keeps.
//!
//! A history's chunks are keyed by the seq of their first message, so the chunk holding
//! `first` is the last one whose key is not after it; the chunks from there through the
//! one that begins at or before `last` hold the whole range.

use switchboard_proto::packet::Message;

use super::record::decode_chunk;
use super::{Open, keys, storage_error};
use crate::storage::{LogKind, StorageError};

impl Open {
    /// The stored messages of a history from seq `first` through `last`, oldest first.
    /// A corrupt chunk is reported and what it holds from the damage on is left out.
    pub(super) fn read_messages(
        &self,
        kind: LogKind,
        name: &str,
        first: u64,
        last: u64,
    ) -> Result<Vec<Message>, StorageError> {
        let prefix = keys::log_prefix(kind, name);
        let to = keys::chunk_key(&prefix, last);
        let from = match self
            .messages
            .range(prefix.as_slice()..=keys::chunk_key(&prefix, first).as_slice())
            .next_back()
        {
            Some(entry) => entry
                .key()
                .map_err(|e| storage_error("reading messages", e))?
                .to_vec(),
            None => prefix.clone(),
        };
        let mut messages = Vec::new();
        for entry in self.messages.range(from.as_slice()..=to.as_slice()) {
            let (key, value) = entry
                .into_inner()
                .map_err(|e| storage_error("reading messages", e))?;
            decode_chunk(&key, &value, &mut messages);
        }
        messages.retain(|message| (first..=last).contains(&message.seq));
        Ok(messages)
    }
}
