//! Every sFlow v5 code point this crate decodes, in one place, with the section of
//! `sflow_version_5.txt` (and `sflow_structs5`) that assigns it.
//!
//! A data format on the wire is one 32-bit word: the enterprise number in its top 20 bits and the
//! format in its low 12 (§3.1 "data_format"). Standard structures have enterprise 0, so their word is
//! the format number itself; the constants below are whole words.

/// The only datagram version decoded (`sample_datagram_v5`, §4).
pub const VERSION_5: u32 = 5;

/// The words of a data format: `(enterprise, format)`.
pub const fn split(data_format: u32) -> (u32, u32) {
    (data_format >> 12, data_format & 0xfff)
}

/// A data format word from its enterprise and format (each masked to its width).
pub const fn join(enterprise: u32, format: u32) -> u32 {
    ((enterprise & 0xf_ffff) << 12) | (format & 0xfff)
}

/// `address_type` (§4 "Address types").
pub mod address {
    pub const UNKNOWN: u32 = 0;
    pub const IPV4: u32 = 1;
    pub const IPV6: u32 = 2;
}

/// Sample formats, enterprise 0 (§5 "sample_data").
pub mod sample {
    /// `flow_sample`: compact data source and interfaces.
    pub const FLOW: u32 = 1;
    /// `counters_sample`.
    pub const COUNTERS: u32 = 2;
    /// `flow_sample_expanded`: data source and interfaces as separate format and value words.
    pub const FLOW_EXPANDED: u32 = 3;
    /// `counters_sample_expanded`.
    pub const COUNTERS_EXPANDED: u32 = 4;
}

/// Flow record formats, enterprise 0 (§5 "flow_data").
pub mod flow {
    /// `sampled_header`.
    pub const RAW_HEADER: u32 = 1;
    /// `sampled_ethernet`.
    pub const ETHERNET: u32 = 2;
    /// `sampled_ipv4`.
    pub const IPV4: u32 = 3;
    /// `sampled_ipv6`.
    pub const IPV6: u32 = 4;
    /// `extended_switch`.
    pub const EXTENDED_SWITCH: u32 = 1001;
    /// `extended_router`.
    pub const EXTENDED_ROUTER: u32 = 1002;
    /// `extended_gateway`.
    pub const EXTENDED_GATEWAY: u32 = 1003;
}

/// Counter record formats, enterprise 0 (§5 "counter_data").
pub mod counters {
    /// `if_counters`: generic interface counters (RFC 2233).
    pub const GENERIC_INTERFACE: u32 = 1;
    /// `ethernet_counters`: dot3 statistics (RFC 2358).
    pub const ETHERNET: u32 = 2;
}

/// `header_protocol` of a sampled header (§5 "sampled_header"); the ones a DDoS collector meets.
pub mod header_protocol {
    pub const ETHERNET_ISO88023: u32 = 1;
    pub const IPV4: u32 = 11;
    pub const IPV6: u32 = 12;
}

/// `as_path_segment_type` of an extended gateway (§5 "extended_gateway").
pub mod as_path_segment {
    pub const SET: u32 = 1;
    pub const SEQUENCE: u32 = 2;
}

/// The name of a sample format, for error contexts.
pub fn sample_name(data_format: u32) -> Option<&'static str> {
    Some(match data_format {
        sample::FLOW => "flow sample",
        sample::COUNTERS => "counter sample",
        sample::FLOW_EXPANDED => "expanded flow sample",
        sample::COUNTERS_EXPANDED => "expanded counter sample",
        _ => return None,
    })
}

/// The name of a flow record format, for error contexts.
pub fn flow_record_name(data_format: u32) -> Option<&'static str> {
    Some(match data_format {
        flow::RAW_HEADER => "raw packet header",
        flow::ETHERNET => "sampled Ethernet",
        flow::IPV4 => "sampled IPv4",
        flow::IPV6 => "sampled IPv6",
        flow::EXTENDED_SWITCH => "extended switch",
        flow::EXTENDED_ROUTER => "extended router",
        flow::EXTENDED_GATEWAY => "extended gateway",
        _ => return None,
    })
}

/// The name of a counter record format, for error contexts.
pub fn counter_record_name(data_format: u32) -> Option<&'static str> {
    Some(match data_format {
        counters::GENERIC_INTERFACE => "generic interface counters",
        counters::ETHERNET => "Ethernet counters",
        _ => return None,
    })
}
