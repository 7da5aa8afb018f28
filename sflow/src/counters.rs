//! Counter records (`counter_data`, sflow_version_5.txt §5): interface statistics a counter sample
//! carries. The standard generic interface and Ethernet records are decoded; any other is kept as
//! [`CounterRecord::Unknown`].

use bytes::Bytes;

use crate::formats::counters as fmt;
use crate::xdr::Reader;

/// One counter record of a counter sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterRecord {
    Generic(GenericInterface),
    Ethernet(EthernetCounters),
    /// A record this crate does not decode, skipped by its length. `format` is the whole wire word
    /// (`enterprise << 12 | format`); `data` its body, padding excluded.
    Unknown {
        format: u32,
        data: Bytes,
    },
}

impl CounterRecord {
    /// The data format word this record has on the wire.
    pub fn format(&self) -> u32 {
        match self {
            CounterRecord::Generic(_) => fmt::GENERIC_INTERFACE,
            CounterRecord::Ethernet(_) => fmt::ETHERNET,
            CounterRecord::Unknown { format, .. } => *format,
        }
    }
}

/// `if_counters` (format 1, 88 octets): the RFC 2233 interface table row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenericInterface {
    pub if_index: u32,
    pub if_type: u32,
    pub if_speed: u64,
    /// 0 = unknown, 1 = full-duplex, 2 = half-duplex, 3 = in, 4 = out.
    pub if_direction: u32,
    /// Bit 0: ifAdminStatus up; bit 1: ifOperStatus up.
    pub if_status: u32,
    pub if_in_octets: u64,
    pub if_in_ucast_pkts: u32,
    pub if_in_multicast_pkts: u32,
    pub if_in_broadcast_pkts: u32,
    pub if_in_discards: u32,
    pub if_in_errors: u32,
    pub if_in_unknown_protos: u32,
    pub if_out_octets: u64,
    pub if_out_ucast_pkts: u32,
    pub if_out_multicast_pkts: u32,
    pub if_out_broadcast_pkts: u32,
    pub if_out_discards: u32,
    pub if_out_errors: u32,
    pub if_promiscuous_mode: u32,
}

/// `ethernet_counters` (format 2, 52 octets): RFC 2358 dot3Stats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EthernetCounters {
    pub dot3_stats_alignment_errors: u32,
    pub dot3_stats_fcs_errors: u32,
    pub dot3_stats_single_collision_frames: u32,
    pub dot3_stats_multiple_collision_frames: u32,
    pub dot3_stats_sqe_test_errors: u32,
    pub dot3_stats_deferred_transmissions: u32,
    pub dot3_stats_late_collisions: u32,
    pub dot3_stats_excessive_collisions: u32,
    pub dot3_stats_internal_mac_transmit_errors: u32,
    pub dot3_stats_carrier_sense_errors: u32,
    pub dot3_stats_frame_too_longs: u32,
    pub dot3_stats_internal_mac_receive_errors: u32,
    pub dot3_stats_symbol_errors: u32,
}

/// Decodes the body of one counter record into `out`; `r` is bounded to the record. Errors are
/// left in `r` (and nothing is pushed). Each arm pushes its own variant (see
/// [`crate::flow`]'s `decode_into`).
#[inline]
pub(crate) fn decode_into(format: u32, r: &mut Reader<'_>, out: &mut Vec<CounterRecord>) {
    match format {
        fmt::GENERIC_INTERFACE => {
            if let Some(mut f) = r.block::<88>() {
                out.push(CounterRecord::Generic(GenericInterface {
                    if_index: f.u32(),
                    if_type: f.u32(),
                    if_speed: f.u64(),
                    if_direction: f.u32(),
                    if_status: f.u32(),
                    if_in_octets: f.u64(),
                    if_in_ucast_pkts: f.u32(),
                    if_in_multicast_pkts: f.u32(),
                    if_in_broadcast_pkts: f.u32(),
                    if_in_discards: f.u32(),
                    if_in_errors: f.u32(),
                    if_in_unknown_protos: f.u32(),
                    if_out_octets: f.u64(),
                    if_out_ucast_pkts: f.u32(),
                    if_out_multicast_pkts: f.u32(),
                    if_out_broadcast_pkts: f.u32(),
                    if_out_discards: f.u32(),
                    if_out_errors: f.u32(),
                    if_promiscuous_mode: f.u32(),
                }));
            }
        }
        fmt::ETHERNET => {
            if let Some(mut f) = r.block::<52>() {
                out.push(CounterRecord::Ethernet(EthernetCounters {
                    dot3_stats_alignment_errors: f.u32(),
                    dot3_stats_fcs_errors: f.u32(),
                    dot3_stats_single_collision_frames: f.u32(),
                    dot3_stats_multiple_collision_frames: f.u32(),
                    dot3_stats_sqe_test_errors: f.u32(),
                    dot3_stats_deferred_transmissions: f.u32(),
                    dot3_stats_late_collisions: f.u32(),
                    dot3_stats_excessive_collisions: f.u32(),
                    dot3_stats_internal_mac_transmit_errors: f.u32(),
                    dot3_stats_carrier_sense_errors: f.u32(),
                    dot3_stats_frame_too_longs: f.u32(),
                    dot3_stats_internal_mac_receive_errors: f.u32(),
                    dot3_stats_symbol_errors: f.u32(),
                }));
            }
        }
        _ => out.push(CounterRecord::Unknown {
            format,
            data: r.rest(),
        }),
    }
}
