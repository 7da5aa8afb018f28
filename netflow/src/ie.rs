//! Every code point the decoder knows: versions, set ids, and the information elements it reads,
//! with the document that assigns each.
//!
//! NetFlow v9 field types (RFC 3954 §8) and IPFIX information elements (RFC 7012 §4, the IANA
//! "IPFIX Information Elements" registry, which took over the v9 numbers 1–127 unchanged) share one
//! number space, so one list serves both. Where v9 and IPFIX name an element differently, both names
//! are given. The PSAMP elements are RFC 5477 §8; the v9 option scope types are RFC 3954 §6.1.

/// The version field of each header (RFC 3954 §5.1, RFC 7011 §3.1; v5 has no RFC, Cisco's
/// "NetFlow Export Datagram Format").
pub mod version {
    pub const V5: u16 = 5;
    pub const V9: u16 = 9;
    pub const IPFIX: u16 = 10;
}

/// Set (v9: FlowSet) ids.
pub mod set {
    /// v9 template FlowSet (RFC 3954 §5.2).
    pub const V9_TEMPLATE: u16 = 0;
    /// v9 options template FlowSet (RFC 3954 §6.1).
    pub const V9_OPTIONS_TEMPLATE: u16 = 1;
    /// IPFIX template set (RFC 7011 §3.3.2).
    pub const IPFIX_TEMPLATE: u16 = 2;
    /// IPFIX options template set (RFC 7011 §3.3.2).
    pub const IPFIX_OPTIONS_TEMPLATE: u16 = 3;
    /// The first data set id, and the first valid template id (RFC 3954 §5.2, RFC 7011 §3.3.2).
    pub const FIRST_DATA: u16 = 256;
}

/// A field length of 65535 in an IPFIX template: the field is variable-length, its length in the
/// record (RFC 7011 §7).
pub const VARIABLE_LENGTH: u16 = 65535;

/// The enterprise bit of an IPFIX field specifier: a 4-octet Private Enterprise Number follows
/// (RFC 7011 §3.2).
pub const ENTERPRISE_BIT: u16 = 0x8000;

/// Seconds from the NTP era 0 epoch (1900-01-01) to the Unix epoch, for dateTimeMicroseconds and
/// dateTimeNanoseconds (RFC 7011 §6.1.9, §6.1.10).
pub const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

pub const OCTET_DELTA_COUNT: u16 = 1; // v9 IN_BYTES
pub const PACKET_DELTA_COUNT: u16 = 2; // v9 IN_PKTS
pub const PROTOCOL_IDENTIFIER: u16 = 4; // v9 PROTOCOL
pub const TCP_CONTROL_BITS: u16 = 6; // v9 TCP_FLAGS (1 octet in v9, 2 in RFC 7012 since RFC 7125)
pub const SOURCE_TRANSPORT_PORT: u16 = 7; // v9 L4_SRC_PORT
pub const SOURCE_IPV4_ADDRESS: u16 = 8; // v9 IPV4_SRC_ADDR
pub const INGRESS_INTERFACE: u16 = 10; // v9 INPUT_SNMP
pub const DESTINATION_TRANSPORT_PORT: u16 = 11; // v9 L4_DST_PORT
pub const DESTINATION_IPV4_ADDRESS: u16 = 12; // v9 IPV4_DST_ADDR
pub const EGRESS_INTERFACE: u16 = 14; // v9 OUTPUT_SNMP
pub const FLOW_END_SYS_UP_TIME: u16 = 21; // v9 LAST_SWITCHED
pub const FLOW_START_SYS_UP_TIME: u16 = 22; // v9 FIRST_SWITCHED
pub const POST_OCTET_DELTA_COUNT: u16 = 23; // v9 OUT_BYTES
pub const POST_PACKET_DELTA_COUNT: u16 = 24; // v9 OUT_PKTS
pub const SOURCE_IPV6_ADDRESS: u16 = 27; // v9 IPV6_SRC_ADDR
pub const DESTINATION_IPV6_ADDRESS: u16 = 28; // v9 IPV6_DST_ADDR
pub const ICMP_TYPE_CODE_IPV4: u16 = 32; // v9 ICMP_TYPE
pub const SAMPLING_INTERVAL: u16 = 34; // v9 SAMPLING_INTERVAL (deprecated in IPFIX, still sent)
pub const SAMPLING_ALGORITHM: u16 = 35; // v9 SAMPLING_ALGORITHM
pub const FLOW_ACTIVE_TIMEOUT: u16 = 36; // v9 FLOW_ACTIVE_TIMEOUT, seconds
pub const FLOW_IDLE_TIMEOUT: u16 = 37; // v9 FLOW_INACTIVE_TIMEOUT, seconds
pub const SAMPLER_ID: u16 = 48; // v9 FLOW_SAMPLER_ID
pub const SAMPLER_MODE: u16 = 49; // v9 FLOW_SAMPLER_MODE
pub const SAMPLER_RANDOM_INTERVAL: u16 = 50; // v9 FLOW_SAMPLER_RANDOM_INTERVAL
pub const FLOW_DIRECTION: u16 = 61; // v9 DIRECTION
pub const OCTET_TOTAL_COUNT: u16 = 85;
pub const PACKET_TOTAL_COUNT: u16 = 86;
pub const FRAGMENT_OFFSET: u16 = 88;
pub const ICMP_TYPE_CODE_IPV6: u16 = 139;
pub const FLOW_START_SECONDS: u16 = 150;
pub const FLOW_END_SECONDS: u16 = 151;
pub const FLOW_START_MILLISECONDS: u16 = 152;
pub const FLOW_END_MILLISECONDS: u16 = 153;
pub const FLOW_START_MICROSECONDS: u16 = 154;
pub const FLOW_END_MICROSECONDS: u16 = 155;
pub const FLOW_START_NANOSECONDS: u16 = 156;
pub const FLOW_END_NANOSECONDS: u16 = 157;
pub const FLOW_START_DELTA_MICROSECONDS: u16 = 158;
pub const FLOW_END_DELTA_MICROSECONDS: u16 = 159;
pub const SYSTEM_INIT_TIME_MILLISECONDS: u16 = 160;
pub const FLOW_DURATION_MILLISECONDS: u16 = 161;
pub const FLOW_DURATION_MICROSECONDS: u16 = 162;
/// PSAMP (RFC 5477 §8.2.1).
pub const SELECTOR_ID: u16 = 302;
pub const SAMPLING_PACKET_INTERVAL: u16 = 305;
pub const SAMPLING_PACKET_SPACE: u16 = 306;
pub const SAMPLING_SIZE: u16 = 309;
pub const SAMPLING_POPULATION: u16 = 310;
pub const SAMPLING_PROBABILITY: u16 = 311;
pub const IP_HEADER_PACKET_SECTION: u16 = 313;
pub const DATA_LINK_FRAME_SECTION: u16 = 315;
pub const SELECTOR_ID_TOTAL_PKTS_OBSERVED: u16 = 318;
pub const SELECTOR_ID_TOTAL_PKTS_SELECTED: u16 = 319;

/// A name for an element, for error contexts; `None` for those the decoder does not read.
pub fn name(id: u16) -> Option<&'static str> {
    Some(match id {
        OCTET_DELTA_COUNT => "octetDeltaCount",
        PACKET_DELTA_COUNT => "packetDeltaCount",
        PROTOCOL_IDENTIFIER => "protocolIdentifier",
        TCP_CONTROL_BITS => "tcpControlBits",
        SOURCE_TRANSPORT_PORT => "sourceTransportPort",
        SOURCE_IPV4_ADDRESS => "sourceIPv4Address",
        INGRESS_INTERFACE => "ingressInterface",
        DESTINATION_TRANSPORT_PORT => "destinationTransportPort",
        DESTINATION_IPV4_ADDRESS => "destinationIPv4Address",
        EGRESS_INTERFACE => "egressInterface",
        FLOW_END_SYS_UP_TIME => "flowEndSysUpTime",
        FLOW_START_SYS_UP_TIME => "flowStartSysUpTime",
        SOURCE_IPV6_ADDRESS => "sourceIPv6Address",
        DESTINATION_IPV6_ADDRESS => "destinationIPv6Address",
        SAMPLING_INTERVAL => "samplingInterval",
        SAMPLER_ID => "samplerId",
        SELECTOR_ID => "selectorId",
        IP_HEADER_PACKET_SECTION => "ipHeaderPacketSection",
        DATA_LINK_FRAME_SECTION => "dataLinkFrameSection",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn v9_numbers_are_the_ipfix_numbers() {
        // RFC 3954 §8 and RFC 7012 agree on the first 127; spot-check the ones the decoder reads.
        assert_eq!(super::SOURCE_IPV4_ADDRESS, 8);
        assert_eq!(super::FLOW_START_SYS_UP_TIME, 22);
        assert_eq!(super::SAMPLER_RANDOM_INTERVAL, 50);
        assert_eq!(super::name(315), Some("dataLinkFrameSection"));
        assert_eq!(super::name(999), None);
    }
}
