//! The overlay port's forwarding database: which remote endpoint an inner MAC address
//! lives behind (the kernel vxlan device's FDB, learned the way `vxlan_snoop` does: from
//! the outer source of every received frame).
//!
//! Bounded and aged like the switch's own table, which it is built on
//! ([`MacTable`]): remotes are numbered (their index in the port's remote list) as the
//! switch numbers ports. A MAC not known, or aged out, and every broadcast or multicast
//! destination, goes to every remote: head-end replication.

use crate::switch::mac_table::{is_multicast, Learned, Mac, MacTable, MacTableStats};

/// Index of a remote endpoint in the port's list.
pub type RemoteId = u16;

/// Where a frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Targets {
    /// To this one remote.
    One(RemoteId),
    /// To every remote (broadcast, multicast, unknown unicast).
    All,
}

/// The inner-MAC → remote table of one overlay port.
#[derive(Debug, Clone)]
pub struct Fdb {
    table: MacTable,
    remotes: usize,
}

impl Fdb {
    /// A table of up to `capacity` addresses that age out after `ageing_ms`, for a port
    /// with `remotes` remote endpoints; `seed` keys its hash (see [`MacTable::new`]).
    pub fn new(capacity: usize, ageing_ms: u64, seed: u64, remotes: usize) -> Fdb {
        Fdb {
            table: MacTable::new(capacity, ageing_ms, seed),
            remotes,
        }
    }

    /// Learn that `src` (the source of an inner frame) lives behind `remote` (the outer
    /// source of its datagram), as seen at `now` (milliseconds). A remote outside the
    /// port's list is not learned.
    pub fn learn(&mut self, src: &Mac, remote: RemoteId, now: u64) -> Learned {
        if usize::from(remote) >= self.remotes {
            return Learned::Invalid;
        }
        self.table.learn(src, 0, remote, now)
    }

    /// The remotes a frame to `dst` goes to at `now`.
    pub fn targets(&self, dst: &Mac, now: u64) -> Targets {
        if is_multicast(dst) {
            return Targets::All;
        }
        match self.table.lookup(dst, 0, now) {
            Some(r) => Targets::One(r),
            None => Targets::All,
        }
    }

    /// Remove aged entries; returns how many.
    pub fn expire(&mut self, now: u64) -> usize {
        self.table.expire(now)
    }

    /// Number of remotes the port has.
    pub fn remotes(&self) -> usize {
        self.remotes
    }

    /// Entries (aged ones included until [`Fdb::expire`]).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The table's counters (learned, moved, full, expired).
    pub fn stats(&self) -> MacTableStats {
        self.table.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Mac = [0x02, 0, 0, 0, 0, 0xa];
    const B: Mac = [0x02, 0, 0, 0, 0, 0xb];
    const BCAST: Mac = [0xff; 6];

    #[test]
    fn learned_unicast_goes_to_one_remote_everything_else_to_all() {
        let mut f = Fdb::new(16, 1000, 7, 3);
        assert_eq!(f.targets(&A, 0), Targets::All);
        assert_eq!(f.learn(&A, 2, 0), Learned::New);
        assert_eq!(f.targets(&A, 10), Targets::One(2));
        assert_eq!(f.targets(&B, 10), Targets::All);
        assert_eq!(f.targets(&BCAST, 10), Targets::All);
        // The station moved to another host.
        assert_eq!(f.learn(&A, 1, 20), Learned::Moved { from: 2 });
        assert_eq!(f.targets(&A, 20), Targets::One(1));
    }

    #[test]
    fn entries_age_out() {
        let mut f = Fdb::new(16, 1000, 7, 2);
        f.learn(&A, 1, 0);
        assert_eq!(f.targets(&A, 1000), Targets::One(1));
        assert_eq!(f.targets(&A, 1001), Targets::All);
        assert_eq!(f.expire(1001), 1);
        assert!(f.is_empty());
    }

    #[test]
    fn bounded_and_only_known_remotes() {
        let mut f = Fdb::new(1, 1000, 7, 2);
        assert_eq!(f.learn(&A, 5, 0), Learned::Invalid);
        assert_eq!(f.learn(&BCAST, 0, 0), Learned::Invalid);
        assert_eq!(f.learn(&A, 0, 0), Learned::New);
        assert_eq!(f.learn(&B, 0, 0), Learned::TableFull);
        assert_eq!(f.len(), 1);
        assert_eq!(f.targets(&B, 0), Targets::All);
    }
}
