//! The MAC learning table: learning, moves, ageing, capacity, flooding; and a model check
//! against a HashMap.

use std::collections::HashMap;

use proptest::prelude::*;
use pvnet_core::switch::mac_table::{Forward, Learned, MacTable, DEFAULT_AGEING_MS};

const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
const C: [u8; 6] = [2, 0, 0, 0, 0, 0xc];
const BCAST: [u8; 6] = [0xff; 6];
const MCAST: [u8; 6] = [0x01, 0x00, 0x5e, 0, 0, 1];

#[test]
fn learn_lookup_forward() {
    let mut t = MacTable::new(16, 1000, 7);
    assert_eq!(t.learn(&A, 0, 1, 0), Learned::New);
    assert_eq!(t.learn(&A, 0, 1, 10), Learned::Refreshed);
    assert_eq!(t.learn(&B, 0, 2, 10), Learned::New);
    assert_eq!(t.lookup(&A, 0, 10), Some(1));
    assert_eq!(t.lookup(&A, 5, 10), None, "VLANs are separate");
    assert_eq!(t.lookup(&C, 0, 10), None);
    let cases = [
        (A, 0, 2, Forward::Unicast(1)),
        (B, 0, 1, Forward::Unicast(2)),
        (A, 0, 1, Forward::Filter),
        (C, 0, 1, Forward::Flood),
        (A, 3, 2, Forward::Flood),
        (BCAST, 0, 1, Forward::Flood),
        (MCAST, 0, 1, Forward::Flood),
    ];
    for (dst, vlan, ingress, want) in cases {
        assert_eq!(
            t.forward(&dst, vlan, ingress, 20),
            want,
            "{dst:?} {vlan} {ingress}"
        );
    }
    assert_eq!(t.len(), 2);
    assert_eq!(t.stats().learned, 2);
}

#[test]
fn never_learns_group_or_zero_sources() {
    let mut t = MacTable::new(4, 1000, 0);
    for mac in [BCAST, MCAST, [0; 6]] {
        assert_eq!(t.learn(&mac, 0, 1, 0), Learned::Invalid);
    }
    assert!(t.is_empty());
}

#[test]
fn entries_move_between_ports() {
    let mut t = MacTable::new(4, 1000, 0);
    t.learn(&A, 0, 1, 0);
    assert_eq!(t.learn(&A, 0, 3, 5), Learned::Moved { from: 1 });
    assert_eq!(t.lookup(&A, 0, 5), Some(3));
    assert_eq!(t.stats().moved, 1);
    assert_eq!(t.len(), 1);
}

#[test]
fn ageing_with_caller_time() {
    let mut t = MacTable::new(4, 1000, 0);
    t.learn(&A, 0, 1, 0);
    t.learn(&B, 0, 2, 500);
    assert_eq!(
        t.lookup(&A, 0, 1000),
        Some(1),
        "exactly the ageing time: still valid"
    );
    assert_eq!(
        t.lookup(&A, 0, 1001),
        None,
        "aged entries are ignored before expire()"
    );
    assert_eq!(t.forward(&A, 0, 2, 1001), Forward::Flood);
    // An aged entry seen again on another port is new, not a move.
    assert_eq!(t.learn(&A, 0, 4, 1200), Learned::New);
    assert_eq!(t.stats().moved, 0);
    assert_eq!(t.expire(1501), 1, "B aged");
    assert_eq!(t.lookup(&B, 0, 1501), None);
    assert_eq!(t.lookup(&A, 0, 1501), Some(4));
    assert_eq!(t.len(), 1);
    assert_eq!(t.stats().expired, 1);
    assert_eq!(t.ageing_ms(), 1000);
    assert_eq!(MacTable::new(1, DEFAULT_AGEING_MS, 0).ageing_ms(), 300_000);
}

#[test]
fn full_table_floods_and_counts() {
    let mut t = MacTable::new(3, 1000, 0);
    for i in 0..3u8 {
        assert_eq!(t.learn(&[2, 0, 0, 0, 1, i], 0, 1, 0), Learned::New);
    }
    assert_eq!(t.learn(&A, 0, 2, 0), Learned::TableFull);
    assert_eq!(t.learn(&B, 0, 2, 0), Learned::TableFull);
    assert_eq!(t.stats().full, 2);
    assert_eq!(t.len(), 3);
    assert_eq!(t.capacity(), 3);
    assert_eq!(t.forward(&A, 0, 1, 0), Forward::Flood);
    // Known entries still refresh and move while full.
    assert_eq!(
        t.learn(&[2, 0, 0, 0, 1, 0], 0, 5, 1),
        Learned::Moved { from: 1 }
    );
    // Room again after expiry.
    assert_eq!(t.expire(2000), 3);
    assert_eq!(t.learn(&A, 0, 2, 2000), Learned::New);
}

#[test]
fn flush_port() {
    let mut t = MacTable::new(64, 1000, 3);
    for i in 0..40u8 {
        t.learn(&[2, 0, 0, 0, 2, i], 0, u16::from(i % 4), 0);
    }
    assert_eq!(t.flush_port(2), 10);
    assert_eq!(t.len(), 30);
    for i in 0..40u8 {
        let want = (i % 4 != 2).then_some(u16::from(i % 4));
        assert_eq!(t.lookup(&[2, 0, 0, 0, 2, i], 0, 0), want);
    }
    let ports: Vec<u16> = t.iter().map(|e| e.2).collect();
    assert_eq!(ports.len(), 30);
    assert!(!ports.contains(&2));
}

#[derive(Debug, Clone)]
enum Op {
    Learn(u8, u16, u16, u64),
    Expire(u64),
    Flush(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..24, 0u16..3, 0u16..4, 0u64..50).prop_map(|(m, v, p, dt)| Op::Learn(m, v, p, dt)),
        1 => (0u64..200).prop_map(Op::Expire),
        1 => (0u16..4).prop_map(Op::Flush),
    ]
}

proptest! {
    /// Against a HashMap model with the same capacity and ageing rules; small capacity
    /// and few slots so that probe chains wrap and backward shifts happen.
    #[test]
    fn matches_a_model(ops in proptest::collection::vec(op(), 1..300), seed: u64) {
        const CAP: usize = 8;
        const AGE: u64 = 100;
        let mut t = MacTable::new(CAP, AGE, seed);
        let mut model: HashMap<([u8; 6], u16), (u16, u64)> = HashMap::new();
        let mut now = 0u64;
        for op in ops {
            match op {
                Op::Learn(m, vlan, port, dt) => {
                    now += dt;
                    let mac = [2, 0, 0, 0, 0, m];
                    let got = t.learn(&mac, vlan, port, now);
                    let want = match model.get(&(mac, vlan)).copied() {
                        Some((p, seen)) => {
                            let stale = now - seen > AGE;
                            if stale { Learned::New }
                            else if p == port { Learned::Refreshed }
                            else { Learned::Moved { from: p } }
                        }
                        None if model.len() >= CAP => Learned::TableFull,
                        None => Learned::New,
                    };
                    prop_assert_eq!(got, want);
                    if want != Learned::TableFull {
                        model.insert((mac, vlan), (port, now));
                    }
                }
                Op::Expire(dt) => {
                    now += dt;
                    let before = model.len();
                    model.retain(|_, (_, seen)| now - *seen <= AGE);
                    prop_assert_eq!(t.expire(now), before - model.len());
                }
                Op::Flush(port) => {
                    let before = model.len();
                    model.retain(|_, (p, _)| *p != port);
                    prop_assert_eq!(t.flush_port(port), before - model.len());
                }
            }
            prop_assert_eq!(t.len(), model.len());
            for m in 0..24u8 {
                for vlan in 0..3u16 {
                    let mac = [2, 0, 0, 0, 0, m];
                    let want = model
                        .get(&(mac, vlan))
                        .filter(|(_, seen)| now - seen <= AGE)
                        .map(|(p, _)| *p);
                    prop_assert_eq!(t.lookup(&mac, vlan, now), want);
                }
            }
        }
    }
}
