//! A bounded MAC learning table (the Linux bridge's FDB, `br_fdb_update` / `br_fdb_find`).
//!
//! Fixed capacity, allocated once in [`MacTable::new`]: learning never allocates and never
//! grows the table. When it is full a new address is not learned (its frames are flooded)
//! and [`MacTableStats::full`] counts it — an attacker sending from random source
//! addresses can then cost flooding, but neither memory nor the entries already learned.
//!
//! Time is the caller's: every call that needs it takes `now` in milliseconds of any
//! monotonic clock. Entries not refreshed within the ageing time are ignored by lookups
//! at once and removed by [`MacTable::expire`], which the caller runs periodically.
//!
//! Layout: open addressing with linear probing over twice as many slots as the capacity
//! (load ≤ 1/2 keeps probe sequences short), deletion by backward shift (no tombstones,
//! so the table never degrades). The hash is keyed by a caller-supplied seed.

/// Index of a switch port.
pub type PortId = u16;

use crate::wire::ethernet;

/// A MAC address.
pub type Mac = ethernet::Address;

/// Broadcast or multicast (group bit set): never learned, always flooded.
pub use crate::wire::ethernet::is_multicast;

/// Default ageing time of the Linux bridge (300 s).
pub const DEFAULT_AGEING_MS: u64 = 300_000;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// `mac << 16 | vlan`, valid when `used`.
    key: u64,
    port: PortId,
    used: bool,
    last_seen: u64,
}

/// What [`MacTable::learn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// A new entry.
    New,
    /// Already known on this port: its age was reset.
    Refreshed,
    /// Known on another port: it moved here (the station moved, or a loop).
    Moved {
        /// The port it was known on before.
        from: PortId,
    },
    /// The table is full: not learned.
    TableFull,
    /// A multicast or all-zero source address: never learned.
    Invalid,
}

/// Where to send a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// To this one port.
    Unicast(PortId),
    /// To every port of the VLAN except the ingress one: unknown unicast, broadcast,
    /// multicast.
    Flood,
    /// The destination is on the ingress port: deliver nowhere (the bridge's
    /// `should_deliver`, no hairpin).
    Filter,
}

/// Counters of the table itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MacTableStats {
    /// Addresses learned (new entries, not refreshes).
    pub learned: u64,
    /// Addresses that moved to another port.
    pub moved: u64,
    /// Addresses not learned because the table was full.
    pub full: u64,
    /// Entries removed by [`MacTable::expire`] for age.
    pub expired: u64,
}

/// The learning table.
#[derive(Debug, Clone)]
pub struct MacTable {
    slots: Box<[Slot]>,
    mask: usize,
    len: usize,
    capacity: usize,
    ageing_ms: u64,
    seed: u64,
    stats: MacTableStats,
}

fn key(mac: &Mac, vlan: u16) -> u64 {
    let mut k = 0u64;
    for b in mac {
        k = (k << 8) | u64::from(*b);
    }
    (k << 16) | u64::from(vlan)
}

fn key_mac(k: u64) -> Mac {
    let b = (k >> 16).to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

impl MacTable {
    /// A table holding up to `capacity` entries (at least 1) that age out after
    /// `ageing_ms`. `seed` keys the hash: pass something unpredictable (e.g. from the OS
    /// RNG at start-up) so remote senders cannot aim at one probe chain.
    pub fn new(capacity: usize, ageing_ms: u64, seed: u64) -> MacTable {
        let capacity = capacity.max(1);
        let nslots = capacity.saturating_mul(2).next_power_of_two();
        MacTable {
            slots: vec![Slot::default(); nslots].into_boxed_slice(),
            mask: nslots - 1,
            len: 0,
            capacity,
            ageing_ms,
            seed,
            stats: MacTableStats::default(),
        }
    }

    fn home(&self, k: u64) -> usize {
        // splitmix64 finalizer over the seeded key: every key bit reaches the low bits.
        let mut z = k ^ self.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // Truncation intended: only the low bits select the slot.
        (z as usize) & self.mask
    }

    /// Slot holding `k`, or the empty slot that ends its probe chain.
    fn find(&self, k: u64) -> Result<usize, usize> {
        let mut i = self.home(k);
        // At most `len` < slots.len() used slots: the loop always meets an empty one.
        loop {
            let s = &self.slots[i];
            if !s.used {
                return Err(i);
            }
            if s.key == k {
                return Ok(i);
            }
            i = (i + 1) & self.mask;
        }
    }

    fn expired(&self, s: &Slot, now: u64) -> bool {
        now.saturating_sub(s.last_seen) > self.ageing_ms
    }

    /// Learn that `mac` on `vlan` is behind `port`, as seen at `now`.
    pub fn learn(&mut self, mac: &Mac, vlan: u16, port: PortId, now: u64) -> Learned {
        if is_multicast(mac) || *mac == [0; 6] {
            return Learned::Invalid;
        }
        let k = key(mac, vlan);
        match self.find(k) {
            Ok(i) => {
                let stale = self.expired(&self.slots[i], now);
                let s = &mut self.slots[i];
                s.last_seen = now;
                if s.port == port {
                    if stale {
                        Learned::New
                    } else {
                        Learned::Refreshed
                    }
                } else {
                    let from = s.port;
                    s.port = port;
                    if stale {
                        // An aged-out entry is not a move, just a new sighting.
                        Learned::New
                    } else {
                        self.stats.moved += 1;
                        Learned::Moved { from }
                    }
                }
            }
            Err(i) => {
                if self.len >= self.capacity {
                    self.stats.full += 1;
                    return Learned::TableFull;
                }
                self.slots[i] = Slot {
                    key: k,
                    port,
                    used: true,
                    last_seen: now,
                };
                self.len += 1;
                self.stats.learned += 1;
                Learned::New
            }
        }
    }

    /// The port `mac` on `vlan` was last seen on, unless that entry has aged out.
    pub fn lookup(&self, mac: &Mac, vlan: u16, now: u64) -> Option<PortId> {
        let i = self.find(key(mac, vlan)).ok()?;
        let s = &self.slots[i];
        (!self.expired(s, now)).then_some(s.port)
    }

    /// Where a frame to `dst` on `vlan` that came in on `ingress` goes.
    pub fn forward(&self, dst: &Mac, vlan: u16, ingress: PortId, now: u64) -> Forward {
        if is_multicast(dst) {
            return Forward::Flood;
        }
        match self.lookup(dst, vlan, now) {
            Some(p) if p == ingress => Forward::Filter,
            Some(p) => Forward::Unicast(p),
            None => Forward::Flood,
        }
    }

    /// Remove the slot at `i`, shifting later members of its probe chain back so that
    /// every remaining key stays reachable from its home slot.
    fn remove_at(&mut self, mut i: usize) {
        self.slots[i].used = false;
        self.len -= 1;
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            if !self.slots[j].used {
                return;
            }
            let home = self.home(self.slots[j].key);
            // Move j back to i when its home is not cyclically in (i, j].
            let in_range = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !in_range {
                self.slots[i] = self.slots[j];
                self.slots[j].used = false;
                i = j;
            }
        }
    }

    /// Remove every entry older than the ageing time; returns how many.
    pub fn expire(&mut self, now: u64) -> usize {
        self.remove_where(|t, s| t.expired(s, now), true)
    }

    /// Forget every address behind `port` (the port went down or was removed).
    pub fn flush_port(&mut self, port: PortId) -> usize {
        self.remove_where(|_, s| s.port == port, false)
    }

    fn remove_where(&mut self, pred: impl Fn(&MacTable, &Slot) -> bool, aged: bool) -> usize {
        let mut removed = 0;
        let mut i = 0;
        while i < self.slots.len() {
            let s = self.slots[i];
            if s.used && pred(self, &s) {
                // The backward shift may pull an unvisited entry into slot i: look again.
                // Entries shifted into slots before i (a wrapped chain) come from slots
                // already visited, so one pass finds every match.
                self.remove_at(i);
                removed += 1;
                continue;
            }
            i += 1;
        }
        if aged {
            self.stats.expired += removed as u64;
        }
        removed
    }

    /// Number of entries (aged ones included until [`MacTable::expire`] runs).
    pub fn len(&self) -> usize {
        self.len
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most entries the table holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Time after which an entry not refreshed is ignored, in milliseconds.
    pub fn ageing_ms(&self) -> u64 {
        self.ageing_ms
    }

    /// The table's own counters.
    pub fn stats(&self) -> MacTableStats {
        self.stats
    }

    /// Every entry as (mac, vlan, port, last seen), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (Mac, u16, PortId, u64)> + '_ {
        self.slots
            .iter()
            .filter(|s| s.used)
            // Truncation intended: the low 16 bits of the key are the VLAN.
            .map(|s| (key_mac(s.key), s.key as u16, s.port, s.last_seen))
    }
}
