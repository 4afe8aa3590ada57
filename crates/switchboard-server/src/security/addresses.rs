//! Per-address limits: connections open at once and new connections per second from
//! one IP address, checked as a TCP connection is accepted, before its handshake. The
//! table holds an entry only for an address with a connection open or a bucket not yet
//! full again, so its size is bounded by the connections open and the recent rate of
//! new ones; idle entries are swept as it grows.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::limits::{AddressLimits, Bucket};

#[derive(Debug, Default)]
struct Entry {
    open: u32,
    new_connections: Bucket,
}

/// Why a connection is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddressRefusal {
    /// The address has this many connections open already.
    TooMany(u32),
    /// The address opens connections too fast; one is free after this long.
    TooFast(Duration),
}

/// Open connections and connection rates by address.
#[derive(Debug, Default)]
pub(crate) struct AddressTable {
    entries: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<IpAddr, Entry>,
    /// Entries after the last sweep: the next one comes once the table doubled.
    swept_to: usize,
}

/// A connection counted against its address, until it is dropped.
#[derive(Debug)]
pub(crate) struct AddressSlot {
    /// The table and the address counted; `None` for an address the limits exempt.
    counted: Option<(Arc<AddressTable>, IpAddr)>,
}

impl AddressSlot {
    /// A connection from an address the limits do not count (loopback by default).
    fn exempt() -> AddressSlot {
        AddressSlot { counted: None }
    }

    /// Whether the connection is counted (dropping a slot that is not does nothing).
    pub(crate) fn is_counted(&self) -> bool {
        self.counted.is_some()
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let Some((table, ip)) = &self.counted else {
            return;
        };
        let mut table = table.entries.lock();
        if let Some(entry) = table.entries.get_mut(ip) {
            entry.open = entry.open.saturating_sub(1);
        }
    }
}

/// Entries kept before a sweep is considered at all.
const SWEEP_FLOOR: usize = 1024;

impl AddressTable {
    /// Counts a new connection from `ip`, or says why it is refused.
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        limits: &AddressLimits,
        now_ns: u64,
    ) -> Result<AddressSlot, AddressRefusal> {
        if ip.is_loopback() && !limits.limit_loopback {
            return Ok(AddressSlot::exempt());
        }
        let mut table = self.entries.lock();
        if table.entries.len() >= table.swept_to.max(SWEEP_FLOOR / 2) * 2 {
            table
                .entries
                .retain(|_, entry| entry.open > 0 || !entry.new_connections.is_full(now_ns));
            table.swept_to = table.entries.len();
        }
        let entry = table.entries.entry(ip).or_default();
        if limits.connections_per_ip > 0 && entry.open >= limits.connections_per_ip {
            return Err(AddressRefusal::TooMany(limits.connections_per_ip));
        }
        if let Some(rate) = limits.rate() {
            entry
                .new_connections
                .take(rate, now_ns)
                .map_err(AddressRefusal::TooFast)?;
        }
        entry.open += 1;
        Ok(AddressSlot {
            counted: Some((self.clone(), ip)),
        })
    }

    /// Addresses with an entry now.
    pub fn len(&self) -> usize {
        self.entries.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_addresses_are_forgotten() {
        let table = Arc::new(AddressTable::default());
        let limits = AddressLimits {
            connections_per_ip: 2,
            new_connections_per_second: 1000,
            new_connection_burst: 10,
            limit_loopback: true,
        };
        for i in 0..5000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            drop(table.admit(ip, &limits, u64::from(i) * 1_000_000_000));
        }
        assert!(table.len() <= 2 * SWEEP_FLOOR, "{} entries", table.len());
    }

    #[test]
    fn an_address_holds_at_most_its_connections() {
        let table = Arc::new(AddressTable::default());
        let limits = AddressLimits {
            connections_per_ip: 2,
            new_connections_per_second: 0,
            new_connection_burst: 0,
            limit_loopback: true,
        };
        let ip = IpAddr::from([10, 0, 0, 1]);
        let first = table.admit(ip, &limits, 0).unwrap();
        let _second = table.admit(ip, &limits, 0).unwrap();
        assert_eq!(
            table.admit(ip, &limits, 0).unwrap_err(),
            AddressRefusal::TooMany(2)
        );
        assert!(table.admit(IpAddr::from([10, 0, 0, 2]), &limits, 0).is_ok());
        drop(first);
        assert!(table.admit(ip, &limits, 0).is_ok());
    }
}
