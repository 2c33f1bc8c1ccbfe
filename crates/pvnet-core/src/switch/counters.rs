//! Per-port counters, the drop cause of every error the data path can meet, and the one
//! list of the counters with their names and meanings (for metrics and `pvnet ctl`).

/// Why a frame was dropped. Indexes [`PortCounters::drops`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum DropCause {
    /// The frame could not be parsed (`wire::parse` failed).
    Parse,
    /// The virtio_net_hdr was rejected (vnet validation).
    VnetHeader,
    /// Segmentation failed or the GSO metadata did not match the packet.
    Gso,
    /// A partial checksum could not be completed (field outside the packet).
    Checksum,
    /// VLAN filtering (tagged frame on an access port, …).
    Vlan,
    /// The destination is the ingress port.
    Hairpin,
    /// Larger than the port takes.
    TooBig,
    /// Transmit failed (the port returned an error other than "try again").
    TxError,
    /// Transmit queue or socket buffer full.
    TxBusy,
    /// Nobody to take the frame: a vhost-user port with no VM connected (or whose
    /// receive queue the driver has not set up).
    NoCarrier,
}

impl DropCause {
    /// Number of causes (length of [`PortCounters::drops`]).
    pub const COUNT: usize = 10;

    /// Every cause, in the order of [`PortCounters::drops`].
    pub const ALL: [DropCause; DropCause::COUNT] = [
        DropCause::Parse,
        DropCause::VnetHeader,
        DropCause::Gso,
        DropCause::Checksum,
        DropCause::Vlan,
        DropCause::Hairpin,
        DropCause::TooBig,
        DropCause::TxError,
        DropCause::TxBusy,
        DropCause::NoCarrier,
    ];

    /// The `cause` label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropCause::Parse => "parse",
            DropCause::VnetHeader => "vnet_header",
            DropCause::Gso => "gso",
            DropCause::Checksum => "checksum",
            DropCause::Vlan => "vlan",
            DropCause::Hairpin => "hairpin",
            DropCause::TooBig => "too_big",
            DropCause::TxError => "tx_error",
            DropCause::TxBusy => "tx_busy",
            DropCause::NoCarrier => "no_carrier",
        }
    }
}

/// Counters of one port. Plain integers: one port belongs to one switch thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortCounters {
    /// Frames received from the port.
    pub rx_packets: u64,
    /// Bytes received from the port.
    pub rx_bytes: u64,
    /// Frames sent to the port.
    pub tx_packets: u64,
    /// Bytes sent to the port.
    pub tx_bytes: u64,
    /// Super-frames received from the port.
    pub gso_rx: u64,
    /// Super-frames sent to the port whole.
    pub gso_tx: u64,
    /// Segments made by software GSO for this port.
    pub segments: u64,
    /// Partial checksums completed in software for this port.
    pub csum_completed: u64,
    /// Packets linearized (copied into one buffer) for this port.
    pub linearized: u64,
    /// Frames received from the port that GRO merged into a super-frame.
    pub gro_coalesced: u64,
    /// GSO sends the port refused at run time (then segmented and resent).
    pub gso_rejected: u64,
    /// Super-frames sent to the port as software segments.
    pub gso_segmented: u64,
    /// Frames dropped, indexed by [`DropCause`].
    pub drops: [u64; DropCause::COUNT],
}

impl PortCounters {
    /// Count one frame dropped for `cause`.
    pub fn drop(&mut self, cause: DropCause) {
        self.drops[cause as usize] += 1;
    }

    /// Count `n` frames dropped for `cause`.
    pub fn drop_many(&mut self, cause: DropCause, n: u64) {
        self.drops[cause as usize] += n;
    }

    /// Frames dropped for `cause`.
    pub fn drops_of(&self, cause: DropCause) -> u64 {
        self.drops[cause as usize]
    }

    /// Frames dropped, all causes.
    pub fn drops_total(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Count one frame of `bytes` received.
    pub fn rx(&mut self, bytes: usize) {
        self.rx_packets += 1;
        self.rx_bytes += bytes as u64;
    }

    /// Count one frame of `bytes` sent.
    pub fn tx(&mut self, bytes: usize) {
        self.tx_packets += 1;
        self.tx_bytes += bytes as u64;
    }

    /// Add `o`'s counts to these (one port's counters kept by several threads, or the
    /// totals of several ports).
    pub fn add(&mut self, o: &PortCounters) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.gso_rx += o.gso_rx;
        self.gso_tx += o.gso_tx;
        self.segments += o.segments;
        self.csum_completed += o.csum_completed;
        self.linearized += o.linearized;
        self.gro_coalesced += o.gro_coalesced;
        self.gso_rejected += o.gso_rejected;
        self.gso_segmented += o.gso_segmented;
        for (a, b) in self.drops.iter_mut().zip(o.drops.iter()) {
            *a += b;
        }
    }
}

impl<'a> core::iter::Sum<&'a PortCounters> for PortCounters {
    fn sum<I: Iterator<Item = &'a PortCounters>>(iter: I) -> PortCounters {
        let mut total = PortCounters::default();
        for c in iter {
            total.add(c);
        }
        total
    }
}

impl From<&crate::vnet::VnetError> for DropCause {
    /// A frame that does not parse is a parse drop; anything else wrong with its
    /// virtio_net_hdr is a header drop.
    fn from(e: &crate::vnet::VnetError) -> DropCause {
        match e {
            crate::vnet::VnetError::Parse(_) => DropCause::Parse,
            _ => DropCause::VnetHeader,
        }
    }
}

impl From<&crate::switch::vlan::VlanError> for DropCause {
    fn from(_: &crate::switch::vlan::VlanError) -> DropCause {
        DropCause::Vlan
    }
}

/// Reads one counter of a [`PortCounters`].
pub type Getter = fn(&PortCounters) -> u64;

/// Every scalar counter of a port: its name (`rx_packets`, …: the suffix of its metric
/// and its key in `pvnet ctl stats`), a one-line description, and how to read it. The
/// drops are the one counter per [`DropCause`] besides these.
pub const COUNTERS: &[(&str, &str, Getter)] = &[
    ("rx_packets", "Frames received from the port.", |c| {
        c.rx_packets
    }),
    ("rx_bytes", "Bytes received from the port.", |c| c.rx_bytes),
    ("tx_packets", "Frames sent to the port.", |c| c.tx_packets),
    ("tx_bytes", "Bytes sent to the port.", |c| c.tx_bytes),
    ("gso_rx", "Super-frames received from the port.", |c| {
        c.gso_rx
    }),
    (
        "gso_tx",
        "Super-frames sent to the port unsegmented.",
        |c| c.gso_tx,
    ),
    ("segments", "Segments made in software for the port.", |c| {
        c.segments
    }),
    (
        "csum_completed",
        "Checksums completed in software for the port.",
        |c| c.csum_completed,
    ),
    (
        "linearized",
        "Packets copied into one buffer for the port.",
        |c| c.linearized,
    ),
    ("gro_coalesced", "Received frames merged by GRO.", |c| {
        c.gro_coalesced
    }),
    (
        "gso_rejected",
        "GSO sends refused by the port at run time.",
        |c| c.gso_rejected,
    ),
    (
        "gso_segmented",
        "Super-frames segmented in software for the port.",
        |c| c.gso_segmented,
    ),
];
